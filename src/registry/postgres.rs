//! PostgreSQL backend of the registry sink, through `tokio-postgres`.
//!
//! Why `tokio-postgres` and not `sqlx`: the sink needs a handful of dynamic statements on one
//! connection, nothing else. `tokio-postgres` is the protocol and its types (about 20 crates);
//! `sqlx` with only `postgres` + `runtime-tokio` + `tls-rustls` still brings its pool, query
//! builder, migration and runtime-abstraction layers (sqlx-core alone depends on more crates than
//! tokio-postgres in total). TLS goes through `tokio-postgres-rustls` with ring and the platform
//! verifier: the same rustls stack as the Graph client, no OpenSSL, no aws-lc.
//!
//! One connection, used by one operation at a time (the registries are small and written rarely);
//! a broken or timed-out connection is dropped and the next operation connects again, so an
//! outage costs failed reconciles (with backoff), never a stuck sink.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{debug, info, warn};

use super::{
    ColumnType, RegistryBackend, RegistryError, Row, RowKey, SyncPlan, TableLayout, Value, Write,
};

/// How long one operation (a whole sync transaction) may take before the connection is dropped.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect timeout when the URL sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Advisory lock key that serializes table creation between replicas ("entraop" in ASCII).
const MIGRATION_LOCK: i64 = 0x0065_6e74_7261_6f70;

/// The PostgreSQL backend.
pub struct PostgresBackend {
    config: Config,
    tls: MakeRustlsConnect,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("PostgresBackend")
            .field("hosts", &self.config.get_hosts().len())
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// A backend for a connection URL (`postgres://user:password@host:port/db?sslmode=require`)
    /// or a key-value connection string. Nothing connects yet.
    ///
    /// `sslmode`: `disable`, `prefer` (default: TLS when the server offers it) or `require`.
    /// Whenever TLS is used the server's certificate and host name are verified against the
    /// platform's roots, so libpq's `verify-full` (and `verify-ca`) are accepted as `require`.
    pub fn new(url: &str) -> Result<PostgresBackend, RegistryError> {
        let url = url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        // The parse error never quotes the URL (it may hold a password).
        let mut config = Config::from_str(&url).map_err(|e| {
            RegistryError::Config(format!("the registry database URL does not parse: {e}"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("entra-operator");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| RegistryError::Config(format!("TLS roots: {e}")))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::Config(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(PostgresBackend {
            config,
            tls: MakeRustlsConnect::new(tls),
            client: Mutex::new(None),
        })
    }

    /// The connection, connecting first when there is none or it broke.
    async fn connected(&self) -> Result<MutexGuard<'_, Option<Client>>, RegistryError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            let (client, connection) = self
                .config
                .connect(self.tls.clone())
                .await
                .map_err(|e| classify(&e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    debug!(error = %chain(&e), "registry database connection closed");
                }
            });
            info!("connected to the registry database");
            *guard = Some(client);
        }
        Ok(guard)
    }
}

/// The result of an operation bounded by [`OPERATION_TIMEOUT`]; a connection that timed out or
/// broke is dropped so the next operation connects again.
fn settle<T>(
    guard: &mut MutexGuard<'_, Option<Client>>,
    outcome: Result<Result<T, OpError>, tokio::time::error::Elapsed>,
) -> Result<T, RegistryError> {
    let result = match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(OpError::Db(e))) => Err(classify(&e)),
        Ok(Err(OpError::Other(e))) => Err(e),
        Err(_) => {
            **guard = None;
            return Err(RegistryError::Unavailable(format!(
                "no answer within {}s",
                OPERATION_TIMEOUT.as_secs()
            )));
        }
    };
    if guard.as_ref().is_some_and(|c| c.is_closed()) {
        warn!("registry database connection lost");
        **guard = None;
    }
    result
}

/// What an operation on the connection can fail with.
enum OpError {
    Db(tokio_postgres::Error),
    Other(RegistryError),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpError::Db(e)
    }
}

