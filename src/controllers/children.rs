//! What the composing kinds (BankClient, TenantMapping, NaaIntegration) write to Kubernetes besides
//! their status: child AppRegistrations and ConfigMaps, applied with the operator's field manager;
//! and the pure reading of a child's status as the parent's Ready.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::api::{AppRegistration, condition};
use crate::controllers::conditions::DesiredCondition;
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::labels::{FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY};

/// Finalizer that keeps a BankClient or TenantMapping until its registry entry is removed: the
/// registry is a shared ConfigMap, so no owner reference can clean it up.
pub const REGISTRY_FINALIZER: &str = "entra.bookme.io/registry";

/// Server-side apply a child AppRegistration (forcing ownership of the fields the parent sets) and
/// return it as the API server holds it, status included.
pub async fn apply_child(
    api: &Api<AppRegistration>,
    child: &AppRegistration,
) -> Result<AppRegistration, Error> {
    let name = child.name_any();
    // A child is written only over an AppRegistration that is already this parent's child: a user's
    // own AppRegistration of the same name stays untouched.
    if let Some(existing) = api.get_opt(&name).await? {
        let parent_uids: Vec<String> = child
            .owner_references()
            .iter()
            .map(|o| o.uid.clone())
            .collect();
        let existing_uids: Vec<String> = existing
            .owner_references()
            .iter()
            .map(|o| o.uid.clone())
            .collect();
        let managed =
            existing.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY);
        if let Some(uid) = parent_uids.first()
            && let Some(why) = crate::credentials::foreign_owner(managed, &existing_uids, uid)
        {
            return Err(crate::credentials::SecretConflict {
                kind: "AppRegistration",
                name,
                why,
            }
            .into());
        }
    }
    let mut body = serde_json::to_value(child)
        .map_err(|e| Error::Invalid(format!("rendering AppRegistration {name}: {e}")))?;
    if let Some(obj) = body.as_object_mut() {
        obj.remove("status");
    }
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?)
}

/// Server-side apply a ConfigMap holding exactly `data` (keys the operator applied before and
/// omits now are removed by the API server's field ownership).
pub async fn apply_config_map(
    ctx: &Context,
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, String>,
    extra_labels: &BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    // Only ours is written: absent, or carrying the managed-by label (and, for one resource's
    // ConfigMap, its owner reference). Anything else is someone's data and stays untouched.
    if let Some(existing) = api.get_opt(name).await? {
        let managed =
            existing.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY);
        let existing_uids: Vec<String> = existing
            .owner_references()
            .iter()
            .map(|o| o.uid.clone())
            .collect();
        let why = match &owner {
            Some(owner) => crate::credentials::foreign_owner(managed, &existing_uids, &owner.uid),
            None if !managed => crate::credentials::foreign_owner(managed, &[], ""),
            None => (!existing_uids.is_empty())
                .then(|| "it is owned by a resource, not a registry".to_string()),
        };
        if let Some(why) = why {
            return Err(crate::credentials::SecretConflict {
                kind: "ConfigMap",
                name: name.to_string(),
                why,
            }
            .into());
        }
    }
    let mut labels = extra_labels.clone();
    labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
    let mut metadata = serde_json::json!({
        "name": name,
        "namespace": namespace,
        "labels": labels,
    });
    if let Some(owner) = owner {
        metadata["ownerReferences"] = serde_json::json!([owner]);
    }
    let mut body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
    });
    // An empty registry is applied without `data`: the keys this manager owned are removed all
    // the same, and no empty map is left owned in managedFields.
    if !data.is_empty() {
        body["data"] = serde_json::json!(data);
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Delete a child AppRegistration if it exists (its own finalizer removes the Entra application).
pub async fn delete_child(api: &Api<AppRegistration>, name: &str) -> Result<(), Error> {
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The parent's Ready as far as its children go: ready when every child is Ready for its current
/// generation; otherwise the first child that is not, with its reason, so `kubectl get` on the
/// parent tells what the child waits for.
pub fn children_readiness(children: &[&AppRegistration]) -> DesiredCondition {
    for child in children {
        let name = child.name_any();
        let status = child.status.as_ref();
        let current = status.and_then(|s| s.observed_generation) == child.metadata.generation;
        match status.and_then(|s| s.conditions.get(condition::READY)) {
            Some(c) if c.status == "True" && current => continue,
            Some(c) if c.status != "True" => {
                return DesiredCondition::failed(
                    condition::READY,
                    c.reason.clone(),
                    format!("AppRegistration {name}: {}", c.message),
                );
            }
            _ => {
                return DesiredCondition::failed(
                    condition::READY,
                    "Reconciling",
                    format!("AppRegistration {name} has not reported on its current spec yet"),
                );
            }
        }
    }
    DesiredCondition::ok(
        condition::READY,
        "Ready",
        "every child AppRegistration is Ready",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppRegistrationStatus;
    use crate::controllers::conditions::merge_conditions;

    fn child(name: &str, generation: i64, ready: Option<(&str, &str)>) -> AppRegistration {
        let mut app: AppRegistration = serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": name, "namespace": "ns", "generation": generation},
            "spec": {"displayName": name}
        }))
        .unwrap();
        if let Some((status, reason)) = ready {
            let desired = DesiredCondition::new(
                condition::READY,
                status == "True",
                reason,
                "waiting for api",
            );
            app.status = Some(AppRegistrationStatus {
                conditions: merge_conditions(
                    &Default::default(),
                    &[desired],
                    Some(1),
                    jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: Some(1),
                ..Default::default()
            });
        }
        app
    }

    #[test]
    fn ready_only_when_every_child_is_ready_for_its_generation() {
        let a = child("a", 1, Some(("True", "Ready")));
        let b = child("b", 1, Some(("False", "WaitingForReference")));
        let stale = child("c", 2, Some(("True", "Ready")));
        let fresh = child("d", 1, None);
        assert!(children_readiness(&[&a]).status);
        let not = children_readiness(&[&a, &b]);
        assert!(!not.status);
        assert_eq!(not.reason, "WaitingForReference");
        assert!(not.message.starts_with("AppRegistration b:"));
        assert_eq!(children_readiness(&[&stale]).reason, "Reconciling");
        assert_eq!(children_readiness(&[&fresh]).reason, "Reconciling");
    }

    #[test]
    fn a_parent_is_stalled_or_reconciling_as_its_child_is() {
        use crate::controllers::kstatus::kstatus_conditions;
        for (reason, expected) in [
            ("GraphForbidden", (false, true)),
            ("WaitingForReference", (true, false)),
        ] {
            let c = child("c", 1, Some(("False", reason)));
            let [reconciling, stalled] = kstatus_conditions(&children_readiness(&[&c]));
            assert_eq!((reconciling.status, stalled.status), expected, "{reason}");
        }
        // A child that has not reported yet is work in flight.
        let fresh = child("d", 1, None);
        let [reconciling, _] = kstatus_conditions(&children_readiness(&[&fresh]));
        assert!(reconciling.status);
    }
}
