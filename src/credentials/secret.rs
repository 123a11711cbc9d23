//! The Kubernetes Secret that receives a client secret: rendering it, and reading an existing one
//! back into what the rotation state machine needs to know (never the value itself).

use crate::graph::SecretString;
use crate::labels::{LABEL_MANAGED_BY, MANAGED_BY};
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Secret key read by the Azure SDKs' environment credential: the application (client) ID.
pub const KEY_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// Secret key holding the client secret value.
pub const KEY_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// Secret key holding the tenant ID.
pub const KEY_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Secret key holding the authority host (`https://login.microsoftonline.com` or a sovereign cloud).
pub const KEY_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// Secret key holding the OAuth 2.0 v2 token URL, for clients that are not Azure SDKs.
pub const KEY_TOKEN_ENDPOINT: &str = "tokenEndpoint";
/// Secret key holding the Entra key ID of the credential whose value is in the Secret.
pub const KEY_KEY_ID: &str = "keyId";
/// Secret key holding when the value expires (RFC 3339).
pub const KEY_EXPIRES_AT: &str = "expiresAt";

/// Label naming the AppRegistration whose credential the Secret holds.
pub const LABEL_APP_REGISTRATION: &str = "entra.bookme.io/app-registration";

/// How many leading characters of a value Entra reports as the credential's `hint`.
pub const HINT_LEN: usize = 3;

/// The first [`HINT_LEN`] characters of a secret value: what Entra publishes as the credential's
/// `hint`, and all the operator keeps of an observed Secret's value.
pub fn hint_of(value: &str) -> String {
    value.chars().take(HINT_LEN).collect()
}

/// Where the credential is used: what, besides the value, the Secret tells its consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretContext {
    /// Name of the AppRegistration (for the label).
    pub app_registration: String,
    /// Namespace of the AppRegistration and the Secret.
    pub namespace: String,
    /// Application (client) ID.
    pub client_id: String,
    /// Tenant the application lives in.
    pub tenant_id: String,
    /// Authority host, e.g. `https://login.microsoftonline.com` (the emulator's in tests).
    pub authority_host: String,
}

/// The credential to write: its Entra key ID, expiry and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretCredential<'a> {
    pub key_id: &'a str,
    pub expires_at: Timestamp,
    pub value: &'a SecretString,
}

/// `{authority}/{tenant}/oauth2/v2.0/token`, tolerating a trailing slash on the authority.
pub fn token_endpoint(authority_host: &str, tenant_id: &str) -> String {
    format!(
        "{}/{tenant_id}/oauth2/v2.0/token",
        authority_host.trim_end_matches('/')
    )
}

/// Labels on every credential Secret: the managed-by label lets the operator cache only its own
/// Secrets, the app label finds them per AppRegistration.
pub fn secret_labels(app_registration: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (
            LABEL_APP_REGISTRATION.to_string(),
            app_registration.to_string(),
        ),
    ])
}

/// The Secret's keys as strings. Holds the value in plain text: never log the result.
pub fn secret_string_data(
    context: &SecretContext,
    credential: &SecretCredential<'_>,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (KEY_CLIENT_ID.to_string(), context.client_id.clone()),
        (
            KEY_CLIENT_SECRET.to_string(),
            credential.value.expose().to_string(),
        ),
        (KEY_TENANT_ID.to_string(), context.tenant_id.clone()),
        (
            KEY_AUTHORITY_HOST.to_string(),
            context.authority_host.clone(),
        ),
        (
            KEY_TOKEN_ENDPOINT.to_string(),
            token_endpoint(&context.authority_host, &context.tenant_id),
        ),
        (KEY_KEY_ID.to_string(), credential.key_id.to_string()),
        (
            KEY_EXPIRES_AT.to_string(),
            credential.expires_at.to_string(),
        ),
    ])
}

