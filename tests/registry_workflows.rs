//! The registry database sink end to end: the platform example (`examples/bookme-platform.yaml`)
//! with all controllers against the emulators and a real PostgreSQL (`scripts/with-postgres.sh`)
//! behind a proxy the test can cut. The expected rows appear; a hand edit is repaired and reported
//! as an event; during an outage the resources say `RegistrySynced=False` and deletions wait;
//! once the database is back the rows follow the resources.

#[path = "support/postgres.rs"]
mod pg;
mod support;

use std::sync::Arc;
use std::time::Duration;

use entra_emulator::EmulatorConfig;
use entra_operator::api::{BankClient, TenantMapping};
use entra_operator::registry::postgres::PostgresBackend;
use entra_operator::registry::{ColumnNames, RegistrySink, TableLayout};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::Harness;

const NS: &str = "default";
const NORDIC: &str = "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const FJORD: &str = "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d";
const WAIT: Duration = Duration::from_secs(90);

/// `(client_id, bank_id, name, namespace, has expiry)` rows, ordered by bank.
async fn bank_rows(s: &pg::Schema) -> Vec<(String, String, String, String, bool)> {
    s.client
        .query(
            &format!(
                "SELECT client_id, bank_id, name, namespace, secret_expires_at IS NOT NULL \
                 FROM \"{}\".bank_clients ORDER BY bank_id",
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

/// `(tenant_id, bank_id, is_default, name)` rows.
async fn tenant_rows(s: &pg::Schema) -> Vec<(String, String, bool, String)> {
    s.client
        .query(
            &format!(
                "SELECT tenant_id, bank_id, is_default, name FROM \"{}\".tenant_bank_mappings \
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

/// `(status, reason)` of a condition.
fn condition(
    conditions: Option<&entra_operator::api::Conditions>,
    type_: &str,
) -> Option<(String, String)> {
    conditions?
        .get(type_)
        .map(|c| (c.status.to_string(), c.reason.to_string()))
}

async fn bank_client(h: &Harness, name: &str) -> Option<BankClient> {
    h.api::<BankClient>(NS).get_opt(name).await.unwrap()
}

async fn registry_synced(h: &Harness, name: &str) -> Option<(String, String)> {
    let bc = bank_client(h, name).await?;
    condition(bc.status.as_ref().map(|s| &s.conditions), "RegistrySynced")
}

/// Wake a resource (a new annotation value triggers a reconcile, as `kubectl annotate` would).
async fn poke<K>(h: &Harness, name: &str, value: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    h.api::<K>(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test.bookme.io/poke": value}}})),
        )
        .await
        .unwrap();
}

async fn events_with_reason(h: &Harness, reason: &str) -> Vec<String> {
    kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(h.client.clone(), NS)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn the_platform_example_fills_the_registry_tables_and_they_heal() {
    let Some(url) =
        pg::database_url("the_platform_example_fills_the_registry_tables_and_they_heal")
    else {
        return;
    };
    let schema = pg::Schema::create(&url, "platform").await;
    let proxy = pg::Proxy::start(pg::upstream(&url).await).await;
    let sink = RegistrySink::new(
        Box::new(PostgresBackend::new(&proxy.url(&url)).unwrap()),
        TableLayout::bank_clients(&schema.table("bank_clients"), &ColumnNames::default()).unwrap(),
        TableLayout::tenant_mappings(
            &schema.table("tenant_bank_mappings"),
            &ColumnNames::default(),
        )
        .unwrap(),
    )
    .with_migrate(true);
    let mut h = Harness::start_with_registry(EmulatorConfig::default(), Some(Arc::new(sink))).await;
    for (name, id, display) in [
        ("nordic", NORDIC, "Nordic Bank Group"),
        ("fjord", FJORD, "Fjord Savings"),
    ] {
        let mut spec = entra_emulator::TenantSpec::new(name);
        spec.id = Some(id.to_string());
        spec.display_name = Some(display.to_string());
        h.entra.add_tenant(spec);
    }
    h.start_all_controllers();
    let text =
        std::fs::read_to_string(support::root().join("examples/bookme-platform.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        value["metadata"]["namespace"] = json!(NS);
        h.apply(value).await;
    }

    // The expected rows: each bank's clientId → bankId, each tenant's BankIds with the default.
    let client_ids: Vec<String> = {
        let mut ids = Vec::new();
        for name in ["fjordsparebank", "nordbank"] {
            let id = h
                .wait_for(&format!("{name} clientId"), WAIT, || async {
                    bank_client(&h, name).await?.status?.client_id
                })
                .await;
            ids.push(id.to_string());
        }
        ids
    };
    let expected_banks = vec![
        (
            client_ids[0].clone(),
            "fjordsparebank".to_string(),
            "fjordsparebank".to_string(),
            NS.to_string(),
            true,
        ),
        (
            client_ids[1].clone(),
            "nordbank".to_string(),
            "nordbank".to_string(),
            NS.to_string(),
            true,
        ),
    ];
    h.wait_for("bank_clients rows", WAIT, || async {
        (bank_rows(&schema).await == expected_banks).then_some(())
    })
    .await;
    let expected_tenants = vec![
        (
            NORDIC.to_string(),
            "nordbank".to_string(),
            true,
            "nordic-bank-group".to_string(),
        ),
        (
            NORDIC.to_string(),
            "nordbank-markets".to_string(),
            false,
            "nordic-bank-group".to_string(),
        ),
        (
            FJORD.to_string(),
            "fjordsparebank".to_string(),
            true,
            "fjord-savings".to_string(),
        ),
    ];
    let mut sorted_tenants = expected_tenants.clone();
    sorted_tenants.sort();
    h.wait_for("tenant_bank_mappings rows", WAIT, || async {
        (tenant_rows(&schema).await == sorted_tenants).then_some(())
    })
    .await;
    for name in ["nordbank", "fjordsparebank"] {
        h.wait_for(&format!("{name} RegistrySynced"), WAIT, || async {
            registry_synced(&h, name).await.filter(|(s, _)| s == "True")
        })
        .await;
    }
    let mapping = h
        .api::<TenantMapping>(NS)
        .get("nordic-bank-group")
        .await
        .unwrap();
    assert_eq!(
        condition(
            mapping.status.as_ref().map(|s| &s.conditions),
            "RegistrySynced"
        ),
        Some(("True".into(), "Synced".into()))
    );

    // A hand edit is repaired at the next reconcile and reported.
    schema
        .client
        .execute(
            &format!(
                "UPDATE \"{}\".bank_clients SET bank_id = 'evilbank' WHERE client_id = $1",
                schema.name
            ),
            &[&client_ids[1]],
        )
        .await
        .unwrap();
    poke::<BankClient>(&h, "nordbank", "1").await;
    h.wait_for("the edited row repaired", WAIT, || async {
        (bank_rows(&schema).await == expected_banks).then_some(())
    })
    .await;
    // The RegistryRepaired event names the column and the row that were restored (other repair
    // events may come first: see the closing note on the expiry column).
    let wanted = format!("restored bank_id of row client_id={}", client_ids[1]);
    h.wait_for(
        "a RegistryRepaired event for the edited row",
        WAIT,
        || async {
            let notes = events_with_reason(&h, "RegistryRepaired").await;
            notes.iter().any(|n| n.contains(&wanted)).then_some(())
        },
    )
    .await;

    // The database goes away: the next reconcile says so, a deleted BankClient and TenantMapping
    // wait for their rows to go.
    proxy.cut();
    poke::<BankClient>(&h, "nordbank", "2").await;
    let (_, reason) = h
        .wait_for("RegistrySynced=False", WAIT, || async {
            registry_synced(&h, "nordbank")
                .await
                .filter(|(s, _)| s == "False")
        })
        .await;
    assert_eq!(reason, "RegistryUnavailable");
    h.wait_for("a RegistryUnavailable event", WAIT, || async {
        (!events_with_reason(&h, "RegistryUnavailable")
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    h.api::<BankClient>(NS)
        .delete("fjordsparebank", &DeleteParams::default())
        .await
        .unwrap();
    h.api::<TenantMapping>(NS)
        .delete("fjord-savings", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        bank_client(&h, "fjordsparebank").await.is_some(),
        "the finalizer holds the BankClient while its row cannot be deleted"
    );
    assert_eq!(
        bank_rows(&schema).await,
        expected_banks,
        "nothing written while down"
    );

    // Back: the rows follow the resources, the condition turns True again.
    proxy.restore();
    h.wait_for("fjordsparebank gone", WAIT, || async {
        bank_client(&h, "fjordsparebank")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    h.wait_for("the deleted resources' rows gone", WAIT, || async {
        let banks = bank_rows(&schema).await;
        let tenants = tenant_rows(&schema).await;
        (banks == expected_banks[1..] && tenants == expected_tenants[..2]).then_some(())
    })
    .await;
    h.wait_for("nordbank RegistrySynced again", WAIT, || async {
        registry_synced(&h, "nordbank")
            .await
            .filter(|(s, _)| s == "True")
    })
    .await;
    h.stop_controllers().await;
    schema.drop().await;
}
