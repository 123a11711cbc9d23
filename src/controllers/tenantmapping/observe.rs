//! The TenantMapping controller's observe stage: every claim on a tenant or BankId in the
//! namespace, the listed apps' appIds, and consent as a client-credentials token request in the
//! customer tenant shows it (the probe's client secret is only held here and never logged).

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use crate::api::tenantmapping::AppConsentStatus;
use crate::api::{AppRegistration, TenantMapping};
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::credentials::KEY_CLIENT_SECRET;
use crate::graph::{SecretString, TokenProbe};

use super::plan::{ProbeOutcome, TenantClaim, consent_from_probe, tenant_admin_consent_url};

/// The probe's resource when an app probes with its own credential: any tenant where the app has a
/// service principal issues a Graph token (with the Graph app roles granted there).
const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Every live TenantMapping's claim in the namespace, from the controller's store.
pub fn claims(mappings: &Store<TenantMapping>, namespace: &str) -> Vec<TenantClaim> {
    mappings
        .state()
        .into_iter()
        .filter(|m| m.metadata.namespace.as_deref() == Some(namespace))
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .map(|m| TenantClaim {
            name: m.name_any(),
            tenant_id: m.spec.tenant_id.clone(),
            bank_ids: m.spec.bank_ids.iter().map(|b| b.0.clone()).collect(),
            default_bank_id: m.spec.default_bank_id.clone(),
            created: m
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        })
        .collect()
}

/// The appId each listed AppRegistration reports (None while it has none).
pub async fn listed_app_ids(
    apps: &Api<AppRegistration>,
    listed: &[String],
) -> Result<Vec<(String, Option<String>)>, Error> {
    let mut listed_ids = Vec::new();
    for app in listed {
        let app_id = apps
            .get_opt(app)
            .await?
            .and_then(|a| a.status.and_then(|s| s.app_id).map(|id| id.to_string()));
        listed_ids.push((app.clone(), app_id));
    }
    Ok(listed_ids)
}

/// The probe app's appId and client secret, or why there is none. The value is only held here and
/// handed to the token request; it is never logged.
async fn probe_credential(
    apps: &Api<AppRegistration>,
    secrets: &Api<Secret>,
    name: &str,
) -> Result<Result<(String, SecretString), String>, Error> {
    let Some(app) = apps.get_opt(name).await? else {
        return Ok(Err(format!(
            "probe app AppRegistration {name} does not exist"
        )));
    };
    let status = app.status.unwrap_or_default();
    let Some(app_id) = status.app_id else {
        return Ok(Err(format!("probe app {name} has no appId yet")));
    };
    let Some(secret_name) = status.credentials.first().map(|c| c.secret_name.clone()) else {
        return Ok(Err(format!(
            "{name} has no client secret to probe with; declare a password credential on it or name another app under consent.probe"
        )));
    };
    let value = secrets
        .get_opt(&secret_name)
        .await?
        .and_then(|s| s.data)
        .and_then(|d| d.get(KEY_CLIENT_SECRET).cloned())
        .and_then(|v| String::from_utf8(v.0).ok());
    match value {
        Some(v) => Ok(Ok((app_id.to_string(), SecretString::new(v)))),
        None => Ok(Err(format!(
            "Secret {secret_name} of {name} has no {KEY_CLIENT_SECRET}"
        ))),
    }
}

/// Probe one listed app in the tenant. With its own credential the token request is for Graph
/// (AADSTS700016: no service principal, not consented); with another app's credential it asks for
/// a token to the listed app as resource (AADSTS500011: the listed app is not in the tenant).
pub async fn probe_app(
    ctx: &Context,
    apps: &Api<AppRegistration>,
    secrets: &Api<Secret>,
    tenant: &str,
    name: &str,
    probe_app_name: Option<&str>,
) -> Result<AppConsentStatus, Error> {
    let app_id = apps
        .get_opt(name)
        .await?
        .and_then(|a| a.status.and_then(|s| s.app_id));
    let Some(app_id) = app_id else {
        let outcome = ProbeOutcome::NoCredential {
            why: format!("waiting for AppRegistration {name} to get an appId"),
        };
        return Ok(consent_from_probe(name, None, &outcome, None));
    };
    let url = Some(tenant_admin_consent_url(
        &ctx.settings.authority_host,
        tenant,
        &app_id,
    ));
    let prober = probe_app_name.unwrap_or(name);
    let outcome = match probe_credential(apps, secrets, prober).await? {
        Err(why) => ProbeOutcome::NoCredential { why },
        Ok((client_id, secret)) => {
            let own = prober == name;
            let scope = if own {
                GRAPH_DEFAULT_SCOPE.to_string()
            } else {
                format!("{app_id}/.default")
            };
            match ctx
                .graph
                .probe_client_credentials(tenant, &client_id, &secret, &scope)
                .await
            {
                Ok(TokenProbe::Issued(claims)) => ProbeOutcome::Token {
                    roles: claims.roles,
                },
                Ok(TokenProbe::Rejected(e)) => {
                    let code = e.error_codes.first().copied().unwrap_or_default();
                    if !own && code == 500011 {
                        ProbeOutcome::ResourceNotInTenant {
                            description: e.error_description,
                        }
                    } else if !own {
                        ProbeOutcome::EntraError {
                            code,
                            description: format!(
                                "probing with {prober}'s credential: {}",
                                e.error_description
                            ),
                        }
                    } else {
                        ProbeOutcome::EntraError {
                            code,
                            description: e.error_description,
                        }
                    }
                }
                Err(e) => ProbeOutcome::NoCredential {
                    why: format!("the probe token request failed: {e}"),
                },
            }
        }
    };
    Ok(consent_from_probe(name, Some(&app_id), &outcome, url))
}
