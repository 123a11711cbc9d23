//! The TenantMapping controller's execute stage: the namespace's tenant-mappings registry,
//! recomputed from every claim and written whole (deterministic, so concurrent reconciles converge).

use std::collections::BTreeMap;

use kube::runtime::reflector::Store;

use crate::api::TenantMapping;
use crate::controllers::children::apply_config_map;
use crate::controllers::context::Context;
use crate::controllers::error::Error;

use super::observe::claims;
use super::plan::{
    TENANT_MAPPINGS_REGISTRY, TenantRegistry, registry_data, resolve_tenant_registry,
};

/// Recompute the registry from every live TenantMapping in the namespace (the controller's
/// store) and write it.
pub async fn rewrite_registry(
    ctx: &Context,
    mappings: &Store<TenantMapping>,
    namespace: &str,
) -> Result<TenantRegistry, Error> {
    let registry = resolve_tenant_registry(&claims(mappings, namespace));
    apply_config_map(
        ctx,
        namespace,
        TENANT_MAPPINGS_REGISTRY,
        &registry_data(&registry),
        &BTreeMap::new(),
        None,
    )
    .await?;
    Ok(registry)
}
