//! The report stage, pure: the status an AppRegistration gets from its plan and what the execute
//! stage did. The controller applies it with the one status writer
//! (`controllers::status_writer`).

use jiff::Timestamp;

use crate::api::appregistration::{AppRegistrationStatus, ConsentState, PasswordCredentialStatus};
use crate::api::condition;
use crate::api::{AppRegistrationSpec, Text};
use crate::controllers::conditions::DesiredCondition;

use super::plan::{Plan, PlannedStatus};

/// Copies what the plan knows about the application (its IDs, URIs, consent) into the status.
pub fn record_planned(
    status: &mut AppRegistrationStatus,
    planned: &PlannedStatus,
    tenant_id: &str,
) {
    status.app_id = planned.app_id.as_deref().map(Text::interned);
    status.object_id = planned.object_id.clone();
    status.unique_name = planned.unique_name.clone();
    status.service_principal_id = planned.service_principal_id.clone();
    status.tenant_id = Some(tenant_id.into());
    status.identifier_uris = planned.identifier_uris.clone();
    status.scope_ids = planned.scope_ids.clone();
    status.role_ids = planned.role_ids.clone();
    status.consent = Some(planned.consent.clone());
    status.federated_credentials = planned.federated_credentials.clone();
    status.managed_owners = planned.managed_owners.clone();
    status.granted_permissions = planned.granted_permissions.clone();
}

/// Replaces the status entry of the same Secret, or adds it.
pub fn set_entry(status: &mut AppRegistrationStatus, entry: PasswordCredentialStatus) {
    match status
        .credentials
        .iter_mut()
        .find(|c| c.secret_name == entry.secret_name)
    {
        Some(existing) => *existing = entry,
        None => status.credentials.push(entry),
    }
}

/// The earlier of two optional times.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The writes' names, each once, in order of first appearance.
pub fn dedup_join(items: &[&'static str]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for i in items {
        if !seen.contains(i) {
            seen.push(i);
        }
    }
    seen.join(", ")
}

