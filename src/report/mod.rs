//! `entra-operator report`: every managed credential and every customer tenant's consent across the
//! cluster, most urgent first. Credentials of the AppRegistrations that BankClients and
//! NaaIntegrations own are reported under their owner.
//!
//! [`build`] turns the custom resources (their status, never a Secret) into rows and is pure;
//! [`render_table`] and the JSON form only print rows. [`cluster`] holds the I/O: reading the four
//! kinds through a kubeconfig.

pub mod cluster;

use std::cmp::Ordering;
use std::collections::BTreeSet;

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::appregistration::PasswordCredentialStatus;
use crate::api::tenantmapping::TenantConsentState;
use crate::api::{AppRegistration, BankClient, TenantMapping, condition};

pub use cluster::{ReportArgs, run};

/// The custom resources a report is built from.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub app_registrations: Vec<AppRegistration>,
    pub bank_clients: Vec<BankClient>,
    pub tenant_mappings: Vec<TenantMapping>,
}

/// The whole report, as `--output json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When the report was made (RFC 3339); relative times in the table count from here.
    pub generated_at: String,
    /// Every managed credential, most urgent first.
    pub credentials: Vec<CredentialRow>,
    /// Every app of every TenantMapping, missing consent first.
    pub consent: Vec<ConsentRow>,
}

/// One managed credential.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRow {
    /// The kind that declares the credential: `AppRegistration`, or `BankClient` / `NaaIntegration`
    /// when the AppRegistration holding it is their child.
    pub kind: String,
    pub namespace: String,
    /// The declaring resource's name.
    pub resource: String,
    /// The AppRegistration that holds the credential in Entra (the resource itself, or its child).
    pub app_registration: String,
    /// The Kubernetes Secret receiving a client secret; none for a federated credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `ClientSecret` or `Federated` (federated credentials have no secret and never expire).
    #[serde(rename = "type")]
    pub type_: CredentialType,
    /// When the current credential expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the operator rotates it next (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<String>,
    #[serde(flatten)]
    pub state: CredentialState,
}

/// The kind of credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CredentialType {
    ClientSecret,
    Federated,
}

/// Where a credential stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum CredentialState {
    /// Current, not due for rotation.
    Ok,
    /// A rotation has started and not finished.
    #[serde(rename_all = "camelCase")]
    Rotating { since: String },
    /// Rotated; the previous credential stays valid until `until`, then the operator revokes it.
    #[serde(rename_all = "camelCase")]
    InOverlap { until: String },
    /// Declared but not issued yet.
    #[serde(rename_all = "camelCase")]
    Pending { reason: String },
    /// The operator cannot keep the credential current.
    #[serde(rename_all = "camelCase")]
    Failing { reason: String, message: String },
    /// Past its expiry: whoever uses it is locked out.
    Expired,
}

impl CredentialState {
    /// Expired and failing credentials need a person; everything else is the operator's business.
    fn needs_attention(&self) -> bool {
        matches!(
            self,
            CredentialState::Expired | CredentialState::Failing { .. }
        )
    }

    fn describe(&self) -> String {
        match self {
            CredentialState::Ok => "ok".into(),
            CredentialState::Rotating { since } => format!("rotating since {since}"),
            CredentialState::InOverlap { until } => format!("in overlap until {until}"),
            CredentialState::Pending { reason } => format!("pending: {reason}"),
            CredentialState::Failing { reason, message } if message.is_empty() => {
                format!("failing: {reason}")
            }
            CredentialState::Failing { reason, message } => format!("failing: {reason}: {message}"),
            CredentialState::Expired => "EXPIRED".into(),
        }
    }
}

