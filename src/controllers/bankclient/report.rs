//! The BankClient controller's report stage, pure: the status from the registry's verdict and the
//! child AppRegistration, and which event (if any) the change deserves.

use kube::ResourceExt;
use kube::runtime::events::EventType;

use crate::api::appregistration::ConsentState;
use crate::api::bankclient::RoleAssignmentStatus;
use crate::api::{AppRegistration, BankClient, BankClientStatus, Conditions, Text, condition};
use crate::controllers::children::children_readiness;
use crate::controllers::conditions::DesiredCondition;

/// The status (without conditions) and the Ready condition: a BankClient that lost its bankId to
/// `holder` is in Conflict and has no child; otherwise it mirrors its child.
pub fn status(
    obj: &BankClient,
    holder: Option<&str>,
    child: Option<&AppRegistration>,
    api_app_id: Option<String>,
) -> (BankClientStatus, DesiredCondition) {
    let mut status = BankClientStatus {
        observed_generation: obj.metadata.generation,
        secret_name: Some(obj.spec.secret.name.clone()),
        ..BankClientStatus::default()
    };
    let ready = match (holder, child) {
        (Some(holder), _) => DesiredCondition::failed(
            condition::READY,
            "Conflict",
            format!(
                "bankId {} is already claimed by BankClient {holder}; this one is not in the bank-clients registry",
                obj.spec.bank_id
            ),
        ),
        (None, Some(child)) => {
            let child_status = child.status.clone().unwrap_or_default();
            status.app_registration_name = Some(child.name_any());
            status.client_id = child_status.app_id.clone();
            if let Some(cred) = child_status.credentials.first() {
                status.secret_expires_at = cred.expires_at.clone();
                status.next_rotation_at = cred.renew_at.clone();
            }
            status.role_assignment = Some(RoleAssignmentStatus {
                role: obj.spec.api.role.as_str().into(),
                api_app_id: api_app_id.map(Text::from),
                granted: child_status
                    .consent
                    .as_ref()
                    .is_some_and(|c| c.state == ConsentState::Granted),
            });
            children_readiness(&[child])
        }
        (None, None) => unreachable!("a BankClient without conflict always has a child"),
    };
    (status, ready)
}

/// A hash of what a BankClient takes from its child AppRegistration: its generation, deletion and
/// owners, and from its status the observed generation, appId, credentials (expiry, rotation,
/// handover), consent state and Ready condition (`status` and `children_readiness` above, the
/// handover, the registry entry). The child's other status writes (the IDs it records first, what
/// it planned) do not wake the BankClient.
pub fn mirrored_view(child: &AppRegistration) -> u64 {
    let status = child.status.as_ref();
    crate::controllers::wiring::debug_hash(&(
        child.metadata.generation,
        child.metadata.deletion_timestamp.is_some(),
        &child.metadata.owner_references,
        status.map(|s| {
            (
                s.observed_generation,
                &s.app_id,
                &s.credentials,
                s.consent.as_ref().map(|c| &c.state),
                s.conditions
                    .get(condition::READY)
                    .map(|c| (&c.status, &c.reason, &c.message)),
            )
        }),
    ))
}

