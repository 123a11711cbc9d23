//! The database registry sink against a real PostgreSQL server (`scripts/with-postgres.sh`):
//! rows appear, change and disappear; hand edits are repaired and reported; an existing schema
//! with other names is used as it is; an outage is an error and heals with nothing lost.

#[path = "support/postgres.rs"]
mod pg;

use std::time::Duration;

use entra_operator::registry::postgres::PostgresBackend;
use entra_operator::registry::{
    Action, BankClientRow, ColumnNames, RegistryError, RegistrySink, TableLayout, TenantMappingRow,
};

fn sink(url: &str, schema: &pg::Schema, migrate: bool) -> RegistrySink {
    RegistrySink::new(
        Box::new(PostgresBackend::new(url).unwrap()),
        TableLayout::bank_clients(&schema.table("bank_clients"), &ColumnNames::default()).unwrap(),
        TableLayout::tenant_mappings(
            &schema.table("tenant_bank_mappings"),
            &ColumnNames::default(),
        )
        .unwrap(),
    )
    .with_migrate(migrate)
}

fn bank(client_id: &str, bank_id: &str, ns: &str, expires: &str) -> BankClientRow {
    BankClientRow {
        client_id: client_id.into(),
        bank_id: bank_id.into(),
        name: bank_id.into(),
        namespace: ns.into(),
        secret_expires_at: Some(expires.parse().unwrap()),
    }
}

fn tenant(tenant_id: &str, bank_id: &str, default: bool, ns: &str) -> TenantMappingRow {
    TenantMappingRow {
        tenant_id: tenant_id.into(),
        bank_id: bank_id.into(),
        is_default: default,
        name: "nordic".into(),
        namespace: ns.into(),
    }
}