/// Consent of one app in one customer tenant.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentRow {
    pub namespace: String,
    /// The TenantMapping's name.
    pub tenant_mapping: String,
    pub tenant_id: String,
    /// The tenant's organization name, when Entra told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_name: Option<String>,
    /// The AppRegistration whose consent is checked.
    pub app: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// `Consented`, `NotConsented` or `Unknown`.
    pub consent: TenantConsentState,
    /// Where the tenant's administrator consents (only while consent is missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_consent_url: Option<String>,
    /// Why the state is what it is (the probe's answer, or the mapping's Ready reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When consent was last checked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

fn ready_failure(conditions: &crate::api::Conditions) -> Option<(String, String)> {
    let ready = conditions.get(condition::READY)?;
    (ready.status == "False").then(|| (ready.reason.to_string(), ready.message.to_string()))
}

/// The state of one client secret from its AppRegistration's status.
fn password_state(
    cred: &PasswordCredentialStatus,
    failure: Option<&(String, String)>,
    now: Timestamp,
) -> CredentialState {
    if cred
        .expires_at
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|at| at <= now)
    {
        return CredentialState::Expired;
    }
    // A resource that is not Ready for a reason other than its own credentials being written is
    // failing: its credentials are not kept current until that is fixed.
    if let Some((reason, message)) = failure
        && reason != "CredentialsPending"
    {
        return CredentialState::Failing {
            reason: reason.clone(),
            message: message.clone(),
        };
    }
    if let Some(pending) = &cred.pending {
        return CredentialState::Rotating {
            since: pending.since.clone(),
        };
    }
    if cred.key_id.is_none() {
        return CredentialState::Pending {
            reason: "not issued yet".into(),
        };
    }
    // Several previous credentials can be in overlap; the last one goes at the latest revoke time.
    if let Some(previous) = cred
        .previous
        .iter()
        .max_by(|a, b| a.revoke_at.cmp(&b.revoke_at))
    {
        return CredentialState::InOverlap {
            until: previous.revoke_at.clone(),
        };
    }
    if cred
        .renew_at
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|at| at + jiff::SignedDuration::from_hours(1) <= now)
    {
        return CredentialState::Failing {
            reason: "RotationOverdue".into(),
            message: format!(
                "rotation was due at {}",
                cred.renew_at.as_deref().unwrap_or_default()
            ),
        };
    }
    CredentialState::Ok
}

/// The kind and name that declared an AppRegistration: its controlling owner when that is one of
/// ours (BankClient, NaaIntegration), else the AppRegistration itself.
fn declared_by(app: &AppRegistration) -> (String, String) {
    app.owner_references()
        .iter()
        .find(|o| {
            o.controller == Some(true)
                && o.api_version.starts_with(crate::api::GROUP)
                && (o.kind == "BankClient" || o.kind == "NaaIntegration")
        })
        .map(|o| (o.kind.clone(), o.name.clone()))
        .unwrap_or_else(|| ("AppRegistration".into(), app.name_any()))
}

