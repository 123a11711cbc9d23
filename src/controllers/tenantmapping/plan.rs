//! TenantMapping: the tenant-mappings registry (`tenantId → bankIds, default`) with BankId conflicts,
//! and the meaning of a consent probe's answer. Pure logic here; wiring in the runtime.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::TenantMapping;
use crate::api::tenantmapping::{AppConsentStatus, TenantConsentState, TenantMappingStatus};

/// Name of the registry ConfigMap in each namespace with TenantMappings.
pub const TENANT_MAPPINGS_REGISTRY: &str = "tenant-mappings";

/// One TenantMapping's claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantClaim {
    pub name: String,
    pub tenant_id: String,
    pub bank_ids: Vec<String>,
    pub default_bank_id: Option<String>,
    /// RFC 3339 creation time: the earliest claim of a BankId wins.
    pub created: String,
}

/// A registry entry as the API reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantEntry {
    pub bank_ids: Vec<String>,
    pub default_bank_id: String,
}

/// The registry and the conflicts found while building it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantRegistry {
    /// `tenantId → entry`; each entry is stored in the ConfigMap as JSON under the tenant ID.
    pub entries: BTreeMap<String, TenantEntry>,
    /// TenantMapping name → human-readable conflict (which BankId, held by which mapping).
    pub conflicts: BTreeMap<String, String>,
}

/// Build the registry. A BankId mapped by two TenantMappings stays with the earliest (by creation
/// time, then name); the later mapping is a conflict and is left out of the registry entirely, so
/// the API never routes a tenant to a bank that is contested. Two mappings for the same tenant are
/// a conflict too.
pub fn resolve_tenant_registry(claims: &[TenantClaim]) -> TenantRegistry {
    let mut sorted: Vec<&TenantClaim> = claims.iter().collect();
    sorted.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    let mut bank_holder: BTreeMap<&str, &str> = BTreeMap::new();
    let mut tenant_holder: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = TenantRegistry::default();
    for claim in sorted {
        let tenant = claim.tenant_id.to_ascii_lowercase();
        if let Some(holder) = tenant_holder.get(&tenant) {
            out.conflicts.insert(
                claim.name.clone(),
                format!(
                    "tenant {} is already mapped by TenantMapping {holder}",
                    claim.tenant_id
                ),
            );
            continue;
        }
        let contested: Vec<String> = claim
            .bank_ids
            .iter()
            .filter_map(|b| {
                bank_holder
                    .get(b.as_str())
                    .map(|h| format!("BankId {b} is already mapped by TenantMapping {h}"))
            })
            .collect();
        if !contested.is_empty() {
            out.conflicts
                .insert(claim.name.clone(), contested.join("; "));
            continue;
        }
        for b in &claim.bank_ids {
            bank_holder.insert(b, &claim.name);
        }
        tenant_holder.insert(tenant.clone(), &claim.name);
        out.entries.insert(
            tenant,
            TenantEntry {
                bank_ids: claim.bank_ids.clone(),
                default_bank_id: claim
                    .default_bank_id
                    .clone()
                    .unwrap_or_else(|| claim.bank_ids[0].clone()),
            },
        );
    }
    out
}

/// What a client-credentials token request in the customer tenant answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A token: the app has a service principal there. Its `roles` claim lists granted app roles.
    Token { roles: Vec<String> },
    /// An Entra error with its AADSTS code and description.
    EntraError { code: u32, description: String },
    /// The app has no service principal in the tenant, seen through another app's credential
    /// (a token request for the app as resource answered AADSTS500011).
    ResourceNotInTenant { description: String },
    /// No credential to probe with, or the probe could not be made (the reason says which).
    NoCredential { why: String },
}