/// The error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Connection problems (no route, refused, broken, server shutting down or full) are
/// `Unavailable`; errors the server raised about the statement are `Rejected`, with its message.
fn classify(e: &tokio_postgres::Error) -> RegistryError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code();
            let text = format!("{} ({})", db.message(), code.code());
            let transient = code.code().starts_with("08")
                || code.code().starts_with("53")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code);
            if transient {
                RegistryError::Unavailable(text)
            } else if *code == SqlState::UNDEFINED_TABLE {
                RegistryError::Rejected(format!(
                    "{text}; create the table (README: database registry) or run with --registry-database-migrate"
                ))
            } else {
                RegistryError::Rejected(text)
            }
        }
        None => RegistryError::Unavailable(chain(e)),
    }
}

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text",
        ColumnType::Bool => "boolean",
        ColumnType::Timestamp => "timestamptz",
    }
}

/// A statement parameter for a value of a column of type `ty` (a typed NULL for `Null`).
fn param(value: &Value, ty: ColumnType) -> Box<dyn ToSql + Sync + Send> {
    match (value, ty) {
        (Value::Text(s), _) => Box::new(s.clone()),
        (Value::Bool(b), _) => Box::new(*b),
        (Value::Timestamp(t), _) => Box::new(*t),
        (Value::Null, ColumnType::Text) => Box::new(None::<String>),
        (Value::Null, ColumnType::Bool) => Box::new(None::<bool>),
        (Value::Null, ColumnType::Timestamp) => Box::new(None::<jiff::Timestamp>),
    }
}

fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The statements of one layout.
struct Statements {
    select: String,
    upsert: String,
    delete: String,
}

fn statements(layout: &TableLayout) -> Statements {
    let table = layout.table.quoted();
    let all: Vec<String> = layout.columns.iter().map(|c| c.name.quoted()).collect();
    let keys: Vec<String> = layout.keys().map(|c| c.name.quoted()).collect();
    let unnest: Vec<String> = (0..keys.len())
        .map(|i| format!("${}::text[]", i + 2))
        .collect();
    let select = format!(
        "SELECT {} FROM {table} WHERE {} = $1 OR ({}) IN (SELECT * FROM unnest({})) FOR UPDATE",
        all.join(", "),
        layout.namespace_column().quoted(),
        keys.join(", "),
        unnest.join(", ")
    );
    let mut insert_columns = all.clone();
    let mut placeholders: Vec<String> = (1..=all.len()).map(|i| format!("${i}")).collect();
    let mut updates: Vec<String> = layout
        .values()
        .map(|c| format!("{0} = EXCLUDED.{0}", c.name.quoted()))
        .collect();
    if let Some(updated_at) = &layout.updated_at {
        insert_columns.push(updated_at.quoted());
        placeholders.push("now()".into());
        updates.push(format!("{} = now()", updated_at.quoted()));
    }
    let upsert = format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
        insert_columns.join(", "),
        placeholders.join(", "),
        keys.join(", "),
        updates.join(", ")
    );
    let delete = format!(
        "DELETE FROM {table} WHERE {}",
        keys.iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ${}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ")
    );
    Statements {
        select,
        upsert,
        delete,
    }
}

/// A table row read back, by role.
fn read_row(layout: &TableLayout, row: &tokio_postgres::Row) -> Result<Row, RegistryError> {
    let mut out = Vec::new();
    for (i, c) in layout.columns.iter().enumerate() {
        let bad_type = |e: tokio_postgres::Error| {
            RegistryError::Rejected(format!(
                "column {} of {} is not {}: {}",
                c.name,
                layout.table,
                sql_type(c.ty),
                chain(&e)
            ))
        };
        let value = match c.ty {
            ColumnType::Text => row
                .try_get::<_, Option<String>>(i)
                .map_err(bad_type)?
                .map(Value::Text),
            ColumnType::Bool => row
                .try_get::<_, Option<bool>>(i)
                .map_err(bad_type)?
                .map(Value::Bool),
            ColumnType::Timestamp => row
                .try_get::<_, Option<jiff::Timestamp>>(i)
                .map_err(bad_type)?
                .map(Value::Timestamp),
        };
        out.push((c.role, value.unwrap_or(Value::Null)));
    }
    Ok(Row(out))
}

