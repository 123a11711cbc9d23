//! BankClient: renders a child AppRegistration (single-tenant, the API's role, a client secret) and
//! the bank-clients registry (`clientId → bankId`). Pure rendering here; wiring in the runtime.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::appregistration::{
    AppRegistrationSpec, CredentialsSpec, PasswordCredentialSpec, RequiredResourceAccess,
    ServicePrincipalSpec, SignInAudience,
};
use crate::api::{AppRegistration, BankClient, HANDOVER_CONFIRMED_ANNOTATION};
use crate::labels::{LABEL_MANAGED_BY, MANAGED_BY};

/// Label naming the bank a child belongs to.
pub const BANK_ID_LABEL: &str = "entra.bookme.io/bank-id";
/// Name of the registry ConfigMap in each namespace with BankClients.
pub const BANK_CLIENTS_REGISTRY: &str = "bank-clients";

/// Name of a BankClient's child AppRegistration.
pub fn child_name(bank_client: &BankClient) -> String {
    format!("bankclient-{}", bank_client.name_any())
}

/// The display name of the bank's app registration.
pub fn display_name(bank_client: &BankClient) -> String {
    bank_client
        .spec
        .display_name
        .clone()
        .unwrap_or_else(|| format!("BookMe System Integration ({})", bank_client.spec.bank_id))
}

/// The child AppRegistration: single-tenant, the configured application permission on the API with
/// admin consent (so the bank's token carries `roles: [System]`), one client secret. The
/// BankClient's `entra.bookme.io/handover-confirmed` annotation is copied onto the child, whose
/// credential state machine acts on it (the same annotation works on any AppRegistration); the
/// operator's field manager owns it there, so removing it from the BankClient removes it from the
/// child at the next apply.
pub fn render_child_app_registration(bank_client: &BankClient) -> AppRegistration {
    let spec = &bank_client.spec;
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
    labels.insert(BANK_ID_LABEL.to_string(), spec.bank_id.clone());
    let mut child = AppRegistration::new(
        &child_name(bank_client),
        AppRegistrationSpec {
            display_name: display_name(bank_client),
            description: Some(format!(
                "System integration of bank {} with the BookMe API (managed by entra-operator from BankClient {}).",
                spec.bank_id,
                bank_client.name_any()
            )),
            sign_in_audience: SignInAudience::AzureADMyOrg,
            identifier_uris: Vec::new(),
            api: None,
            app_roles: Vec::new(),
            web: None,
            spa: None,
            public_client: None,
            required_resource_access: vec![RequiredResourceAccess {
                well_known_api: None,
                app_id: None,
                app_ref: Some(spec.api.app_ref.clone()),
                delegated: Vec::new(),
                application: vec![spec.api.role.to_string()],
            }],
            grant_admin_consent: true,
            service_principal: ServicePrincipalSpec {
                visible_to_users: false,
                ..ServicePrincipalSpec::default()
            },
            owners: Vec::new(),
            owner_user_principal_names: Vec::new(),
            owners_management: Default::default(),
            credentials: CredentialsSpec {
                passwords: vec![PasswordCredentialSpec {
                    secret_name: spec.secret.name.clone(),
                    lifetime: spec.secret.lifetime.clone(),
                    renew_before: spec.secret.renew_before.clone(),
                    overlap: spec.secret.overlap.clone(),
                }],
                ..CredentialsSpec::default()
            },
            deletion_policy: Default::default(),
            adopt: None,
        },
    );
    child.metadata = ObjectMeta {
        name: Some(child_name(bank_client)),
        namespace: bank_client.namespace(),
        labels: Some(labels),
        annotations: bank_client
            .annotations()
            .get(HANDOVER_CONFIRMED_ANNOTATION)
            .map(|v| BTreeMap::from([(HANDOVER_CONFIRMED_ANNOTATION.to_string(), v.clone())])),
        owner_references: bank_client.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    };
    child
}

/// One BankClient's claim in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankClaim {
    pub name: String,
    pub bank_id: String,
    /// RFC 3339 creation time: the earliest claim of a bankId wins.
    pub created: String,
    pub client_id: Option<String>,
}

/// The outcome of resolving all claims in a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BankRegistry {
    /// `clientId → bankId`, the ConfigMap's data.
    pub entries: BTreeMap<String, String>,
    /// BankClient name → the BankClient that holds its bankId first.
    pub conflicts: BTreeMap<String, String>,
}