/// Interpret a probe: AADSTS700016 means the app does not exist in the tenant (not consented); a
/// token means consented. Anything else leaves the state Unknown with Entra's message.
pub fn consent_from_probe(
    name: &str,
    app_id: Option<&str>,
    outcome: &ProbeOutcome,
    admin_consent_url: Option<String>,
) -> AppConsentStatus {
    let (state, roles, message, url) = match outcome {
        ProbeOutcome::Token { roles } => (TenantConsentState::Consented, roles.clone(), None, None),
        ProbeOutcome::EntraError {
            code: 700016,
            description,
        } => (
            TenantConsentState::NotConsented,
            Vec::new(),
            Some(description.clone()),
            admin_consent_url,
        ),
        ProbeOutcome::ResourceNotInTenant { description } => (
            TenantConsentState::NotConsented,
            Vec::new(),
            Some(description.clone()),
            admin_consent_url,
        ),
        ProbeOutcome::EntraError { code, description } => (
            TenantConsentState::Unknown,
            Vec::new(),
            Some(format!("AADSTS{code}: {description}")),
            admin_consent_url,
        ),
        ProbeOutcome::NoCredential { why } => (
            TenantConsentState::Unknown,
            Vec::new(),
            Some(why.clone()),
            admin_consent_url,
        ),
    };
    let mut roles = roles;
    roles.sort();
    AppConsentStatus {
        name: name.to_string(),
        app_id: app_id.map(str::to_string),
        state,
        admin_consent_url: url,
        roles,
        message,
    }
}

/// Whether consent must be probed now rather than kept from the last check: probes are token
/// requests in someone else's tenant, so they run on `consent.interval`, on a new value of the
/// recheck annotation, on a spec change, when the listed apps or their appIds changed, and while
/// any app's state is still Unknown (waiting for an appId or a credential).
pub fn consent_check_due(
    previous: &TenantMappingStatus,
    generation: Option<i64>,
    recheck_token: Option<&str>,
    apps: &[(String, Option<String>)],
    interval: std::time::Duration,
    now: jiff::Timestamp,
) -> bool {
    if previous.observed_generation != generation
        || previous.recheck_token.as_deref() != recheck_token
    {
        return true;
    }
    let checked: Vec<(String, Option<String>)> = previous
        .apps
        .iter()
        .map(|a| (a.name.clone(), a.app_id.clone()))
        .collect();
    if checked != apps
        || previous
            .apps
            .iter()
            .any(|a| a.state == TenantConsentState::Unknown)
    {
        return true;
    }
    match previous
        .last_checked_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    {
        Some(last) => now.duration_since(last).unsigned_abs() >= interval || last > now,
        None => true,
    }
}

/// The admin-consent URL for an app in a customer tenant: the v1 form, which consents to every
/// permission the app declares and needs no redirect URI. (The v2 form requires a `redirect_uri`
/// registered on the app, which the operator cannot assume.)
pub fn tenant_admin_consent_url(authority_host: &str, tenant: &str, app_id: &str) -> String {
    format!(
        "{}/{tenant}/adminconsent?client_id={app_id}",
        authority_host.trim_end_matches('/')
    )
}

/// The tenant-mappings ConfigMap's data: one JSON entry per tenant.
pub fn registry_data(registry: &TenantRegistry) -> BTreeMap<String, String> {
    registry
        .entries
        .iter()
        .map(|(tenant, entry)| {
            let json = serde_json::to_string(entry).expect("a registry entry serializes");
            (tenant.clone(), json)
        })
        .collect()
}

