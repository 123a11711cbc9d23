//! The BankClient controller's execute stage: the namespace's bank-clients registry, recomputed
//! whole from every claim in the stores and written once per burst (`controllers::coalesce`); the
//! child AppRegistration is applied with `controllers::children`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;

use crate::api::{AppRegistration, BankClient};
use crate::controllers::coalesce::CoalescedConfigMap;

use super::observe::claims;
use super::plan::{BANK_CLIENTS_REGISTRY, resolve_bank_registry};

/// The coalescing writer of the bank-clients ConfigMaps, computing each from the stores.
pub fn registry_writer(
    bank_clients: Store<BankClient>,
    apps: Store<AppRegistration>,
    window: Duration,
) -> Arc<CoalescedConfigMap> {
    CoalescedConfigMap::new(BANK_CLIENTS_REGISTRY, window, move |namespace| {
        registry_data(&bank_clients, &apps, namespace)
    })
}

/// The registry's data (`clientId → bankId`) from every live claim in the namespace.
/// Deterministic, so the writes of different moments agree on what did not change.
pub fn registry_data(
    bank_clients: &Store<BankClient>,
    apps: &Store<AppRegistration>,
    namespace: &str,
) -> BTreeMap<String, String> {
    resolve_bank_registry(&claims(bank_clients, apps, namespace, None)).entries
}