/// The event a reconcile publishes: Ready when it became ready, Conflict when it newly lost its
/// bankId; nothing when the condition did not change.
pub fn event(
    obj: &BankClient,
    previous: &Conditions,
    ready: &DesiredCondition,
    status: &BankClientStatus,
    in_conflict: bool,
) -> Option<(EventType, &'static str, String)> {
    if ready.status && !previous.is_true(condition::READY) {
        Some((
            EventType::Normal,
            "Ready",
            format!(
                "bank {} has clientId {} in the bank-clients registry",
                obj.spec.bank_id,
                status.client_id.as_deref().unwrap_or("?")
            ),
        ))
    } else if in_conflict
        && previous.get(condition::READY).map(|c| c.reason.as_str()) != Some("Conflict")
    {
        Some((EventType::Warning, "Conflict", ready.message.clone()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppRegistrationStatus;
    use crate::controllers::conditions::merge_conditions;

    fn bank_client() -> BankClient {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
            "metadata": {"name": "nordbank", "namespace": "banks", "generation": 3},
            "spec": {"bankId": "nordbank", "api": {"appRef": {"name": "api"}, "role": "System"},
                     "secret": {"name": "nordbank-credentials"}}
        }))
        .unwrap()
    }

    fn child(app_id: Option<&str>, ready: bool) -> AppRegistration {
        let mut app: AppRegistration = serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": "bankclient-nordbank", "namespace": "banks", "generation": 1},
            "spec": {"displayName": "x"}
        }))
        .unwrap();
        let condition = DesiredCondition::new(condition::READY, ready, "Ready", "m");
        app.status = Some(AppRegistrationStatus {
            app_id: app_id.map(Text::from),
            observed_generation: Some(1),
            conditions: merge_conditions(
                &Default::default(),
                &[condition],
                Some(1),
                jiff::Timestamp::UNIX_EPOCH,
            ),
            ..Default::default()
        });
        app
    }

    #[test]
    fn only_a_change_the_parent_mirrors_changes_the_childs_view() {
        let settled = child(Some("app-1"), true);
        let view = mirrored_view(&settled);
        // The IDs and other status the child records for itself: the same view.
        let mut recorded = settled.clone();
        if let Some(s) = recorded.status.as_mut() {
            s.object_id = Some("object-1".into());
            s.service_principal_id = Some("sp-1".into());
            s.unique_name = Some("bankclient-nordbank".into());
        }
        assert_eq!(mirrored_view(&recorded), view);
        // What the parent mirrors: another view.
        assert_ne!(mirrored_view(&child(Some("app-1"), false)), view);
        assert_ne!(mirrored_view(&child(Some("app-2"), true)), view);
        assert_ne!(mirrored_view(&child(None, true)), view);
        let mut rotated = settled.clone();
        if let Some(s) = rotated.status.as_mut() {
            s.credentials = vec![
                serde_json::from_value(serde_json::json!({"secretName": "nordbank-credentials"}))
                    .unwrap(),
            ];
        }
        assert_ne!(mirrored_view(&rotated), view);
        let mut respecced = settled;
        respecced.metadata.generation = Some(2);
        assert_ne!(mirrored_view(&respecced), view);
    }

    #[test]
    fn status_mirrors_the_child_or_reports_the_conflict() {
        let bc = bank_client();
        // (case, holder, child, api appId, expected Ready, reason, clientId)
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a AppRegistration>,
            Option<&'a str>,
            (bool, &'a str, Option<&'a str>),
        );
        let ready_child = child(Some("app-1"), true);
        let waiting_child = child(None, false);
        let cases: [Row; 3] = [
            (
                "ready child",
                None,
                Some(&ready_child),
                Some("api-1"),
                (true, "Ready", Some("app-1")),
            ),
            (
                "child not ready",
                None,
                Some(&waiting_child),
                None,
                (false, "Ready", None),
            ),
            (
                "conflict",
                Some("oldbank"),
                None,
                None,
                (false, "Conflict", None),
            ),
        ];
        for (case, holder, child, api_app_id, (ready, reason, client_id)) in cases {
            let (status, condition) = status(&bc, holder, child, api_app_id.map(String::from));
            assert_eq!(condition.status, ready, "{case}");
            assert_eq!(condition.reason, reason, "{case}");
            assert_eq!(status.client_id.as_deref(), client_id, "{case}");
            assert_eq!(status.observed_generation, Some(3), "{case}");
            assert_eq!(
                status.secret_name.as_deref(),
                Some("nordbank-credentials"),
                "{case}"
            );
            assert_eq!(status.role_assignment.is_some(), child.is_some(), "{case}");
        }
        let (_, conflict) = status(&bc, Some("oldbank"), None, None);
        assert!(conflict.message.contains("BankClient oldbank"));
    }

    #[test]
    fn a_conflict_is_stalled_and_a_child_still_working_is_reconciling() {
        use crate::controllers::kstatus::kstatus_conditions;
        let bc = bank_client();
        let ready_child = child(Some("app-1"), true);
        let waiting_child = child(None, false);
        // (case, holder, child) -> (Reconciling, Stalled)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a AppRegistration>,
            (bool, bool),
        );
        let cases: [Case; 3] = [
            ("ready", None, Some(&ready_child), (false, false)),
            ("child working", None, Some(&waiting_child), (true, false)),
            ("conflict", Some("oldbank"), None, (false, true)),
        ];
        for (case, holder, child, expected) in cases {
            let (_, ready) = status(&bc, holder, child, None);
            let [reconciling, stalled] = kstatus_conditions(&ready);
            assert_eq!((reconciling.status, stalled.status), expected, "{case}");
        }
    }

    #[test]
    fn events_only_on_a_change() {
        let bc = bank_client();
        let ready = DesiredCondition::ok(condition::READY, "Ready", "ok");
        let conflict = DesiredCondition::failed(condition::READY, "Conflict", "taken");
        let none = Conditions::default();
        let was = |c: &DesiredCondition| {
            merge_conditions(
                &none,
                std::slice::from_ref(c),
                Some(1),
                jiff::Timestamp::UNIX_EPOCH,
            )
        };
        let status = BankClientStatus {
            client_id: Some("app-1".into()),
            ..Default::default()
        };
        let (type_, reason, note) = event(&bc, &none, &ready, &status, false).unwrap();
        assert_eq!((type_, reason), (EventType::Normal, "Ready"));
        assert!(note.contains("clientId app-1"));
        assert!(event(&bc, &was(&ready), &ready, &status, false).is_none());
        let (type_, reason, _) = event(&bc, &none, &conflict, &status, true).unwrap();
        assert_eq!((type_, reason), (EventType::Warning, "Conflict"));
        assert!(event(&bc, &was(&conflict), &conflict, &status, true).is_none());
    }
}