/// The names of the AppRegistrations a TenantMapping reads (listed apps and the probe app), for
/// the watch that wakes it when one of them changes.
pub fn referenced_apps(mapping: &TenantMapping) -> Vec<String> {
    let mut names: Vec<String> = mapping
        .spec
        .consent
        .iter()
        .flat_map(|c| {
            c.apps
                .iter()
                .map(|a| a.app_ref.name.to_string())
                .chain(c.probe.iter().map(|p| p.app_ref.name.to_string()))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, tenant: &str, banks: &[&str], created: &str) -> TenantClaim {
        TenantClaim {
            name: name.into(),
            tenant_id: tenant.into(),
            bank_ids: banks.iter().map(|b| b.to_string()).collect(),
            default_bank_id: None,
            created: created.into(),
        }
    }

    #[test]
    fn one_tenant_maps_to_several_banks_with_a_default() {
        let mut c = claim(
            "nordic",
            "T1",
            &["nordbank", "nordbank-markets"],
            "2026-01-01T00:00:00Z",
        );
        c.default_bank_id = Some("nordbank-markets".into());
        let reg = resolve_tenant_registry(&[c]);
        let e = &reg.entries["t1"];
        assert_eq!(e.bank_ids, ["nordbank", "nordbank-markets"]);
        assert_eq!(e.default_bank_id, "nordbank-markets");
        assert!(reg.conflicts.is_empty());
    }

    #[test]
    fn bank_mapped_by_two_tenants_is_a_conflict_for_the_later() {
        let reg = resolve_tenant_registry(&[
            claim("second", "T2", &["fjord"], "2026-02-01T00:00:00Z"),
            claim("first", "T1", &["fjord", "other"], "2026-01-01T00:00:00Z"),
        ]);
        assert_eq!(reg.entries.len(), 1);
        assert_eq!(reg.entries["t1"].default_bank_id, "fjord");
        assert_eq!(
            reg.conflicts["second"],
            "BankId fjord is already mapped by TenantMapping first"
        );
    }

    #[test]
    fn probe_answers_map_to_consent_states() {
        let url = Some("https://login/adminconsent".to_string());
        let s = consent_from_probe(
            "api",
            Some("a"),
            &ProbeOutcome::EntraError {
                code: 700016,
                description: "AADSTS700016: Application not found in the directory".into(),
            },
            url.clone(),
        );
        assert_eq!(s.state, TenantConsentState::NotConsented);
        assert_eq!(s.admin_consent_url, url);
        let s = consent_from_probe(
            "api",
            Some("a"),
            &ProbeOutcome::Token {
                roles: vec!["b".into(), "a".into()],
            },
            url.clone(),
        );
        assert_eq!(s.state, TenantConsentState::Consented);
        assert_eq!(s.roles, ["a", "b"]);
        assert_eq!(s.admin_consent_url, None);
        let s = consent_from_probe(
            "api",
            None,
            &ProbeOutcome::NoCredential {
                why: "management-api has no client secret".into(),
            },
            None,
        );
        assert_eq!(s.state, TenantConsentState::Unknown);
        assert_eq!(
            s.message.as_deref(),
            Some("management-api has no client secret")
        );
    }

    #[test]
    fn consent_is_rechecked_on_interval_annotation_or_changed_apps() {
        let now: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let apps = vec![("api".to_string(), Some("a".to_string()))];
        let previous = TenantMappingStatus {
            observed_generation: Some(1),
            recheck_token: Some("1".into()),
            last_checked_at: Some("2026-01-01T00:30:00Z".into()),
            apps: vec![AppConsentStatus {
                name: "api".into(),
                app_id: Some("a".into()),
                state: TenantConsentState::NotConsented,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(!consent_check_due(
            &previous,
            Some(1),
            Some("1"),
            &apps,
            hour,
            now
        ));
        assert!(consent_check_due(
            &previous,
            Some(1),
            Some("2"),
            &apps,
            hour,
            now
        ));
        assert!(consent_check_due(
            &previous,
            Some(2),
            Some("1"),
            &apps,
            hour,
            now
        ));
        let later: jiff::Timestamp = "2026-01-01T01:30:00Z".parse().unwrap();
        assert!(consent_check_due(
            &previous,
            Some(1),
            Some("1"),
            &apps,
            hour,
            later
        ));
        let moved = vec![("api".to_string(), Some("b".to_string()))];
        assert!(consent_check_due(
            &previous,
            Some(1),
            Some("1"),
            &moved,
            hour,
            now
        ));
        let mut unknown = previous.clone();
        unknown.apps[0].state = TenantConsentState::Unknown;
        assert!(consent_check_due(
            &unknown,
            Some(1),
            Some("1"),
            &apps,
            hour,
            now
        ));
    }
}