/// The whole Secret, for server-side apply. Written as `data` (not `stringData`, which the API
/// server folds into `data` and which would make apply field ownership confusing). The caller adds
/// the owner reference. Holds the value: never log the result.
pub fn render_secret(
    context: &SecretContext,
    secret_name: &str,
    credential: &SecretCredential<'_>,
) -> Secret {
    let data = secret_string_data(context, credential)
        .into_iter()
        .map(|(key, value)| (key, ByteString(value.into_bytes())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_string()),
            namespace: Some(context.namespace.clone()),
            labels: Some(secret_labels(&context.app_registration)),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// What the rotation state machine needs to know about an existing Secret: which credential it
/// claims to hold, and the first characters of its value to check that claim against Entra's hint.
/// The value itself is not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedSecret {
    /// The `keyId` key, if present.
    pub key_id: Option<String>,
    /// The first [`HINT_LEN`] characters of `AZURE_CLIENT_SECRET`; `None` when the key is missing or empty.
    pub value_prefix: Option<String>,
    /// The `expiresAt` key, as written.
    pub expires_at: Option<String>,
    /// Whether the Secret carries this operator's managed-by label.
    pub managed_by_operator: bool,
    /// UIDs in the Secret's owner references (the resource that owns it is garbage-collected
    /// with it).
    pub owner_uids: Vec<String>,
}

impl ObservedSecret {
    /// Reads `data`, falling back to `stringData` (set on objects not yet round-tripped through an
    /// API server).
    pub fn from_secret(secret: &Secret) -> Self {
        let read = |key: &str| -> Option<String> {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|data| data.get(key).cloned())
                })
                .filter(|value| !value.is_empty())
        };
        ObservedSecret {
            key_id: read(KEY_KEY_ID),
            value_prefix: read(KEY_CLIENT_SECRET)
                .map(|value| hint_of(&value))
                .filter(|prefix| !prefix.is_empty()),
            expires_at: read(KEY_EXPIRES_AT),
            managed_by_operator: secret
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL_MANAGED_BY))
                .is_some_and(|value| value == MANAGED_BY),
            owner_uids: secret
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|r| r.uid.clone())
                .collect(),
        }
    }

    /// Whether the operator may delete this Secret for the resource with this UID: it carries the
    /// managed-by label and that resource owns it. A Secret someone took over (label or owner
    /// reference removed) is theirs.
    pub fn is_operators_for(&self, owner_uid: &str) -> bool {
        self.managed_by_operator && self.owner_uids.iter().any(|uid| uid == owner_uid)
    }

    /// Whether the Secret holds the credential with this key ID: its `keyId` matches and its value
    /// starts with Entra's hint. An empty or unknown hint checks the key ID only.
    pub fn holds(&self, key_id: &str, hint: Option<&str>) -> bool {
        if self.key_id.as_deref() != Some(key_id) {
            return false;
        }
        let Some(prefix) = self.value_prefix.as_deref() else {
            return false;
        };
        match hint.filter(|hint| !hint.is_empty()) {
            None => true,
            Some(hint) => {
                let hint_prefix: String = hint.chars().take(HINT_LEN).collect();
                prefix == hint_prefix
            }
        }
    }
}

/// A Secret (or ConfigMap) the operator may not write: it exists and is not this resource's (no
/// managed-by label, or another owner), or another resource claimed its name first. The object is
/// left untouched; the resource reports reason `SecretConflict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name} is not this resource's to write: {why}")]
pub struct SecretConflict {
    pub kind: &'static str,
    pub name: String,
    pub why: String,
}