fn credential_rows(inv: &Inventory, now: Timestamp) -> Vec<CredentialRow> {
    let mut rows = Vec::new();
    let mut banks_seen = BTreeSet::new();
    for app in &inv.app_registrations {
        let namespace = app.namespace().unwrap_or_default();
        let (kind, resource) = declared_by(app);
        if kind == "BankClient" {
            banks_seen.insert((namespace.clone(), resource.clone()));
        }
        let status = app.status.clone().unwrap_or_default();
        let failure = ready_failure(&status.conditions);
        let row =
            |secret: Option<String>, type_, expires_at, next_rotation_at, state| CredentialRow {
                kind: kind.clone(),
                namespace: namespace.clone(),
                resource: resource.clone(),
                app_registration: app.name_any(),
                secret,
                type_,
                expires_at,
                next_rotation_at,
                state,
            };
        for declared in &app.spec.credentials.passwords {
            let found = status
                .credentials
                .iter()
                .find(|c| c.secret_name == declared.secret_name);
            let state = match found {
                Some(cred) => password_state(cred, failure.as_ref(), now),
                None => match &failure {
                    Some((reason, message)) if reason != "CredentialsPending" => {
                        CredentialState::Failing {
                            reason: reason.clone(),
                            message: message.clone(),
                        }
                    }
                    _ => CredentialState::Pending {
                        reason: "not issued yet".into(),
                    },
                },
            };
            rows.push(row(
                Some(declared.secret_name.to_string()),
                CredentialType::ClientSecret,
                found.and_then(|c| c.expires_at.as_deref().map(str::to_string)),
                found.and_then(|c| c.renew_at.as_deref().map(str::to_string)),
                state,
            ));
        }
        for declared in &app.spec.credentials.federated {
            let state = if status.federated_credentials.contains(&declared.name) {
                CredentialState::Ok
            } else {
                match &failure {
                    Some((reason, message)) if reason != "CredentialsPending" => {
                        CredentialState::Failing {
                            reason: reason.clone(),
                            message: message.clone(),
                        }
                    }
                    _ => CredentialState::Pending {
                        reason: "not created yet".into(),
                    },
                }
            };
            rows.push(row(None, CredentialType::Federated, None, None, state));
        }
    }
    // A BankClient whose AppRegistration does not exist yet still declares a credential.
    for bank in &inv.bank_clients {
        let namespace = bank.namespace().unwrap_or_default();
        if banks_seen.contains(&(namespace.clone(), bank.name_any())) {
            continue;
        }
        let status = bank.status.clone().unwrap_or_default();
        let state = match ready_failure(&status.conditions) {
            Some((reason, message)) => CredentialState::Failing { reason, message },
            None => CredentialState::Pending {
                reason: "no AppRegistration yet".into(),
            },
        };
        rows.push(CredentialRow {
            kind: "BankClient".into(),
            namespace,
            resource: bank.name_any(),
            app_registration: status.app_registration_name.clone().unwrap_or_default(),
            secret: Some(bank.spec.secret.name.to_string()),
            type_: CredentialType::ClientSecret,
            expires_at: status.secret_expires_at.as_deref().map(str::to_string),
            next_rotation_at: status.next_rotation_at.as_deref().map(str::to_string),
            state,
        });
    }
    rows.sort_by(credential_urgency);
    rows
}

/// Needing attention first; then soonest expiry (never-expiring last); then by name.
fn credential_urgency(a: &CredentialRow, b: &CredentialRow) -> Ordering {
    let expiry = |r: &CredentialRow| r.expires_at.as_deref().and_then(parse_time);
    let by_expiry = match (expiry(a), expiry(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    b.state
        .needs_attention()
        .cmp(&a.state.needs_attention())
        .then(by_expiry)
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.kind.cmp(&b.kind))
        .then_with(|| a.resource.cmp(&b.resource))
        .then_with(|| a.secret.cmp(&b.secret))
}

fn consent_rows(inv: &Inventory) -> Vec<ConsentRow> {
    let mut rows = Vec::new();
    for mapping in &inv.tenant_mappings {
        let status = mapping.status.clone().unwrap_or_default();
        let failure = ready_failure(&status.conditions);
        let declared: Vec<String> = mapping
            .spec
            .consent
            .iter()
            .flat_map(|c| c.apps.iter().map(|a| a.app_ref.name.to_string()))
            .collect();
        let base = ConsentRow {
            namespace: mapping.namespace().unwrap_or_default(),
            tenant_mapping: mapping.name_any(),
            tenant_id: mapping.spec.tenant_id.clone(),
            tenant_name: status.tenant.as_ref().and_then(|t| t.display_name.clone()),
            app: String::new(),
            app_id: None,
            consent: TenantConsentState::Unknown,
            admin_consent_url: None,
            message: None,
            last_checked_at: status.last_checked_at.clone(),
        };
        for name in &declared {
            let row = match status.apps.iter().find(|a| &a.name == name) {
                Some(app) => ConsentRow {
                    app: name.clone(),
                    app_id: app.app_id.clone(),
                    consent: app.state,
                    admin_consent_url: (app.state != TenantConsentState::Consented)
                        .then(|| app.admin_consent_url.clone())
                        .flatten(),
                    message: app.message.clone(),
                    ..base.clone()
                },
                None => ConsentRow {
                    app: name.clone(),
                    message: Some(match &failure {
                        Some((reason, message)) => format!("{reason}: {message}"),
                        None => "not checked yet".into(),
                    }),
                    ..base.clone()
                },
            };
            rows.push(row);
        }
    }
    let rank = |s: TenantConsentState| match s {
        TenantConsentState::NotConsented => 0,
        TenantConsentState::Unknown => 1,
        TenantConsentState::Consented => 2,
    };
    rows.sort_by(|a, b| {
        rank(a.consent)
            .cmp(&rank(b.consent))
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.tenant_mapping.cmp(&b.tenant_mapping))
            .then_with(|| a.app.cmp(&b.app))
    });
    rows
}

