//! Resolving `appRef`s through the referenced AppRegistrations' status.
//!
//! A reference resolves once the referenced resource has an appId in its status; until then it is
//! reported as `WaitingForReference` (a condition, not an error loop).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::api::appregistration::AppRegistrationStatus;
use crate::api::{AppRegistrationSpec, Text};

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
    references(spec).map(|r| r.name.to_string()).collect()
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

/// Who refers to whom among the AppRegistrations seen so far, kept from the watch, so that a
/// change of one wakes the ones that refer to it without a scan of the namespace per change (at
/// 10,000 AppRegistrations that scan was most of the operator's CPU). It holds an entry per
/// AppRegistration that refers to another, so names are shared texts ([`Text::interned`]: the
/// namespace and a much-referenced API's name are kept once) and each referrer's targets are a
/// sorted slice, not a tree.
#[derive(Debug, Default)]
pub struct Referrers {
    /// (namespace, referrer) → the names it refers to, sorted.
    targets: HashMap<(Text, Text), Box<[Text]>>,
    /// (namespace, target) → the names that refer to it.
    referrers: HashMap<(Text, Text), BTreeSet<Text>>,
}

impl Referrers {
    /// Records what `name` refers to now (nothing once it is being deleted) and returns the names
    /// that refer to it.
    pub fn observe(
        &mut self,
        namespace: &str,
        name: &str,
        spec: &AppRegistrationSpec,
        deleting: bool,
    ) -> Vec<String> {
        let namespace = Text::interned(namespace);
        let key = (namespace.clone(), Text::interned(name));
        let now: BTreeSet<Text> = if deleting {
            BTreeSet::new()
        } else {
            references(spec).map(|r| Text::interned(&r.name)).collect()
        };
        let before: BTreeSet<Text> = self
            .targets
            .remove(&key)
            .map(|targets| targets.into_vec().into_iter().collect())
            .unwrap_or_default();
        for gone in before.difference(&now) {
            let target = (namespace.clone(), gone.clone());
            if let Some(set) = self.referrers.get_mut(&target) {
                set.remove(name);
                if set.is_empty() {
                    self.referrers.remove(&target);
                }
            }
        }
        for added in now.difference(&before) {
            self.referrers
                .entry((namespace.clone(), added.clone()))
                .or_default()
                .insert(key.1.clone());
        }
        if !now.is_empty() {
            self.targets.insert(key.clone(), now.into_iter().collect());
        }
        self.referrers
            .get(&key)
            .map(|set| set.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default()
    }
}

/// Resolves every `appRef` of `spec` through `lookup`.
pub fn resolve_references(
    spec: &AppRegistrationSpec,
    lookup: &impl ReferenceLookup,
) -> ResolvedReferences {
    let mut out = ResolvedReferences::default();
    for name in referenced_names(spec) {
        let resolved = lookup.app_registration_status(&name).and_then(|status| {
            let app_id = status
                .app_id
                .as_deref()
                .map(str::to_string)
                .filter(|id| !id.is_empty())?;
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

    #[test]
    fn referrers_follow_what_each_app_refers_to_now() {
        let plain: AppRegistrationSpec =
            serde_json::from_value(serde_json::json!({"displayName": "x"})).unwrap();
        let mut r = Referrers::default();
        // An API seen before anyone refers to it: nobody to wake.
        assert!(r.observe("ns", "api", &plain, false).is_empty());
        // The client refers to `api` (resource) and to `ui` (pre-authorized).
        r.observe("ns", "client", &spec_referring_to("ui", "api"), false);
        assert_eq!(r.observe("ns", "api", &plain, false), ["client"]);
        assert_eq!(r.observe("ns", "ui", &plain, false), ["client"]);
        // Same names in another namespace are other apps.
        assert!(r.observe("other", "api", &plain, false).is_empty());
        // The client now refers to `api2` instead of `api`.
        r.observe("ns", "client", &spec_referring_to("ui", "api2"), false);
        assert!(r.observe("ns", "api", &plain, false).is_empty());
        assert_eq!(r.observe("ns", "api2", &plain, false), ["client"]);
        // A second client; then the first is being deleted.
        r.observe("ns", "client-b", &spec_referring_to("ui", "api2"), false);
        r.observe("ns", "client", &spec_referring_to("ui", "api2"), true);
        assert_eq!(r.observe("ns", "api2", &plain, false), ["client-b"]);
        assert_eq!(r.observe("ns", "ui", &plain, false), ["client-b"]);
    }
}