/// `(client_id, bank_id, name, namespace, secret_expires_at)` of every bank-clients row.
async fn bank_rows(
    s: &pg::Schema,
) -> Vec<(
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
)> {
    s.client
        .query(
            &format!(
                "SELECT client_id, bank_id, name, namespace, to_char(secret_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') \
                 FROM \"{}\".bank_clients ORDER BY client_id",
                s.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// `(tenant_id, bank_id, is_default, namespace)` of every tenant-mappings row.
async fn tenant_rows(s: &pg::Schema) -> Vec<(String, String, bool, Option<String>)> {
    s.client
        .query(
            &format!(
                "SELECT tenant_id, bank_id, is_default, namespace FROM \"{}\".tenant_bank_mappings \
                 ORDER BY tenant_id, bank_id",
                s.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn row(
    c: &str,
    b: &str,
    ns: &str,
    exp: &str,
) -> (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    (
        c.into(),
        b.into(),
        Some(b.into()),
        Some(ns.into()),
        Some(exp.into()),
    )
}

#[tokio::test]
async fn rows_appear_change_and_disappear() {
    let Some(url) = pg::database_url("rows_appear_change_and_disappear") else {
        return;
    };
    let schema = pg::Schema::create(&url, "appear").await;
    let sink = sink(&url, &schema, true);

    // Appear (the tables are created on first use with migrate).
    let report = sink
        .sync_bank_clients(
            "banks",
            &[
                bank(
                    "c-nord",
                    "nordbank",
                    "banks",
                    "2028-01-01T00:00:00.1234567Z",
                ),
                bank("c-fjord", "fjordsparebank", "banks", "2028-02-01T00:00:00Z"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(report.rows, 2);
    assert!(
        report
            .changes
            .iter()
            .all(|c| c.action == Action::Inserted && !c.repaired)
    );
    assert_eq!(
        bank_rows(&schema).await,
        [
            row(
                "c-fjord",
                "fjordsparebank",
                "banks",
                "2028-02-01T00:00:00.000000"
            ),
            row("c-nord", "nordbank", "banks", "2028-01-01T00:00:00.123456"),
        ]
    );
    // Another namespace's rows are its own.
    sink.sync_bank_clients(
        "other",
        &[bank("c-x", "xbank", "other", "2028-03-01T00:00:00Z")],
    )
    .await
    .unwrap();

    // Unchanged: no write at all.
    let before: Vec<String> = s_updated(&schema).await;
    let report = sink
        .sync_bank_clients(
            "banks",
            &[
                bank(
                    "c-nord",
                    "nordbank",
                    "banks",
                    "2028-01-01T00:00:00.1234567Z",
                ),
                bank("c-fjord", "fjordsparebank", "banks", "2028-02-01T00:00:00Z"),
            ],
        )
        .await
        .unwrap();
    assert!(report.changes.is_empty(), "{report:?}");
    assert_eq!(s_updated(&schema).await, before, "no row rewritten");

    // Change: a rotated secret (new expiry), a new app for fjord (new client id), nordbank gone.
    let report = sink
        .sync_bank_clients(
            "banks",
            &[bank(
                "c-fjord2",
                "fjordsparebank",
                "banks",
                "2030-02-01T00:00:00Z",
            )],
        )
        .await
        .unwrap();
    assert!(report.changes.iter().all(|c| !c.repaired), "{report:?}");
    assert_eq!(report.changes.len(), 3);
    assert_eq!(
        bank_rows(&schema).await,
        [
            row(
                "c-fjord2",
                "fjordsparebank",
                "banks",
                "2030-02-01T00:00:00.000000"
            ),
            row("c-x", "xbank", "other", "2028-03-01T00:00:00.000000"),
        ]
    );
    let report = sink
        .sync_bank_clients(
            "banks",
            &[bank(
                "c-fjord2",
                "fjordsparebank",
                "banks",
                "2030-08-01T00:00:00Z",
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        report.changes[0].action,
        Action::Updated(vec!["secret_expires_at"])
    );
    assert!(!report.changes[0].repaired);

    // Disappear.
    sink.sync_bank_clients("banks", &[]).await.unwrap();
    assert_eq!(
        bank_rows(&schema).await,
        [row("c-x", "xbank", "other", "2028-03-01T00:00:00.000000")]
    );

    // Tenant mappings: one tenant, two banks, a default; the default moves; a bank goes.
    let t = "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    sink.sync_tenant_mappings(
        "banks",
        &[
            tenant(t, "nordbank", true, "banks"),
            tenant(t, "nordbank-markets", false, "banks"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        tenant_rows(&schema).await,
        [
            (t.into(), "nordbank".into(), true, Some("banks".into())),
            (
                t.into(),
                "nordbank-markets".into(),
                false,
                Some("banks".into())
            ),
        ]
    );
    sink.sync_tenant_mappings(
        "banks",
        &[
            tenant(t, "nordbank", false, "banks"),
            tenant(t, "nordbank-markets", true, "banks"),
        ],
    )
    .await
    .unwrap();
    sink.sync_tenant_mappings("banks", &[tenant(t, "nordbank-markets", true, "banks")])
        .await
        .unwrap();
    assert_eq!(
        tenant_rows(&schema).await,
        [(
            t.into(),
            "nordbank-markets".into(),
            true,
            Some("banks".into())
        )]
    );
    schema.drop().await;
}

/// `client_id=updated_at` of every bank-clients row.
async fn s_updated(s: &pg::Schema) -> Vec<String> {
    s.client
        .query(
            &format!(
                "SELECT client_id || '=' || updated_at::text FROM \"{}\".bank_clients ORDER BY 1",
                s.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn hand_edits_are_repaired_and_reported() {
    let Some(url) = pg::database_url("hand_edits_are_repaired_and_reported") else {
        return;
    };
    let schema = pg::Schema::create(&url, "repair").await;
    let sink = sink(&url, &schema, true);
    let desired = [
        bank("c-nord", "nordbank", "banks", "2028-01-01T00:00:00Z"),
        bank("c-fjord", "fjordsparebank", "banks", "2028-02-01T00:00:00Z"),
    ];
    sink.sync_bank_clients("banks", &desired).await.unwrap();
    let table = format!("\"{}\".bank_clients", schema.name);
    schema
        .client
        .batch_execute(&format!(
            "UPDATE {table} SET bank_id = 'evilbank' WHERE client_id = 'c-nord';
             DELETE FROM {table} WHERE client_id = 'c-fjord';
             INSERT INTO {table} (client_id, bank_id, namespace) VALUES ('c-sneaky', 'nordbank', 'banks');
             INSERT INTO {table} (client_id, bank_id) VALUES ('c-legacy', 'legacybank');"
        ))
        .await
        .unwrap();

    let report = sink.sync_bank_clients("banks", &desired).await.unwrap();
    let mut repairs = report.repairs();
    repairs.sort();
    assert_eq!(
        repairs,
        [
            "deleted the undeclared row client_id=c-sneaky",
            "re-inserted the deleted row client_id=c-fjord",
            "restored bank_id of row client_id=c-nord",
        ]
    );
    assert_eq!(
        bank_rows(&schema).await,
        [
            row(
                "c-fjord",
                "fjordsparebank",
                "banks",
                "2028-02-01T00:00:00.000000"
            ),
            ("c-legacy".into(), "legacybank".into(), None, None, None),
            row("c-nord", "nordbank", "banks", "2028-01-01T00:00:00.000000"),
        ],
        "a row without namespace that nobody declares is not the operator's: left alone"
    );

    // A key already held by another namespace is a conflict, not overwritten.
    schema
        .client
        .batch_execute(&format!(
            "INSERT INTO {table} (client_id, bank_id, name, namespace) VALUES ('c-taken', 'x', 'x', 'elsewhere')"
        ))
        .await
        .unwrap();
    let mut with_taken = desired.to_vec();
    with_taken.push(bank(
        "c-taken",
        "nordbank-markets",
        "banks",
        "2028-01-01T00:00:00Z",
    ));
    let report = sink.sync_bank_clients("banks", &with_taken).await.unwrap();
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].held_by_namespace, "elsewhere");
    assert_eq!(report.rows, 2);

    // Tenant mappings: a flipped default is restored.
    let t = "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    let rows = [
        tenant(t, "nordbank", true, "banks"),
        tenant(t, "nordbank-markets", false, "banks"),
    ];
    sink.sync_tenant_mappings("banks", &rows).await.unwrap();
    schema
        .client
        .batch_execute(&format!(
            "UPDATE \"{}\".tenant_bank_mappings SET is_default = NOT is_default",
            schema.name
        ))
        .await
        .unwrap();
    let report = sink.sync_tenant_mappings("banks", &rows).await.unwrap();
    let mut repairs = report.repairs();
    repairs.sort();
    assert_eq!(
        repairs,
        [
            format!("restored is_default of row tenant_id={t}, bank_id=nordbank"),
            format!("restored is_default of row tenant_id={t}, bank_id=nordbank-markets"),
        ]
    );
    assert_eq!(
        tenant_rows(&schema).await,
        [
            (t.into(), "nordbank".into(), true, Some("banks".into())),
            (
                t.into(),
                "nordbank-markets".into(),
                false,
                Some("banks".into())
            ),
        ]
    );
    schema.drop().await;
}

#[tokio::test]
async fn an_existing_schema_with_other_names_is_used_as_it_is() {
    let Some(url) = pg::database_url("an_existing_schema_with_other_names_is_used_as_it_is") else {
        return;
    };
    let schema = pg::Schema::create(&url, "existing").await;
    // The platform's own table, created before the operator: other names, varchar, no expiry.
    schema
        .client
        .batch_execute(&format!(
            "CREATE TABLE \"{0}\".\"BankClients\" (\"ClientId\" varchar(64) PRIMARY KEY, \
             \"BankId\" varchar(64) NOT NULL, \"Owner\" text, \"K8sNamespace\" text, \"Modified\" timestamptz);",
            schema.name
        ))
        .await
        .unwrap();
    let bank_layout = TableLayout::bank_clients(
        &schema.table("BankClients"),
        &"client_id=ClientId,bank_id=BankId,name=Owner,namespace=K8sNamespace,secret_expires_at=-,updated_at=Modified"
            .parse()
            .unwrap(),
    )
    .unwrap();
    // Without migrate, a missing table is an error that says what to do.
    let sink = RegistrySink::new(
        Box::new(PostgresBackend::new(&url).unwrap()),
        bank_layout,
        TableLayout::tenant_mappings(&schema.table("no_such_table"), &ColumnNames::default())
            .unwrap(),
    );
    sink.sync_bank_clients(
        "banks",
        &[bank("c-1", "nordbank", "banks", "2028-01-01T00:00:00Z")],
    )
    .await
    .unwrap();
    let got: Vec<(String, String, String, bool)> = schema
        .client
        .query(
            &format!(
                "SELECT \"ClientId\", \"BankId\", \"K8sNamespace\", \"Modified\" IS NOT NULL FROM \"{}\".\"BankClients\"",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        [("c-1".into(), "nordbank".into(), "banks".into(), true)]
    );
    let err = sink
        .sync_tenant_mappings("banks", &[tenant("t", "nordbank", true, "banks")])
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Rejected(_)), "{err}");
    assert!(
        err.to_string().contains("--registry-database-migrate"),
        "{err}"
    );
    assert_eq!(err.reason(), "RegistryRejected");
    schema.drop().await;
}

#[tokio::test]
async fn an_outage_is_an_error_and_heals_with_nothing_lost() {
    let Some(url) = pg::database_url("an_outage_is_an_error_and_heals_with_nothing_lost") else {
        return;
    };
    let schema = pg::Schema::create(&url, "outage").await;
    let proxy = pg::Proxy::start(pg::upstream(&url).await).await;
    // Down from the start: migrate and sync fail; the tables are created once it is back.
    proxy.cut();
    let sink = sink(&proxy.url(&url), &schema, true);
    let first = [bank("c-nord", "nordbank", "banks", "2028-01-01T00:00:00Z")];
    let err = sink.sync_bank_clients("banks", &first).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err}");
    assert_eq!(err.reason(), "RegistryUnavailable");
    proxy.restore();
    sink.sync_bank_clients("banks", &first).await.unwrap();
    assert_eq!(bank_rows(&schema).await.len(), 1);

    // Down while connected: the next sync fails quickly, then the same desired state is written
    // once the database is back.
    proxy.cut();
    let second = [
        bank("c-nord", "nordbank", "banks", "2030-01-01T00:00:00Z"),
        bank("c-fjord", "fjordsparebank", "banks", "2028-02-01T00:00:00Z"),
    ];
    let started = std::time::Instant::now();
    let err = sink.sync_bank_clients("banks", &second).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = sink.sync_bank_clients("banks", &second).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err}");
    assert_eq!(
        bank_rows(&schema).await.len(),
        1,
        "nothing written while down"
    );
    proxy.restore();
    let report = sink.sync_bank_clients("banks", &second).await.unwrap();
    assert!(report.repairs().is_empty(), "{report:?}");
    assert_eq!(
        bank_rows(&schema).await,
        [
            row(
                "c-fjord",
                "fjordsparebank",
                "banks",
                "2028-02-01T00:00:00.000000"
            ),
            row("c-nord", "nordbank", "banks", "2030-01-01T00:00:00.000000"),
        ]
    );
    schema.drop().await;
}