/// The report for these resources at `now`.
pub fn build(inv: &Inventory, now: Timestamp) -> Report {
    Report {
        generated_at: now.to_string(),
        credentials: credential_rows(inv, now),
        consent: consent_rows(inv),
    }
}

/// `2026-03-01T00:00:00Z (in 89d)`: a time and how far it is from `now`.
fn relative(at: Option<&str>, now: Timestamp) -> String {
    let Some(text) = at else {
        return "-".into();
    };
    let Some(ts) = parse_time(text) else {
        return text.to_string();
    };
    let secs = ts.as_second() - now.as_second();
    let span = |s: i64| {
        if s >= 2 * 86_400 {
            format!("{}d", s / 86_400)
        } else if s >= 7_200 {
            format!("{}h", s / 3_600)
        } else if s >= 120 {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    };
    let when = ts.strftime("%Y-%m-%dT%H:%MZ").to_string();
    if secs >= 0 {
        format!("{when} (in {})", span(secs))
    } else {
        format!("{when} ({} ago)", span(-secs))
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The report as two plain-text tables (no colour: it is read in terminals and pasted in tickets).
pub fn render_table(report: &Report) -> String {
    let now = parse_time(&report.generated_at).unwrap_or_else(Timestamp::now);
    let mut out = String::from("CREDENTIALS\n");
    if report.credentials.is_empty() {
        out.push_str("(no managed credentials)\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .credentials
            .iter()
            .map(|r| {
                vec![
                    r.kind.clone(),
                    r.namespace.clone(),
                    r.resource.clone(),
                    r.secret.clone().unwrap_or_else(|| "-".into()),
                    match r.type_ {
                        CredentialType::ClientSecret => "ClientSecret".into(),
                        CredentialType::Federated => "Federated".into(),
                    },
                    relative(r.expires_at.as_deref(), now),
                    relative(r.next_rotation_at.as_deref(), now),
                    r.state.describe(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "KIND",
                "NAMESPACE",
                "RESOURCE",
                "SECRET",
                "TYPE",
                "EXPIRES",
                "NEXT ROTATION",
                "STATE",
            ],
            &rows,
        ));
    }
    out.push_str("\nTENANT CONSENT\n");
    if report.consent.is_empty() {
        out.push_str("(no TenantMappings with consent checks)\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .consent
            .iter()
            .map(|r| {
                vec![
                    r.namespace.clone(),
                    r.tenant_mapping.clone(),
                    r.tenant_name.clone().unwrap_or_else(|| r.tenant_id.clone()),
                    r.app.clone(),
                    format!("{:?}", r.consent),
                    match (&r.admin_consent_url, &r.message) {
                        (Some(url), _) => url.clone(),
                        (None, Some(m)) if r.consent != TenantConsentState::Consented => m.clone(),
                        _ => "-".into(),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "NAMESPACE",
                "TENANT MAPPING",
                "TENANT",
                "APP",
                "CONSENT",
                "CONSENT URL / REASON",
            ],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests;
