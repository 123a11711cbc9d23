//! The TenantMapping controller's I/O: verify the customer tenant through Graph, probe consent of
//! each listed app with a client-credentials token request in that tenant (on an interval, or when
//! the recheck annotation changes), rewrite the namespace's tenant-mappings registry, and report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use tracing::{debug, info};

use crate::api::tenantmapping::{AppConsentStatus, TenantConsentState, TenantInfo};
use crate::api::{
    AppRegistration, RECHECK_ANNOTATION, TenantMapping, TenantMappingStatus, condition,
};
use crate::controllers::composed_reconcile::{
    Error, REGISTRY_FINALIZER, apply_config_map, object_key, publish, record_reconcile,
};
use crate::controllers::conditions::{DesiredCondition, merge_conditions};
use crate::controllers::context::Context;
use crate::controllers::status::apply_status;
use crate::controllers::tenantmapping::{
    ProbeOutcome, TENANT_MAPPINGS_REGISTRY, TenantClaim, TenantRegistry, consent_check_due,
    consent_from_probe, resolve_tenant_registry, tenant_admin_consent_url,
};
use crate::credentials::KEY_CLIENT_SECRET;
use crate::graph::{GraphError, SecretString, TokenProbe};

const KIND: &str = "TenantMapping";

/// The probe's resource when an app probes with its own credential: any tenant where the app has a
/// service principal issues a Graph token (with the Graph app roles granted there).
const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Entry point for the controller runtime.
pub async fn reconcile(obj: Arc<TenantMapping>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("TenantMapping without namespace".into()))?;
    let api: Api<TenantMapping> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, REGISTRY_FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, &ctx).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, &ctx).await,
        }
    })
    .await
    .map_err(Error::from_finalizer);
    record_reconcile(&ctx, KIND, started, &result);
    result
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
                .map(|a| a.app_ref.name.clone())
                .chain(c.probe.iter().map(|p| p.app_ref.name.clone()))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Recompute the registry from every live TenantMapping in the namespace and write it.
async fn rewrite_registry(ctx: &Context, namespace: &str) -> Result<TenantRegistry, Error> {
    let api: Api<TenantMapping> = Api::namespaced(ctx.client.clone(), namespace);
    let claims: Vec<TenantClaim> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
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
        .collect();
    let registry = resolve_tenant_registry(&claims);
    let data: BTreeMap<String, String> = registry
        .entries
        .iter()
        .map(|(tenant, entry)| {
            let json = serde_json::to_string(entry).expect("a registry entry serializes");
            (tenant.clone(), json)
        })
        .collect();
    apply_config_map(
        ctx,
        namespace,
        TENANT_MAPPINGS_REGISTRY,
        &data,
        &BTreeMap::new(),
        None,
    )
    .await?;
    Ok(registry)
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
        Some(v) => Ok(Ok((app_id, SecretString::new(v)))),
        None => Ok(Err(format!(
            "Secret {secret_name} of {name} has no {KEY_CLIENT_SECRET}"
        ))),
    }
}

/// Probe one listed app in the tenant. With its own credential the token request is for Graph
/// (AADSTS700016: no service principal, not consented); with another app's credential it asks for
/// a token to the listed app as resource (AADSTS500011: the listed app is not in the tenant).
async fn probe_app(
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

/// The reconcile of a live TenantMapping.
async fn apply(obj: Arc<TenantMapping>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = object_key(obj.as_ref());
    let api: Api<TenantMapping> = Api::namespaced(ctx.client.clone(), &namespace);
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let tenant = obj.spec.tenant_id.to_ascii_lowercase();
    let now = Timestamp::now();
    let previous = obj.status.clone().unwrap_or_default();
    let recheck = obj.annotations().get(RECHECK_ANNOTATION).cloned();
    let listed: Vec<String> = obj
        .spec
        .consent
        .iter()
        .flat_map(|c| c.apps.iter().map(|a| a.app_ref.name.clone()))
        .collect();
    let mut listed_ids = Vec::new();
    for app in &listed {
        let app_id = apps
            .get_opt(app)
            .await?
            .and_then(|a| a.status.and_then(|s| s.app_id));
        listed_ids.push((app.clone(), app_id));
    }
    let interval = obj
        .spec
        .consent
        .as_ref()
        .map(|c| c.interval.as_std())
        .unwrap_or(Duration::from_secs(3600));
    let due = previous.tenant.is_none()
        || consent_check_due(
            &previous,
            obj.metadata.generation,
            recheck.as_deref(),
            &listed_ids,
            interval,
            now,
        );

    let registry = rewrite_registry(ctx, &namespace).await?;
    let mut status = previous.clone();
    status.observed_generation = obj.metadata.generation;
    status.recheck_token = recheck.clone();
    let mut tenant_missing = false;
    if due {
        match ctx.graph.find_tenant_information(&tenant).await {
            Ok(info) => {
                status.tenant = Some(TenantInfo {
                    display_name: info.display_name,
                    default_domain_name: info.default_domain_name,
                });
            }
            Err(GraphError::NotFound(_)) => {
                tenant_missing = true;
                status.tenant = None;
            }
            Err(e) => return Err(e.into()),
        }
        status.apps = Vec::new();
        if !tenant_missing {
            let probe = obj
                .spec
                .consent
                .as_ref()
                .and_then(|c| c.probe.as_ref())
                .map(|p| p.app_ref.name.as_str());
            for app in &listed {
                status
                    .apps
                    .push(probe_app(ctx, &apps, &secrets, &tenant, app, probe).await?);
            }
        }
        status.last_checked_at = Some(now.to_string());
        debug!(tenantmapping = %key, "checked tenant and consent");
    } else {
        tenant_missing = status.tenant.is_none();
    }
    let consented = status
        .apps
        .iter()
        .filter(|a| a.state == TenantConsentState::Consented)
        .count();
    status.consent_summary = Some(format!("{consented}/{}", listed.len()));

    let (ready, consent) = conditions_for(&obj, &status, tenant_missing, &registry);
    let was = previous.conditions.get(condition::READY).cloned();
    status.conditions = merge_conditions(
        &previous.conditions,
        &[ready.clone(), consent],
        obj.metadata.generation,
        now,
    );
    apply_status(&api, &name, obj.status.as_ref(), &status).await?;
    let changed = was
        .as_ref()
        .map(|c| (c.status == "True", c.reason.as_str()))
        != Some((ready.status, ready.reason.as_str()));
    if changed {
        info!(tenantmapping = %key, reason = %ready.reason, "Ready is now {}", ready.status);
        let type_ = if ready.status {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(ctx, obj.as_ref(), type_, &ready.reason, &ready.message).await;
    }
    ctx.record_success(&key);
    // Come back when the next consent check is due (or on the regular resync, if sooner).
    let wait = if listed.is_empty() {
        ctx.settings.resync
    } else {
        interval.min(ctx.settings.resync)
    };
    Ok(Action::requeue(wait))
}

/// Ready and ConsentGranted: Ready says the tenant can use the platform — it exists, its BankIds
/// are in the registry, and every listed app is consented there.
fn conditions_for(
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

/// The mapping is going: rewrite the registry without it (which may hand its BankIds to a later
/// mapping that was in conflict).
async fn cleanup(obj: Arc<TenantMapping>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    rewrite_registry(ctx, &namespace).await?;
    info!(tenantmapping = %object_key(obj.as_ref()), "removed from the tenant-mappings registry");
    Ok(Action::await_change())
}