/// `CREATE TABLE IF NOT EXISTS` for a layout (and `CREATE SCHEMA IF NOT EXISTS` for its schema).
pub fn create_table_sql(layout: &TableLayout) -> String {
    let mut lines: Vec<String> = layout
        .columns
        .iter()
        .map(|c| {
            let mut line = format!("    {} {}", c.name.quoted(), sql_type(c.ty));
            if c.required {
                line.push_str(" NOT NULL");
            }
            if c.ty == ColumnType::Bool {
                line.push_str(" DEFAULT false");
            }
            line
        })
        .collect();
    if let Some(updated_at) = &layout.updated_at {
        lines.push(format!(
            "    {} timestamptz NOT NULL DEFAULT now()",
            updated_at.quoted()
        ));
    }
    lines.push(format!(
        "    PRIMARY KEY ({})",
        layout
            .keys()
            .map(|c| c.name.quoted())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let schema = layout
        .table
        .schema
        .as_ref()
        .map(|s| format!("CREATE SCHEMA IF NOT EXISTS {};\n", s.quoted()))
        .unwrap_or_default();
    format!(
        "{schema}CREATE TABLE IF NOT EXISTS {} (\n{}\n);",
        layout.table.quoted(),
        lines.join(",\n")
    )
}

#[async_trait]
impl RegistryBackend for PostgresBackend {
    async fn sync(
        &self,
        layout: &TableLayout,
        namespace: &str,
        keys: &[RowKey],
        plan: &(dyn for<'r> Fn(&'r [Row]) -> SyncPlan + Send + Sync),
    ) -> Result<SyncPlan, RegistryError> {
        let statements = statements(layout);
        let key_count = layout.keys().count();
        let mut select_params: Vec<Box<dyn ToSql + Sync + Send>> =
            vec![Box::new(namespace.to_string())];
        for i in 0..key_count {
            let column: Vec<String> = keys.iter().map(|k| k.0[i].clone()).collect();
            select_params.push(Box::new(column));
        }
        let mut guard = self.connected().await?;
        let client = guard.as_mut().expect("connected");
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, async {
            let tx = client.transaction().await?;
            let rows = tx.query(&statements.select, &refs(&select_params)).await?;
            let existing = rows
                .iter()
                .map(|r| read_row(layout, r))
                .collect::<Result<Vec<Row>, RegistryError>>()
                .map_err(OpError::Other)?;
            let plan = plan(&existing);
            for write in &plan.writes {
                match write {
                    Write::Upsert(row) => {
                        let params: Vec<Box<dyn ToSql + Sync + Send>> = layout
                            .columns
                            .iter()
                            .map(|c| param(row.get(c.role).unwrap_or(&Value::Null), c.ty))
                            .collect();
                        tx.execute(&statements.upsert, &refs(&params)).await?;
                    }
                    Write::Delete(key) => {
                        let params: Vec<Box<dyn ToSql + Sync + Send>> = key
                            .0
                            .iter()
                            .map(|k| Box::new(k.clone()) as Box<dyn ToSql + Sync + Send>)
                            .collect();
                        tx.execute(&statements.delete, &refs(&params)).await?;
                    }
                }
            }
            tx.commit().await?;
            Ok::<_, OpError>(plan)
        })
        .await;
        settle(&mut guard, outcome)
    }

    async fn create_missing_tables(&self, layouts: &[&TableLayout]) -> Result<(), RegistryError> {
        let ddl: Vec<String> = layouts.iter().map(|l| create_table_sql(l)).collect();
        let ddl = ddl.join("\n");
        let mut guard = self.connected().await?;
        let client = guard.as_mut().expect("connected");
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, async {
            let tx = client.transaction().await?;
            // Two replicas starting together must not race on CREATE TABLE IF NOT EXISTS.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(&ddl).await?;
            tx.commit().await?;
            Ok::<_, OpError>(())
        })
        .await;
        settle(&mut guard, outcome)?;
        info!("registry tables present (created where missing)");
        Ok(())
    }

    fn ddl(&self, layout: &TableLayout) -> String {
        create_table_sql(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ColumnNames;

    #[test]
    fn statements_quote_every_identifier() {
        let names: ColumnNames = "client_id=ClientId,bank_id=BankId,secret_expires_at=-"
            .parse()
            .unwrap();
        let layout = TableLayout::bank_clients("org.BankClients", &names).unwrap();
        let s = statements(&layout);
        assert_eq!(
            s.select,
            "SELECT \"ClientId\", \"BankId\", \"name\", \"namespace\" FROM \"org\".\"BankClients\" \
             WHERE \"namespace\" = $1 OR (\"ClientId\") IN (SELECT * FROM unnest($2::text[])) FOR UPDATE"
        );
        assert_eq!(
            s.upsert,
            "INSERT INTO \"org\".\"BankClients\" (\"ClientId\", \"BankId\", \"name\", \"namespace\", \"updated_at\") \
             VALUES ($1, $2, $3, $4, now()) ON CONFLICT (\"ClientId\") DO UPDATE SET \
             \"BankId\" = EXCLUDED.\"BankId\", \"name\" = EXCLUDED.\"name\", \
             \"namespace\" = EXCLUDED.\"namespace\", \"updated_at\" = now()"
        );
        assert_eq!(
            s.delete,
            "DELETE FROM \"org\".\"BankClients\" WHERE \"ClientId\" = $1"
        );
        let tm =
            TableLayout::tenant_mappings("tenant_bank_mappings", &ColumnNames::default()).unwrap();
        assert!(statements(&tm).select.contains(
            "(\"tenant_id\", \"bank_id\") IN (SELECT * FROM unnest($2::text[], $3::text[]))"
        ));
    }

    #[test]
    fn ddl_has_the_primary_keys_and_types() {
        let tm =
            TableLayout::tenant_mappings("tenant_bank_mappings", &ColumnNames::default()).unwrap();
        assert_eq!(
            create_table_sql(&tm),
            "CREATE TABLE IF NOT EXISTS \"tenant_bank_mappings\" (\n    \"tenant_id\" text NOT NULL,\n    \
             \"bank_id\" text NOT NULL,\n    \"is_default\" boolean NOT NULL DEFAULT false,\n    \
             \"name\" text,\n    \"namespace\" text,\n    \
             \"updated_at\" timestamptz NOT NULL DEFAULT now(),\n    \
             PRIMARY KEY (\"tenant_id\", \"bank_id\")\n);"
        );
    }

    #[test]
    fn the_readme_gives_the_ddl_the_operator_runs() {
        let readme = include_str!("../../README.md");
        for layout in [
            TableLayout::bank_clients("bank_clients", &ColumnNames::default()).unwrap(),
            TableLayout::tenant_mappings("tenant_bank_mappings", &ColumnNames::default()).unwrap(),
        ] {
            let ddl = create_table_sql(&layout);
            assert!(readme.contains(&ddl), "README lacks:\n{ddl}");
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_a_config_error_without_the_password() {
        let err = PostgresBackend::new("postgres://u:s3cret@host:notaport/db").unwrap_err();
        assert!(matches!(err, RegistryError::Config(_)));
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(PostgresBackend::new("postgres://u@h/db?sslmode=verify-full").is_ok());
    }
}