/// Resolve claims: the earliest BankClient (by creation time, then name) keeps a bankId; later ones
/// are conflicts naming the holder. Claims without a clientId yet still hold their bankId.
pub fn resolve_bank_registry(claims: &[BankClaim]) -> BankRegistry {
    let mut sorted: Vec<&BankClaim> = claims.iter().collect();
    sorted.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    let mut holders: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = BankRegistry::default();
    for claim in sorted {
        match holders.get(claim.bank_id.as_str()) {
            Some(holder) => {
                out.conflicts.insert(claim.name.clone(), holder.to_string());
            }
            None => {
                holders.insert(&claim.bank_id, &claim.name);
                if let Some(client_id) = &claim.client_id {
                    out.entries.insert(client_id.clone(), claim.bank_id.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Overlap;

    fn bank_client(name: &str, bank_id: &str) -> BankClient {
        let mut bc: BankClient = serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
            "metadata": {"name": name, "namespace": "banks", "uid": "u-1"},
            "spec": {"bankId": bank_id, "api": {"appRef": {"name": "api-system-integration"}},
                     "secret": {"name": format!("{name}-credentials")}}
        }))
        .unwrap();
        bc.metadata.uid = Some("u-1".into());
        bc
    }

    #[test]
    fn child_is_single_tenant_with_the_role_and_a_secret() {
        let bc = bank_client("nordbank", "nordbank");
        let child = render_child_app_registration(&bc);
        assert_eq!(child.metadata.name.as_deref(), Some("bankclient-nordbank"));
        assert_eq!(child.metadata.namespace.as_deref(), Some("banks"));
        let owner = &child.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "BankClient");
        assert_eq!(owner.controller, Some(true));
        let spec = &child.spec;
        assert_eq!(spec.sign_in_audience, SignInAudience::AzureADMyOrg);
        assert!(spec.grant_admin_consent);
        assert_eq!(spec.display_name, "BookMe System Integration (nordbank)");
        let rra = &spec.required_resource_access[0];
        assert_eq!(rra.app_ref.as_ref().unwrap().name, "api-system-integration");
        assert_eq!(rra.application, vec!["System".to_string()]);
        let pw = &spec.credentials.passwords[0];
        assert_eq!(pw.secret_name, "nordbank-credentials");
        assert_eq!(pw.overlap, Overlap::UntilExpiry);
        assert_eq!(pw.lifetime.as_secs(), 730 * 86_400);
        assert!(!spec.service_principal.visible_to_users);
        assert_eq!(child.metadata.annotations, None);
    }

    #[test]
    fn the_handover_confirmation_is_copied_to_the_child_and_nothing_else() {
        let mut bc = bank_client("nordbank", "nordbank");
        bc.metadata.annotations = Some(BTreeMap::from([
            (
                HANDOVER_CONFIRMED_ANNOTATION.to_string(),
                "k-new".to_string(),
            ),
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            ),
        ]));
        let child = render_child_app_registration(&bc);
        assert_eq!(
            child.metadata.annotations,
            Some(BTreeMap::from([(
                HANDOVER_CONFIRMED_ANNOTATION.to_string(),
                "k-new".to_string()
            )]))
        );
    }

    #[test]
    fn earliest_claim_keeps_the_bank_id() {
        let claims = vec![
            BankClaim {
                name: "late".into(),
                bank_id: "nordbank".into(),
                created: "2026-02-01T00:00:00Z".into(),
                client_id: Some("c-late".into()),
            },
            BankClaim {
                name: "early".into(),
                bank_id: "nordbank".into(),
                created: "2026-01-01T00:00:00Z".into(),
                client_id: Some("c-early".into()),
            },
            BankClaim {
                name: "other".into(),
                bank_id: "fjord".into(),
                created: "2026-03-01T00:00:00Z".into(),
                client_id: None,
            },
        ];
        let reg = resolve_bank_registry(&claims);
        assert_eq!(reg.entries.len(), 1);
        assert_eq!(reg.entries["c-early"], "nordbank");
        assert_eq!(reg.conflicts["late"], "early");
        assert!(!reg.conflicts.contains_key("other"));
    }
}
