//! What the BankClient and TenantMapping controllers do with the sink: compute a namespace's rows
//! from the resources (the same first-claim-wins resolution as the ConfigMaps), sync them, and turn
//! the outcome into the resource's `RegistrySynced` condition and a `RegistryRepaired` event.

use std::sync::Arc;

use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tracing::warn;

use crate::api::{AppRegistration, BankClient, Conditions, TenantMapping};
use crate::controllers::bankclient::observe::{live_bank_clients, stored_app};
use crate::controllers::bankclient::plan::{BankClaim, child_name, resolve_bank_registry};
use crate::controllers::conditions::DesiredCondition;
use crate::controllers::context::Context;
use crate::controllers::events::publish;
use crate::controllers::tenantmapping::plan::{TenantClaim, resolve_tenant_registry};

use crate::registry::{
    BankClientRow, RegistryError, RegistryTable, RowKey, SyncReport, TenantMappingRow,
};

pub use crate::api::condition::REGISTRY_SYNCED;

fn created<K: Resource>(obj: &K) -> String {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default()
}

/// The bank-clients rows of a namespace: every BankClient that holds its bankId and has a clientId
/// (live ones, `exclude` left out), with its child's current secret expiry. Read from the
/// BankClient controller's stores (no request to the API server).
pub fn bank_client_rows(
    bank_clients: &Store<BankClient>,
    apps: &Store<AppRegistration>,
    namespace: &str,
    exclude: Option<&str>,
) -> Vec<BankClientRow> {
    let bank_clients = live_bank_clients(bank_clients, namespace, exclude);
    let status_of = |bc: &BankClient| {
        stored_app(apps, namespace, &child_name(bc)).and_then(|a| a.status.clone())
    };
    let claims: Vec<BankClaim> = bank_clients
        .iter()
        .map(|bc| BankClaim {
            name: bc.name_any(),
            bank_id: bc.spec.bank_id.clone(),
            created: created(bc.as_ref()),
            client_id: status_of(bc).and_then(|s| s.app_id.map(|id| id.to_string())),
        })
        .collect();
    let registry = resolve_bank_registry(&claims);
    bank_clients
        .iter()
        .filter(|bc| !registry.conflicts.contains_key(&bc.name_any()))
        .filter_map(|bc| {
            let status = status_of(bc)?;
            Some(BankClientRow {
                client_id: status.app_id.as_deref()?.to_string(),
                bank_id: bc.spec.bank_id.clone(),
                name: bc.name_any(),
                namespace: namespace.to_string(),
                secret_expires_at: status
                    .credentials
                    .first()
                    .and_then(|c| c.expires_at.as_deref())
                    .and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

/// The tenant-mappings rows of a namespace: one per (tenant, BankId) of every TenantMapping in the
/// registry (live ones; conflicts left out, as in the ConfigMap). Read from the TenantMapping
/// controller's store.
pub fn tenant_mapping_rows(
    mappings: &Store<TenantMapping>,
    namespace: &str,
) -> Vec<TenantMappingRow> {
    let mappings: Vec<Arc<TenantMapping>> = mappings
        .state()
        .into_iter()
        .filter(|m| m.metadata.namespace.as_deref() == Some(namespace))
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .collect();
    let claims: Vec<TenantClaim> = mappings
        .iter()
        .map(|m| TenantClaim {
            name: m.name_any(),
            tenant_id: m.spec.tenant_id.clone(),
            bank_ids: m.spec.bank_ids.iter().map(|b| b.0.clone()).collect(),
            default_bank_id: m.spec.default_bank_id.clone(),
            created: created(m.as_ref()),
        })
        .collect();
    let registry = resolve_tenant_registry(&claims);
    let mut rows = Vec::new();
    for claim in claims
        .iter()
        .filter(|c| !registry.conflicts.contains_key(&c.name))
    {
        let tenant = claim.tenant_id.to_ascii_lowercase();
        let Some(entry) = registry.entries.get(&tenant) else {
            continue;
        };
        for bank_id in &entry.bank_ids {
            rows.push(TenantMappingRow {
                tenant_id: tenant.clone(),
                bank_id: bank_id.clone(),
                is_default: *bank_id == entry.default_bank_id,
                name: claim.name.clone(),
                namespace: namespace.to_string(),
            });
        }
    }
    rows
}

/// What a reconcile got from the sink.
pub struct Published {
    /// `RegistrySynced` for the reconciled resource.
    pub condition: DesiredCondition,
    /// Rows restored after a hand edit (for a `RegistryRepaired` event).
    pub repairs: Vec<String>,
    /// The sync failed: the reconcile reports the condition, then fails with this for backoff.
    pub error: Option<RegistryError>,
}

/// The condition for a resource from a sync's outcome; `own`: its rows' keys, with their
/// description (`client_id=…`).
fn condition_for(
    table: &str,
    own: &[(RowKey, String)],
    result: &Result<SyncReport, RegistryError>,
) -> DesiredCondition {
    match result {
        Err(e) => DesiredCondition::failed(REGISTRY_SYNCED, e.reason(), e.to_string()),
        Ok(report) => {
            let conflicts: Vec<String> = report
                .conflicts
                .iter()
                .filter_map(|c| {
                    let (_, key) = own.iter().find(|(k, _)| *k == c.key)?;
                    Some(format!(
                        "{key} is held by a row of namespace {}{}",
                        c.held_by_namespace,
                        c.held_by_name
                            .as_deref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default()
                    ))
                })
                .collect();
            if !conflicts.is_empty() {
                DesiredCondition::failed(
                    REGISTRY_SYNCED,
                    "RegistryConflict",
                    format!("{table}: {}; left as it is", conflicts.join("; ")),
                )
            } else if own.is_empty() {
                DesiredCondition::ok(
                    REGISTRY_SYNCED,
                    "Synced",
                    format!("{table} is in sync; this resource has no row (not in the registry)"),
                )
            } else {
                DesiredCondition::ok(
                    REGISTRY_SYNCED,
                    "Synced",
                    format!(
                        "{table} holds {}",
                        own.iter()
                            .map(|(_, d)| d.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                )
            }
        }
    }
}

/// Sync the namespace's bank-clients rows (`exclude`: a BankClient being deleted) and describe
/// the outcome for the BankClient `name`. `None` without a sink.
///
/// The rows are read from the stores inside the namespace's turn: a store only moves forward, so
/// a sync never writes rows planned from an older view than the sync before it.
pub async fn publish_bank_clients(
    ctx: &Context,
    bank_clients: &Store<BankClient>,
    apps: &Store<AppRegistration>,
    namespace: &str,
    name: &str,
    exclude: Option<&str>,
) -> Option<Published> {
    let sink = ctx.registry.as_ref()?;
    let _turn = sink.turn(RegistryTable::BankClients, namespace).await;
    let rows = bank_client_rows(bank_clients, apps, namespace, exclude);
    let layout = sink.bank_clients_layout();
    let own: Vec<(RowKey, String)> = rows
        .iter()
        .filter(|r| r.name == name)
        .map(|r| {
            let key = RowKey(vec![r.client_id.clone()]);
            let described = layout.describe_key(&key);
            (key, described)
        })
        .collect();
    let result = sink.sync_bank_clients(namespace, &rows).await;
    Some(finish(&layout.table.to_string(), &own, result))
}

/// Sync the namespace's tenant-mappings rows and describe the outcome for the TenantMapping
/// `name`. `None` without a sink.
pub async fn publish_tenant_mappings(
    ctx: &Context,
    mappings: &Store<TenantMapping>,
    namespace: &str,
    name: &str,
) -> Option<Published> {
    let sink = ctx.registry.as_ref()?;
    let _turn = sink.turn(RegistryTable::TenantMappings, namespace).await;
    let rows = tenant_mapping_rows(mappings, namespace);
    let layout = sink.tenant_mappings_layout();
    let own: Vec<(RowKey, String)> = rows
        .iter()
        .filter(|r| r.name == name)
        .map(|r| {
            let key = RowKey(vec![r.tenant_id.clone(), r.bank_id.clone()]);
            let described = layout.describe_key(&key);
            (key, described)
        })
        .collect();
    let result = sink.sync_tenant_mappings(namespace, &rows).await;
    Some(finish(&layout.table.to_string(), &own, result))
}

fn finish(
    table: &str,
    own: &[(RowKey, String)],
    result: Result<SyncReport, RegistryError>,
) -> Published {
    let condition = condition_for(table, own, &result);
    match result {
        Ok(report) => Published {
            condition,
            repairs: report.repairs(),
            error: None,
        },
        Err(e) => {
            warn!(table, error = %e, "registry database sync failed");
            Published {
                condition,
                repairs: Vec::new(),
                error: Some(e),
            }
        }
    }
}

/// Events about the sink for the reconciled resource: `RegistryRepaired` (Warning) naming rows
/// restored after a hand edit, and a change of `RegistrySynced` (Warning with the failure's
/// reason when it turns False, Normal `RegistrySynced` when it is True again).
pub async fn report<K>(ctx: &Context, obj: &K, previous: &Conditions, published: &Published)
where
    K: Resource<DynamicType = ()>,
{
    if !published.repairs.is_empty() {
        publish(
            ctx,
            obj,
            EventType::Warning,
            "RegistryRepaired",
            &format!(
                "rows changed outside the operator are restored: {}",
                published.repairs.join("; ")
            ),
        )
        .await;
    }
    let now = &published.condition;
    let before = previous.get(REGISTRY_SYNCED);
    let was_true = before.map(|c| c.status == "True");
    if was_true == Some(now.status) && before.is_some_and(|c| c.reason == now.reason) {
        return;
    }
    if !now.status {
        publish(ctx, obj, EventType::Warning, &now.reason, &now.message).await;
    } else if was_true == Some(false) {
        publish(ctx, obj, EventType::Normal, REGISTRY_SYNCED, &now.message).await;
    }
}
