//! Resolving `appRef`s through the referenced AppRegistrations' status.
//!
//! A reference resolves once the referenced resource has an appId in its status; until then it is
//! reported as `WaitingForReference` (a condition, not an error loop).

use std::collections::{BTreeMap, BTreeSet};

use crate::api::AppRegistrationSpec;
use crate::api::appregistration::AppRegistrationStatus;

/// Where the status of another AppRegistration in the same namespace is looked up.
pub trait ReferenceLookup {
    /// The status of the AppRegistration `name`, if it exists.
    fn app_registration_status(&self, name: &str) -> Option<&AppRegistrationStatus>;
}

impl ReferenceLookup for BTreeMap<String, AppRegistrationStatus> {
    fn app_registration_status(&self, name: &str) -> Option<&AppRegistrationStatus> {
        self.get(name)
    }
}

/// A referenced AppRegistration that has an application in Entra.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedApp {
    pub app_id: String,
    /// Its exposed scopes: value → ID.
    pub scope_ids: BTreeMap<String, String>,
    /// Its app roles: value → ID.
    pub role_ids: BTreeMap<String, String>,
    pub service_principal_id: Option<String>,
}

/// Every `appRef` of a spec, resolved or still waiting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedReferences {
    /// Resolved references by name.
    pub apps: BTreeMap<String, ResolvedApp>,
    /// Names of references whose resource is missing or has no appId yet.
    pub waiting: BTreeSet<String>,
}

impl ResolvedReferences {
    /// The resolved reference `name`, if it is resolved.
    pub fn app(&self, name: &str) -> Option<&ResolvedApp> {
        self.apps.get(name)
    }
}

/// Names of every AppRegistration the spec refers to (pre-authorized and known clients, resource
/// APIs).
pub fn referenced_names(spec: &AppRegistrationSpec) -> BTreeSet<String> {
    references(spec).map(|r| r.name.clone()).collect()
}

/// Whether the spec refers to the AppRegistration `name`, without allocating: asked of every
/// AppRegistration in the namespace each time one changes.
pub fn refers_to(spec: &AppRegistrationSpec, name: &str) -> bool {
    references(spec).any(|r| r.name == name)
}

fn references(spec: &AppRegistrationSpec) -> impl Iterator<Item = &crate::api::LocalRef> {
    let pre_authorized = spec
        .api
        .iter()
        .flat_map(|api| &api.pre_authorized_applications)
        .filter_map(|p| p.app_ref.as_ref());
    let known_clients = spec
        .api
        .iter()
        .flat_map(|api| api.known_client_applications.iter().flatten())
        .filter_map(|k| k.app_ref.as_ref());
    let resources = spec
        .required_resource_access
        .iter()
        .filter_map(|r| r.app_ref.as_ref());
    pre_authorized.chain(known_clients).chain(resources)
}

/// Resolves every `appRef` of `spec` through `lookup`.
pub fn resolve_references(
    spec: &AppRegistrationSpec,
    lookup: &impl ReferenceLookup,
) -> ResolvedReferences {
    let mut out = ResolvedReferences::default();
    for name in referenced_names(spec) {
        let resolved = lookup.app_registration_status(&name).and_then(|status| {
            let app_id = status.app_id.clone().filter(|id| !id.is_empty())?;
            Some(ResolvedApp {
                app_id,
                scope_ids: status.scope_ids.clone(),
                role_ids: status.role_ids.clone(),
                service_principal_id: status.service_principal_id.clone(),
            })
        });
        match resolved {
            Some(app) => {
                out.apps.insert(name, app);
            }
            None => {
                out.waiting.insert(name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LocalRef;
    use crate::api::appregistration::{
        ApiSpec, KnownClientApplication, PreAuthorizedApplication, RequiredResourceAccess,
    };

    fn spec_referring_to(client: &str, resource: &str) -> AppRegistrationSpec {
        let mut spec: AppRegistrationSpec =
            serde_json::from_value(serde_json::json!({"displayName": "x"})).unwrap();
        spec.api = Some(ApiSpec {
            pre_authorized_applications: vec![PreAuthorizedApplication {
                app_ref: Some(LocalRef {
                    name: client.into(),
                }),
                app_id: None,
                scopes: vec![],
            }],
            known_client_applications: Some(vec![KnownClientApplication {
                app_ref: Some(LocalRef {
                    name: "desktop".into(),
                }),
                app_id: None,
            }]),
            ..ApiSpec::default()
        });
        spec.required_resource_access = vec![RequiredResourceAccess {
            well_known_api: None,
            app_id: None,
            app_ref: Some(LocalRef {
                name: resource.into(),
            }),
            delegated: vec!["Access".into()],
            application: vec![],
        }];
        spec
    }

    #[test]
    fn resolves_references_with_an_app_id_and_waits_for_the_others() {
        let spec = spec_referring_to("spa", "webapi");
        let mut statuses = BTreeMap::new();
        statuses.insert(
            "webapi".to_string(),
            AppRegistrationStatus {
                app_id: Some("11111111-1111-1111-1111-111111111111".into()),
                scope_ids: [("Access".to_string(), "s-1".to_string())].into(),
                ..Default::default()
            },
        );
        // Exists but not created in Entra yet.
        statuses.insert("spa".to_string(), AppRegistrationStatus::default());

        let resolved = resolve_references(&spec, &statuses);
        assert_eq!(
            resolved.app("webapi").unwrap().scope_ids["Access"],
            "s-1".to_string()
        );
        assert_eq!(
            resolved.waiting,
            BTreeSet::from(["desktop".to_string(), "spa".to_string()])
        );

        let none: BTreeMap<String, AppRegistrationStatus> = BTreeMap::new();
        let resolved = resolve_references(&spec, &none);
        assert_eq!(resolved.waiting.len(), 3);
    }
}