/// Whether the object with these labels and owner UIDs belongs to the resource `owner_uid`: it must
/// carry the operator's managed-by label and name the resource among its owners. `None` when it
/// does, else why not.
pub fn foreign_owner(
    managed_by_operator: bool,
    owner_uids: &[String],
    owner_uid: &str,
) -> Option<String> {
    if !managed_by_operator {
        return Some(format!(
            "it exists without the label {LABEL_MANAGED_BY}={MANAGED_BY} (someone else created it)"
        ));
    }
    if !owner_uids.iter().any(|u| u == owner_uid) {
        return Some(if owner_uids.is_empty() {
            "it has no owner reference to this resource".to_string()
        } else {
            format!(
                "it is owned by another resource (uid {})",
                owner_uids.join(", ")
            )
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> SecretContext {
        SecretContext {
            app_registration: "payments-api".into(),
            namespace: "bookme".into(),
            client_id: "11111111-1111-1111-1111-111111111111".into(),
            tenant_id: "22222222-2222-2222-2222-222222222222".into(),
            authority_host: "https://login.microsoftonline.com/".into(),
        }
    }

    fn sample_secret(value: &SecretString) -> Secret {
        render_secret(
            &context(),
            "payments-api-secret",
            &SecretCredential {
                key_id: "key-1",
                expires_at: "2027-01-01T00:00:00Z".parse().unwrap(),
                value,
            },
        )
    }

    #[test]
    fn value_never_prints() {
        let value = SecretString::new("abc~very-secret-value");
        assert_eq!(format!("{value:?}"), "<redacted>");
        assert_eq!(format!("{value}"), "<redacted>");
        assert_eq!(hint_of(value.expose()), "abc");
    }

    #[test]
    fn renders_every_key_the_azure_sdks_read() {
        let value = SecretString::new("abc~very-secret-value");
        let data = secret_string_data(
            &context(),
            &SecretCredential {
                key_id: "key-1",
                expires_at: "2027-01-01T00:00:00Z".parse().unwrap(),
                value: &value,
            },
        );
        let expected = [
            (KEY_CLIENT_ID, "11111111-1111-1111-1111-111111111111"),
            (KEY_CLIENT_SECRET, "abc~very-secret-value"),
            (KEY_TENANT_ID, "22222222-2222-2222-2222-222222222222"),
            (KEY_AUTHORITY_HOST, "https://login.microsoftonline.com/"),
            (
                KEY_TOKEN_ENDPOINT,
                "https://login.microsoftonline.com/22222222-2222-2222-2222-222222222222/oauth2/v2.0/token",
            ),
            (KEY_KEY_ID, "key-1"),
            (KEY_EXPIRES_AT, "2027-01-01T00:00:00Z"),
        ];
        assert_eq!(data.len(), expected.len());
        for (key, value) in expected {
            assert_eq!(data.get(key).map(String::as_str), Some(value), "{key}");
        }
    }

    #[test]
    fn renders_labels_name_and_namespace() {
        let secret = sample_secret(&SecretString::new("abc~x"));
        assert_eq!(secret.metadata.name.as_deref(), Some("payments-api-secret"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("bookme"));
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "entra-operator");
        assert_eq!(labels[LABEL_APP_REGISTRATION], "payments-api");
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn reads_back_what_it_rendered_without_the_value() {
        let secret = sample_secret(&SecretString::new("abc~very-secret-value"));
        let observed = ObservedSecret::from_secret(&secret);
        assert_eq!(observed.key_id.as_deref(), Some("key-1"));
        assert_eq!(observed.value_prefix.as_deref(), Some("abc"));
        assert_eq!(observed.expires_at.as_deref(), Some("2027-01-01T00:00:00Z"));
        assert!(observed.managed_by_operator);
        assert!(observed.holds("key-1", Some("abc")));
        assert!(!observed.holds("key-1", Some("xyz")), "edited value");
        assert!(!observed.holds("key-2", Some("abc")), "other credential");
        assert!(observed.holds("key-1", None), "no hint: key id decides");
        assert!(!format!("{observed:?}").contains("very-secret"));
    }

    #[test]
    fn reads_string_data_and_missing_keys() {
        let secret = Secret {
            string_data: Some(BTreeMap::from([
                (KEY_KEY_ID.to_string(), "key-9".to_string()),
                (KEY_CLIENT_SECRET.to_string(), String::new()),
            ])),
            ..Secret::default()
        };
        let observed = ObservedSecret::from_secret(&secret);
        assert_eq!(observed.key_id.as_deref(), Some("key-9"));
        assert_eq!(observed.value_prefix, None);
        assert!(!observed.managed_by_operator);
        assert!(
            !observed.holds("key-9", None),
            "an empty value holds nothing"
        );
    }

    #[test]
    fn only_a_labelled_object_owned_by_this_resource_is_ours() {
        let uid = "u-1".to_string();
        assert_eq!(foreign_owner(true, std::slice::from_ref(&uid), "u-1"), None);
        assert!(
            foreign_owner(false, std::slice::from_ref(&uid), "u-1")
                .unwrap()
                .contains("without the label")
        );
        assert!(
            foreign_owner(true, &[], "u-1")
                .unwrap()
                .contains("no owner reference")
        );
        assert!(
            foreign_owner(true, &["u-2".to_string()], "u-1")
                .unwrap()
                .contains("another resource")
        );
    }
}