/// The conditions of a reconcile whose stages all ran: Synced from the plan (blocked by what could
/// not be planned, or the writes made), CredentialsReady from the status entries, ConsentGranted
/// from the observed consent, and Ready from Synced and CredentialsReady. Missing consent is
/// reported in its own condition (granting it may be someone else's job) and does not block Ready.
pub fn conditions(
    spec: &AppRegistrationSpec,
    status: &AppRegistrationStatus,
    plan: &Plan,
    writes: &[&'static str],
) -> Vec<DesiredCondition> {
    let synced = match plan.blocking_reason() {
        Some((reason, message)) => DesiredCondition::failed(condition::SYNCED, reason, message),
        None => DesiredCondition::ok(
            condition::SYNCED,
            "Synced",
            if writes.is_empty() {
                "The application in Entra matches the spec".to_string()
            } else {
                format!("Applied: {}", dedup_join(writes))
            },
        ),
    };
    let declared = &spec.credentials.passwords;
    let certificates = &spec.credentials.certificates;
    let passwords_ok = declared.iter().all(|p| {
        status
            .credentials
            .iter()
            .any(|c| c.secret_name == p.secret_name && c.key_id.is_some() && c.pending.is_none())
    });
    let certificates_ok = certificates.iter().all(|d| {
        status
            .certificates
            .iter()
            .any(|c| c.secret_name == d.secret_name && c.key_id.is_some() && c.pending.is_none())
    });
    let credentials = if declared.is_empty() && certificates.is_empty() {
        DesiredCondition::ok(
            condition::CREDENTIALS_READY,
            "NoCredentials",
            "No client secrets or certificates are declared",
        )
    } else if passwords_ok && certificates_ok {
        DesiredCondition::ok(
            condition::CREDENTIALS_READY,
            "CredentialsCurrent",
            "Every declared client secret and certificate is in its Secret and not due for rotation",
        )
    } else if !certificates_ok {
        DesiredCondition::failed(
            condition::CREDENTIALS_READY,
            "RotationInProgress",
            "A certificate is being created or rotated",
        )
    } else {
        DesiredCondition::failed(
            condition::CREDENTIALS_READY,
            "RotationInProgress",
            "A client secret is being created or rotated",
        )
    };
    let consent = status.consent.clone().unwrap_or_default();
    let consent_condition = if matches!(
        consent.state,
        ConsentState::Granted | ConsentState::NotRequired
    ) {
        DesiredCondition::ok(
            condition::CONSENT_GRANTED,
            format!("{:?}", consent.state),
            "Every required permission is consented",
        )
    } else {
        DesiredCondition::failed(
            condition::CONSENT_GRANTED,
            format!("{:?}", consent.state),
            format!(
                "Missing consent for {}{}",
                consent.missing.join(", "),
                consent
                    .admin_consent_url
                    .as_deref()
                    .map(|u| format!("; an administrator can grant it at {u}"))
                    .unwrap_or_default()
            ),
        )
    };
    let ready = if !synced.status {
        DesiredCondition::failed(
            condition::READY,
            synced.reason.clone(),
            synced.message.clone(),
        )
    } else if !(passwords_ok && certificates_ok) {
        DesiredCondition::failed(
            condition::READY,
            "CredentialsPending",
            "Waiting for client secrets or certificates to be written",
        )
    } else {
        DesiredCondition::ok(
            condition::READY,
            "Ready",
            "The app registration matches the spec",
        )
    };
    vec![synced, credentials, consent_condition, ready]
}

/// The conditions of a reconcile that failed with `reason` and `message`.
pub fn failure_conditions(reason: &str, message: &str) -> Vec<DesiredCondition> {
    vec![
        DesiredCondition::failed(condition::SYNCED, reason, message),
        DesiredCondition::failed(condition::READY, reason, message),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::appregistration::{ConsentStatus, PendingRotation};
    use crate::controllers::appregistration::PlanError;

    fn spec(secrets: &[&str]) -> AppRegistrationSpec {
        serde_json::from_value(serde_json::json!({
            "displayName": "app",
            "credentials": {"passwords": secrets.iter().map(|s| serde_json::json!({"secretName": s})).collect::<Vec<_>>()},
        }))
        .unwrap()
    }

    fn entry(secret: &str, key_id: Option<&str>, pending: bool) -> PasswordCredentialStatus {
        let mut e: PasswordCredentialStatus =
            serde_json::from_value(serde_json::json!({"secretName": secret})).unwrap();
        e.key_id = key_id.map(String::from);
        if pending {
            e.pending = Some(PendingRotation {
                nonce: "n".into(),
                since: "2026-01-01T00:00:00Z".into(),
            });
        }
        e
    }

    fn status(
        entries: Vec<PasswordCredentialStatus>,
        consent: ConsentState,
    ) -> AppRegistrationStatus {
        AppRegistrationStatus {
            credentials: entries,
            consent: Some(ConsentStatus {
                state: consent,
                missing: vec!["MicrosoftGraph/User.Read".into()],
                admin_consent_url: Some("https://login/adminconsent".into()),
            }),
            ..Default::default()
        }
    }

    fn by_type<'a>(conditions: &'a [DesiredCondition], type_: &str) -> &'a DesiredCondition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    /// One row: the input, then the expected reasons (and ConsentGranted's status).
    struct Case {
        name: &'static str,
        secrets: Vec<&'static str>,
        entries: Vec<PasswordCredentialStatus>,
        consent: ConsentState,
        plan: Plan,
        writes: Vec<&'static str>,
        synced: &'static str,
        credentials: &'static str,
        consented: bool,
        ready: &'static str,
    }

    #[test]
    fn conditions_from_plan_credentials_and_consent() {
        let blocked = Plan {
            errors: vec![PlanError::WaitingForReference { name: "api".into() }],
            ..Plan::default()
        };
        let row = |name, secrets, entries, consent, plan, writes, expected: (_, _, _, _)| Case {
            name,
            secrets,
            entries,
            consent,
            plan,
            writes,
            synced: expected.0,
            credentials: expected.1,
            consented: expected.2,
            ready: expected.3,
        };
        let cases = [
            row(
                "in sync, no secrets",
                vec![],
                vec![],
                ConsentState::NotRequired,
                Plan::default(),
                vec![],
                ("Synced", "NoCredentials", true, "Ready"),
            ),
            row(
                "secret written",
                vec!["s"],
                vec![entry("s", Some("k"), false)],
                ConsentState::Granted,
                Plan::default(),
                vec!["application"],
                ("Synced", "CredentialsCurrent", true, "Ready"),
            ),
            row(
                "secret pending",
                vec!["s"],
                vec![entry("s", Some("k"), true)],
                ConsentState::Granted,
                Plan::default(),
                vec![],
                ("Synced", "RotationInProgress", true, "CredentialsPending"),
            ),
            row(
                "secret missing",
                vec!["s"],
                vec![],
                ConsentState::Granted,
                Plan::default(),
                vec![],
                ("Synced", "RotationInProgress", true, "CredentialsPending"),
            ),
            row(
                "blocked plan",
                vec![],
                vec![],
                ConsentState::Granted,
                blocked,
                vec![],
                (
                    "WaitingForReference",
                    "NoCredentials",
                    true,
                    "WaitingForReference",
                ),
            ),
            row(
                "consent missing does not block Ready",
                vec![],
                vec![],
                ConsentState::NotGranted,
                Plan::default(),
                vec![],
                ("Synced", "NoCredentials", false, "Ready"),
            ),
        ];
        for c in cases {
            let got = conditions(
                &spec(&c.secrets),
                &status(c.entries, c.consent),
                &c.plan,
                &c.writes,
            );
            let case = c.name;
            assert_eq!(by_type(&got, condition::SYNCED).reason, c.synced, "{case}");
            assert_eq!(
                by_type(&got, condition::CREDENTIALS_READY).reason,
                c.credentials,
                "{case}"
            );
            assert_eq!(
                by_type(&got, condition::CONSENT_GRANTED).status,
                c.consented,
                "{case}"
            );
            assert_eq!(by_type(&got, condition::READY).reason, c.ready, "{case}");
            assert_eq!(
                by_type(&got, condition::READY).status,
                c.ready == "Ready",
                "{case}"
            );
        }
    }

    #[test]
    fn a_declared_certificate_keeps_ready_false_until_it_is_in_place() {
        use crate::api::appregistration::CertificateCredentialStatus;
        let mut spec = spec(&[]);
        spec.credentials.certificates =
            vec![serde_json::from_value(serde_json::json!({"secretName": "api-tls"})).unwrap()];
        let mut st = status(vec![], ConsentState::NotRequired);
        let got = conditions(&spec, &st, &Plan::default(), &[]);
        assert_eq!(
            by_type(&got, condition::CREDENTIALS_READY).reason,
            "RotationInProgress"
        );
        assert!(!by_type(&got, condition::READY).status);
        st.certificates = vec![CertificateCredentialStatus {
            secret_name: "api-tls".into(),
            thumbprint: Some("AB".into()),
            key_id: Some("k1".into()),
            ..Default::default()
        }];
        let got = conditions(&spec, &st, &Plan::default(), &[]);
        assert_eq!(
            by_type(&got, condition::CREDENTIALS_READY).reason,
            "CredentialsCurrent"
        );
        assert!(by_type(&got, condition::READY).status);
    }

    #[test]
    fn messages_name_the_writes_and_the_consent_url() {
        let got = conditions(
            &spec(&[]),
            &status(vec![], ConsentState::NotGranted),
            &Plan::default(),
            &["application", "owners", "application"],
        );
        assert_eq!(
            by_type(&got, condition::SYNCED).message,
            "Applied: application, owners"
        );
        assert_eq!(
            by_type(&got, condition::CONSENT_GRANTED).message,
            "Missing consent for MicrosoftGraph/User.Read; an administrator can grant it at https://login/adminconsent"
        );
    }

    #[test]
    fn failure_marks_synced_and_ready_false() {
        let got = failure_conditions("GraphForbidden", "no permission");
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|c| !c.status && c.reason == "GraphForbidden")
        );
    }

    #[test]
    fn a_refused_write_is_stalled_and_a_throttled_one_in_flight_in_the_written_status() {
        use crate::controllers::conditions::merge_conditions;
        // (reason, Reconciling, Stalled) as they reach the status.
        for (reason, reconciling, stalled) in [
            ("GraphForbidden", "False", "True"),
            ("GraphBadRequest", "False", "True"),
            ("PermissionNotFound", "False", "True"),
            ("GraphThrottled", "True", "False"),
            ("WaitingForReference", "True", "False"),
        ] {
            let written = merge_conditions(
                &Default::default(),
                &failure_conditions(reason, "m"),
                Some(4),
                Timestamp::UNIX_EPOCH,
            );
            for (type_, want) in [
                (condition::RECONCILING, reconciling),
                (condition::STALLED, stalled),
            ] {
                let c = written.get(type_).unwrap();
                assert_eq!(c.status, want, "{reason} {type_}");
                assert_eq!(c.reason, reason);
                assert_eq!(c.observed_generation, Some(4));
            }
        }
    }

    #[test]
    fn entries_are_replaced_by_secret_name() {
        let mut s = AppRegistrationStatus::default();
        set_entry(&mut s, entry("a", None, false));
        set_entry(&mut s, entry("b", None, false));
        set_entry(&mut s, entry("a", Some("k"), false));
        assert_eq!(s.credentials.len(), 2);
        assert_eq!(s.credentials[0].key_id.as_deref(), Some("k"));
    }

    #[test]
    fn earliest_of_optional_times() {
        let t = |s: i64| Some(Timestamp::from_second(s).unwrap());
        assert_eq!(earliest(t(5), t(3)), t(3));
        assert_eq!(earliest(None, t(3)), t(3));
        assert_eq!(earliest(t(5), None), t(5));
        assert_eq!(earliest(None, None), None);
    }
}
