//! The one place status is written: server-side apply of the whole status, skipped when it would
//! change nothing (so resyncs of settled resources cost no API write and no watch event).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::labels::FIELD_MANAGER;

/// Apply `status` to the object's status subresource unless it equals `current`.
/// Returns whether a write happened.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    crate::crash::after_write("status apply");
    Ok(true)
}
