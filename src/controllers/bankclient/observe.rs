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
    bank_clients
        .state()
        .into_iter()
        .filter(|bc| bc.metadata.namespace.as_deref() == Some(namespace))
        .filter(|bc| bc.metadata.deletion_timestamp.is_none())
        .filter(|bc| Some(bc.name_any().as_str()) != exclude)
        .collect()
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
    live_bank_clients(bank_clients, namespace, exclude)
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
                .and_then(|a| a.status.as_ref()?.app_id.clone()),
        })
        .collect()
}

/// The appId of the API whose role the BankClient asks for, once its AppRegistration reports one.
pub fn api_app_id(apps: &Store<AppRegistration>, namespace: &str, name: &str) -> Option<String> {
    stored_app(apps, namespace, name).and_then(|a| a.status.as_ref()?.app_id.clone())
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
