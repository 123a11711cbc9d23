//! The TenantMapping controller's report stage, pure: the consent summary and the Ready and
//! ConsentGranted conditions from the checked tenant, the probes and the registry's verdict.

use kube::ResourceExt;

use crate::api::tenantmapping::{AppConsentStatus, TenantConsentState};
use crate::api::{TenantMapping, TenantMappingStatus, condition};
use crate::controllers::conditions::DesiredCondition;

use super::plan::TenantRegistry;

/// `consented/listed`, as `kubectl get` shows it.
pub fn consent_summary(status: &TenantMappingStatus, listed: usize) -> String {
    let consented = status
        .apps
        .iter()
        .filter(|a| a.state == TenantConsentState::Consented)
        .count();
    format!("{consented}/{listed}")
}

/// Ready and ConsentGranted: Ready says the tenant can use the platform — it exists, its BankIds
/// are in the registry, and every listed app is consented there.
pub fn conditions(
    obj: &TenantMapping,
    status: &TenantMappingStatus,
    tenant_missing: bool,
    registry: &TenantRegistry,
) -> (DesiredCondition, DesiredCondition) {
    let not_consented: Vec<&AppConsentStatus> = status
        .apps
        .iter()
        .filter(|a| a.state == TenantConsentState::NotConsented)
        .collect();
    let unknown: Vec<&AppConsentStatus> = status
        .apps
        .iter()
        .filter(|a| a.state == TenantConsentState::Unknown)
        .collect();
    let consent = if tenant_missing {
        DesiredCondition::failed(
            condition::CONSENT_GRANTED,
            "TenantNotFound",
            "the tenant was not found, so consent was not checked",
        )
    } else if let Some(first) = not_consented.first() {
        DesiredCondition::failed(
            condition::CONSENT_GRANTED,
            "NotConsented",
            format!(
                "not consented in the tenant: {}; the tenant's administrator consents at {}",
                not_consented
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                first.admin_consent_url.as_deref().unwrap_or("(unknown)")
            ),
        )
    } else if !unknown.is_empty() {
        DesiredCondition::failed(
            condition::CONSENT_GRANTED,
            "ConsentUnknown",
            unknown
                .iter()
                .map(|a| {
                    format!(
                        "{}: {}",
                        a.name,
                        a.message.as_deref().unwrap_or("not checked")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else if status.apps.is_empty() {
        DesiredCondition::ok(
            condition::CONSENT_GRANTED,
            "NotRequired",
            "no apps are listed under consent.apps",
        )
    } else {
        DesiredCondition::ok(
            condition::CONSENT_GRANTED,
            "Consented",
            "every listed app is consented in the tenant",
        )
    };
    let ready = if tenant_missing {
        DesiredCondition::failed(
            condition::READY,
            "TenantNotFound",
            format!(
                "Entra has no tenant {} (findTenantInformationByTenantId answered not found)",
                obj.spec.tenant_id
            ),
        )
    } else if let Some(conflict) = registry.conflicts.get(&obj.name_any()) {
        DesiredCondition::failed(
            condition::READY,
            "Conflict",
            format!("{conflict}; this mapping is not in the tenant-mappings registry"),
        )
    } else if !consent.status {
        DesiredCondition::failed(
            condition::READY,
            consent.reason.clone(),
            consent.message.clone(),
        )
    } else {
        DesiredCondition::ok(
            condition::READY,
            "Ready",
            format!(
                "tenant {} maps to {} in the tenant-mappings registry",
                obj.spec.tenant_id,
                obj.spec
                    .bank_ids
                    .iter()
                    .map(|b| b.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    (ready, consent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> TenantMapping {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "TenantMapping",
            "metadata": {"name": "nordbank", "namespace": "banks"},
            "spec": {"tenantId": "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b", "bankIds": ["nordbank"]}
        }))
        .unwrap()
    }

    fn app(name: &str, state: TenantConsentState) -> AppConsentStatus {
        AppConsentStatus {
            name: name.into(),
            app_id: None,
            state,
            admin_consent_url: Some(format!("https://login/{name}")),
            roles: vec![],
            message: None,
        }
    }

    #[test]
    fn ready_needs_the_tenant_the_registry_and_consent() {
        let obj = mapping();
        let clean = TenantRegistry::default();
        let mut conflicted = TenantRegistry::default();
        conflicted.conflicts.insert(
            "nordbank".into(),
            "BankId nordbank is held by oldbank".into(),
        );
        use TenantConsentState::*;
        // (case, apps, tenant missing, registry) -> (Ready reason, ConsentGranted reason)
        let cases = [
            (
                "nothing listed",
                vec![],
                false,
                &clean,
                "Ready",
                "NotRequired",
            ),
            (
                "all consented",
                vec![app("a", Consented)],
                false,
                &clean,
                "Ready",
                "Consented",
            ),
            (
                "one not consented",
                vec![app("a", Consented), app("b", NotConsented)],
                false,
                &clean,
                "NotConsented",
                "NotConsented",
            ),
            (
                "unknown",
                vec![app("a", Unknown)],
                false,
                &clean,
                "ConsentUnknown",
                "ConsentUnknown",
            ),
            (
                "tenant missing",
                vec![],
                true,
                &clean,
                "TenantNotFound",
                "TenantNotFound",
            ),
            (
                "conflict",
                vec![app("a", Consented)],
                false,
                &conflicted,
                "Conflict",
                "Consented",
            ),
        ];
        for (case, apps, missing, registry, ready_reason, consent_reason) in cases {
            let status = TenantMappingStatus {
                apps,
                ..Default::default()
            };
            let (ready, consent) = conditions(&obj, &status, missing, registry);
            assert_eq!(ready.reason, ready_reason, "{case}");
            assert_eq!(ready.status, ready_reason == "Ready", "{case}");
            assert_eq!(consent.reason, consent_reason, "{case}");
        }
    }

    #[test]
    fn consent_is_waiting_on_others_and_a_conflict_or_missing_tenant_is_stalled() {
        use crate::controllers::kstatus::kstatus_conditions;
        use TenantConsentState::*;
        let obj = mapping();
        let clean = TenantRegistry::default();
        let mut conflicted = TenantRegistry::default();
        conflicted.conflicts.insert(
            "nordbank".into(),
            "BankId nordbank is held by oldbank".into(),
        );
        // (case, apps, tenant missing, registry) -> (Ready, Reconciling, Stalled)
        let cases = [
            (
                "consented",
                vec![app("a", Consented)],
                false,
                &clean,
                (true, false, false),
            ),
            (
                "awaiting consent",
                vec![app("a", NotConsented)],
                false,
                &clean,
                (false, false, false),
            ),
            (
                "probe pending",
                vec![app("a", Unknown)],
                false,
                &clean,
                (false, true, false),
            ),
            ("tenant missing", vec![], true, &clean, (false, false, true)),
            (
                "conflict",
                vec![app("a", Consented)],
                false,
                &conflicted,
                (false, false, true),
            ),
        ];
        for (case, apps, missing, registry, expected) in cases {
            let status = TenantMappingStatus {
                apps,
                ..Default::default()
            };
            let (ready, _) = conditions(&obj, &status, missing, registry);
            let [reconciling, stalled] = kstatus_conditions(&ready);
            assert_eq!(
                (ready.status, reconciling.status, stalled.status),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn not_consented_names_the_apps_and_the_consent_url() {
        let status = TenantMappingStatus {
            apps: vec![
                app("a", TenantConsentState::NotConsented),
                app("b", TenantConsentState::NotConsented),
            ],
            ..Default::default()
        };
        let (_, consent) = conditions(&mapping(), &status, false, &TenantRegistry::default());
        assert_eq!(
            consent.message,
            "not consented in the tenant: a, b; the tenant's administrator consents at https://login/a"
        );
        assert_eq!(consent_summary(&status, 3), "0/3");
    }
}
