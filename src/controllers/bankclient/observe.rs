//! The BankClient controller's observe stage: every claim on a bankId in the namespace, and the
//! appIds the child AppRegistrations report, read from the controller's reflector stores (no
//! request to the API server: a LIST per reconcile made a burst of N BankClients cost O(N²)).

use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::api::{AppRegistration, BankClient};
use crate::controllers::error::Error;

use super::plan::{BankClaim, child_name};

/// The live BankClients of the namespace in the store (those being deleted and `exclude` left out).
pub fn live_bank_clients(
    bank_clients: &Store<BankClient>,
    namespace: &str,
    exclude: Option<&str>,
) -> Vec<Arc<BankClient>> {
    bank_clients.state_filter(|bc| {
        bc.metadata.namespace.as_deref() == Some(namespace)
            && bc.metadata.deletion_timestamp.is_none()
            && bc.metadata.name.as_deref() != exclude
    })
}

/// The AppRegistration `name` of the namespace as the store holds it.
pub fn stored_app(
    apps: &Store<AppRegistration>,
    namespace: &str,
    name: &str,
) -> Option<Arc<AppRegistration>> {
    apps.get(&ObjectRef::new(name).within(namespace))
}

/// Every live BankClient's claim in the namespace (those being deleted and `exclude` left out),
/// with the clientId its child AppRegistration reports.
pub fn claims(
    bank_clients: &Store<BankClient>,
    apps: &Store<AppRegistration>,
    namespace: &str,
    exclude: Option<&str>,
) -> Vec<BankClaim> {
    claims_where(bank_clients, apps, namespace, exclude, |_| true)
}

/// The live claims of one bankId in the namespace: all that decides who holds it (claims of other
/// bankIds never do), so a reconcile resolves a handful of claims, not the namespace's registry.
pub fn claims_of_bank_id(
    bank_clients: &Store<BankClient>,
    apps: &Store<AppRegistration>,
    namespace: &str,
    bank_id: &str,
) -> Vec<BankClaim> {
    claims_where(bank_clients, apps, namespace, None, |bc| {
        bc.spec.bank_id == bank_id
    })
}

fn claims_where(
    bank_clients: &Store<BankClient>,
    apps: &Store<AppRegistration>,
    namespace: &str,
    exclude: Option<&str>,
    keep: impl Fn(&BankClient) -> bool,
) -> Vec<BankClaim> {
    // Filtered under the store's lock: only matching BankClients are copied out.
    bank_clients
        .state_filter(|bc| {
            bc.metadata.namespace.as_deref() == Some(namespace)
                && bc.metadata.deletion_timestamp.is_none()
                && bc.metadata.name.as_deref() != exclude
                && keep(bc)
        })
        .into_iter()
        .map(|bc| BankClaim {
            name: bc.name_any(),
            bank_id: bc.spec.bank_id.clone(),
            created: bc
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            client_id: stored_app(apps, namespace, &child_name(&bc))
                .and_then(|a| a.status.as_ref()?.app_id.as_deref().map(str::to_string)),
        })
        .collect()
}

/// The appId of the API whose role the BankClient asks for, once its AppRegistration reports one.
pub fn api_app_id(apps: &Store<AppRegistration>, namespace: &str, name: &str) -> Option<String> {
    stored_app(apps, namespace, name)
        .and_then(|a| a.status.as_ref()?.app_id.as_deref().map(str::to_string))
}

/// Whether the child AppRegistration exists and is this BankClient's (not a same-named stranger).
pub async fn owns_child(apps: &Api<AppRegistration>, obj: &BankClient) -> Result<bool, Error> {
    Ok(apps.get_opt(&child_name(obj)).await?.is_some_and(|child| {
        child
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == obj.metadata.uid.as_ref())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::bankclient::plan::resolve_bank_registry;
    use kube::runtime::{reflector, watcher};

    fn bank_client(name: &str, bank_id: &str, created: &str) -> BankClient {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
            "metadata": {"name": name, "namespace": "banks", "uid": format!("u-{name}"),
                         "creationTimestamp": created},
            "spec": {"bankId": bank_id, "api": {"appRef": {"name": "api"}},
                     "secret": {"name": format!("{name}-credentials")}}
        }))
        .unwrap()
    }

    /// Who holds a bankId, resolved from that bankId's claims alone, is what the whole namespace's
    /// resolution says (the reconcile uses the former; the registry the latter).
    #[test]
    fn one_bank_ids_claims_resolve_as_the_whole_registry_does() {
        let (bank_clients, mut writer) = reflector::store::<BankClient>();
        let (apps, _) = reflector::store::<AppRegistration>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for (name, bank_id, created) in [
            ("a", "nordbank", "2026-01-01T00:00:02Z"),
            ("b", "nordbank", "2026-01-01T00:00:01Z"),
            ("c", "fjordbank", "2026-01-01T00:00:03Z"),
            ("d", "nordbank", "2026-01-01T00:00:01Z"),
            ("e", "kystbank", "2026-01-01T00:00:00Z"),
        ] {
            writer.apply_watcher_event(&watcher::Event::InitApply(bank_client(
                name, bank_id, created,
            )));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let whole = resolve_bank_registry(&claims(&bank_clients, &apps, "banks", None));
        assert_eq!(whole.conflicts.len(), 2, "{whole:?}");
        for bc in bank_clients.state() {
            let one = resolve_bank_registry(&claims_of_bank_id(
                &bank_clients,
                &apps,
                "banks",
                &bc.spec.bank_id,
            ));
            let name = bc.name_any();
            assert_eq!(
                one.conflicts.get(&name),
                whole.conflicts.get(&name),
                "{name}"
            );
        }
        assert_eq!(
            claims_of_bank_id(&bank_clients, &apps, "banks", "nordbank").len(),
            3
        );
    }
}
