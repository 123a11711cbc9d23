//! A BankClient's secret handover, pure: after a rotation of the child's client secret the
//! previous secret stays valid for a while (the overlap, `UntilExpiry` by default) and the bank
//! switches to the new one. This room computes the `status.handover` the BankClient shows from its
//! child's credential status, whether a confirmation annotation is stale, the events a change
//! deserves, and the notification's body. Nothing here ever sees a secret value: the child's status
//! holds key IDs and times only.
//!
//! The confirmation itself is carried out by the child's credential state machine
//! (`credentials::rotation`, reason `HandoverConfirmed`): the BankClient copies its
//! `entra.bookme.io/handover-confirmed` annotation onto its child AppRegistration (`plan.rs`).

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use crate::api::appregistration::PasswordCredentialStatus;
use crate::api::bankclient::{HandoverState, HandoverStatus};
use crate::api::{BankClient, BankClientStatus, HANDOVER_CONFIRMED_ANNOTATION};
use crate::webhook::WebhookFormat;

/// The handover in progress, from the child's status entry of the bank's Secret: one exists while
/// a current credential has previous credentials in overlap. `before` is the handover the
/// BankClient showed last; its `notifiedAt` is kept for the same new key ID.
pub fn handover_status(
    credential: &PasswordCredentialStatus,
    before: Option<&HandoverStatus>,
) -> Option<HandoverStatus> {
    let new_key_id = credential.key_id.clone()?;
    let previous_valid_until = credential
        .previous
        .iter()
        .filter_map(|p| Some((p.revoke_at.parse::<Timestamp>().ok()?, &p.revoke_at)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, s)| s.clone())?;
    let confirmation = credential
        .handover_confirmed
        .as_ref()
        .filter(|c| c.key_id == new_key_id);
    Some(HandoverStatus {
        state: if confirmation.is_some() {
            HandoverState::Confirmed
        } else {
            HandoverState::AwaitingConfirmation
        },
        previous_key_ids: credential
            .previous
            .iter()
            .map(|p| p.key_id.clone())
            .collect(),
        since: credential.created_at.clone(),
        previous_valid_until,
        confirmed: confirmation.is_some(),
        confirmed_at: confirmation.map(|c| c.confirmed_at.clone()),
        notified_at: before
            .filter(|b| b.new_key_id == new_key_id)
            .and_then(|b| b.notified_at.clone()),
        new_key_id,
    })
}

/// The confirmation annotation's value when it names another key ID than the current secret's
/// (stale: e.g. the previous secret's, or a typo). `None` when there is no annotation, it names
/// the current secret, or there is no current secret to compare with yet.
pub fn ignored_confirmation(
    annotation: Option<&str>,
    current_key_id: Option<&str>,
) -> Option<String> {
    let value = annotation?;
    let current = current_key_id?;
    (!value.trim().eq_ignore_ascii_case(current)).then(|| value.to_string())
}

/// The command a bank's contact runs to confirm the switch to `key_id`.
pub fn confirm_command(obj: &BankClient, key_id: &str) -> String {
    format!(
        "kubectl annotate bankclient {} -n {} {HANDOVER_CONFIRMED_ANNOTATION}={key_id} --overwrite",
        obj.name_any(),
        obj.namespace().unwrap_or_default()
    )
}

/// The events a change of the handover deserves: started (a new key ID), confirmed, completed
/// (no previous secret left), and a warning for a stale confirmation (once per value).
pub fn events(
    obj: &BankClient,
    before: &BankClientStatus,
    after: &BankClientStatus,
) -> Vec<(EventType, &'static str, String)> {
    let mut out = Vec::new();
    let secret = &obj.spec.secret.name;
    let was = before.handover.as_ref();
    match (was, after.handover.as_ref()) {
        (_, Some(now)) if was.is_none_or(|w| w.new_key_id != now.new_key_id) => {
            out.push((
                EventType::Normal,
                "HandoverStarted",
                format!(
                    "Secret {secret} holds a new client secret (keyId {}); the previous one stays valid until {}. Once the bank uses the new one, confirm: {}",
                    now.new_key_id,
                    now.previous_valid_until,
                    confirm_command(obj, &now.new_key_id)
                ),
            ));
            if now.confirmed {
                out.push(confirmed_event(now));
            }
        }
        (Some(w), Some(now)) if now.confirmed && !w.confirmed => out.push(confirmed_event(now)),
        (Some(w), None) => out.push((
            EventType::Normal,
            "HandoverCompleted",
            format!(
                "The previous client secret of Secret {secret} ({}) is revoked; only keyId {} works now",
                w.previous_key_ids.join(", "),
                w.new_key_id
            ),
        )),
        _ => {}
    }
    if let Some(value) = &after.ignored_confirmation
        && before.ignored_confirmation.as_ref() != Some(value)
    {
        out.push((
            EventType::Warning,
            "StaleHandoverConfirmation",
            format!(
                "{HANDOVER_CONFIRMED_ANNOTATION}={value} does not name the current client secret of Secret {secret}{}; ignored",
                after
                    .handover
                    .as_ref()
                    .map(|h| format!(" (keyId {})", h.new_key_id))
                    .unwrap_or_default()
            ),
        ));
    }
    out
}

fn confirmed_event(now: &HandoverStatus) -> (EventType, &'static str, String) {
    (
        EventType::Normal,
        "HandoverConfirmed",
        format!(
            "The bank confirmed keyId {}; the previous client secret is revoked at {}",
            now.new_key_id, now.previous_valid_until
        ),
    )
}

/// The notification of a handover that started, in the webhook's format. Names the BankClient,
/// its namespace, bankId, client ID, the new key ID and until when the previous secret works,
/// and how to confirm; never a secret value. `handoverId` is stable per handover, so a receiver
/// can drop the rare repeat (a crash between the delivery and the status write that records it).
pub fn payload(
    format: WebhookFormat,
    obj: &BankClient,
    status: &BankClientStatus,
    handover: &HandoverStatus,
) -> Value {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let bank_id = &obj.spec.bank_id;
    let client_id = status.client_id.clone().unwrap_or_default();
    let command = confirm_command(obj, &handover.new_key_id);
    match format {
        WebhookFormat::Json => json!({
            "event": "handover.started",
            "handoverId": format!("{namespace}/{name}/{}", handover.new_key_id),
            "bankClient": {"namespace": namespace, "name": name},
            "bankId": bank_id,
            "clientId": client_id,
            "secretName": obj.spec.secret.name,
            "newKeyId": handover.new_key_id,
            "since": handover.since,
            "previousKeyIds": handover.previous_key_ids,
            "previousValidUntil": handover.previous_valid_until,
            "confirm": {
                "annotation": HANDOVER_CONFIRMED_ANNOTATION,
                "value": handover.new_key_id,
                "command": command,
            },
        }),
        WebhookFormat::Teams => {
            let facts = [
                ("BankClient", format!("{namespace}/{name}")),
                ("Bank", bank_id.clone()),
                ("Client ID", client_id.to_string()),
                ("Secret", obj.spec.secret.name.to_string()),
                ("New key ID", handover.new_key_id.clone()),
                ("Issued", handover.since.clone().unwrap_or_default()),
                (
                    "Previous secret valid until",
                    handover.previous_valid_until.clone(),
                ),
            ];
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
                             "text": format!("New client secret for bank {bank_id}")},
                            {"type": "TextBlock", "wrap": true,
                             "text": format!("The Secret {} holds a new client secret. The previous one stops working at {}: switch to the new one before then.", obj.spec.secret.name, handover.previous_valid_until)},
                            {"type": "FactSet", "facts": facts.iter().map(|(t, v)| json!({"title": t, "value": v})).collect::<Vec<_>>()},
                            {"type": "TextBlock", "wrap": true, "text": "Once the bank uses the new secret, confirm the switch (the previous secret is then revoked shortly after):"},
                            {"type": "TextBlock", "wrap": true, "fontType": "Monospace", "text": command},
                        ],
                    },
                }],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::appregistration::{HandoverConfirmation, PreviousCredential};

    fn bank_client() -> BankClient {
        serde_json::from_value(json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
            "metadata": {"name": "nordbank", "namespace": "banks"},
            "spec": {"bankId": "nordbank", "api": {"appRef": {"name": "api"}},
                     "secret": {"name": "nordbank-credentials"}}
        }))
        .unwrap()
    }

    fn credential(previous: &[(&str, &str)], confirmed: Option<&str>) -> PasswordCredentialStatus {
        PasswordCredentialStatus {
            secret_name: "nordbank-credentials".into(),
            key_id: Some("k-new".into()),
            created_at: Some("2030-01-01T00:00:00Z".into()),
            previous: previous
                .iter()
                .map(|(k, at)| PreviousCredential {
                    key_id: k.to_string(),
                    revoke_at: at.to_string(),
                })
                .collect(),
            handover_confirmed: confirmed.map(|k| HandoverConfirmation {
                key_id: k.into(),
                confirmed_at: "2030-01-02T00:00:00Z".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_handover_exists_while_a_previous_secret_is_in_overlap() {
        assert_eq!(handover_status(&credential(&[], None), None), None);
        let h = handover_status(
            &credential(
                &[
                    ("k-1", "2030-03-01T00:00:00Z"),
                    ("k-0", "2030-02-01T00:00:00Z"),
                ],
                None,
            ),
            None,
        )
        .unwrap();
        assert_eq!(h.state, HandoverState::AwaitingConfirmation);
        assert_eq!(h.new_key_id, "k-new");
        assert_eq!(h.previous_key_ids, ["k-1", "k-0"]);
        assert_eq!(
            h.previous_valid_until, "2030-02-01T00:00:00Z",
            "the earliest"
        );
        assert_eq!(h.since.as_deref(), Some("2030-01-01T00:00:00Z"));
        assert!(!h.confirmed);
        // Confirmed for this key; a confirmation recorded for another key does not count.
        let c = credential(&[("k-0", "2030-02-01T00:00:00Z")], Some("k-new"));
        let h = handover_status(&c, None).unwrap();
        assert_eq!((h.state, h.confirmed), (HandoverState::Confirmed, true));
        assert_eq!(h.confirmed_at.as_deref(), Some("2030-01-02T00:00:00Z"));
        let c = credential(&[("k-0", "2030-02-01T00:00:00Z")], Some("k-0"));
        assert!(!handover_status(&c, None).unwrap().confirmed);
        // The notification recorded for this handover is kept; one of an earlier handover is not.
        let before = HandoverStatus {
            new_key_id: "k-new".into(),
            notified_at: Some("2030-01-01T00:00:01Z".into()),
            ..Default::default()
        };
        let c = credential(&[("k-0", "2030-02-01T00:00:00Z")], None);
        assert_eq!(
            handover_status(&c, Some(&before)).unwrap().notified_at,
            before.notified_at
        );
        let earlier = HandoverStatus {
            new_key_id: "k-0".into(),
            ..before
        };
        assert_eq!(
            handover_status(&c, Some(&earlier)).unwrap().notified_at,
            None
        );
    }

    #[test]
    fn a_confirmation_naming_another_key_is_stale() {
        assert_eq!(ignored_confirmation(None, Some("k-new")), None);
        assert_eq!(ignored_confirmation(Some("k-new"), Some("k-new")), None);
        assert_eq!(ignored_confirmation(Some(" K-NEW "), Some("k-new")), None);
        assert_eq!(ignored_confirmation(Some("k-0"), None), None);
        assert_eq!(
            ignored_confirmation(Some("k-0"), Some("k-new")).as_deref(),
            Some("k-0")
        );
    }

    #[test]
    fn events_for_start_confirmation_completion_and_a_stale_confirmation() {
        let bc = bank_client();
        let reasons = |before: &BankClientStatus, after: &BankClientStatus| -> Vec<&str> {
            events(&bc, before, after)
                .into_iter()
                .map(|(_, r, _)| r)
                .collect()
        };
        let none = BankClientStatus::default();
        let awaiting = BankClientStatus {
            handover: handover_status(&credential(&[("k-0", "2030-02-01T00:00:00Z")], None), None)
                .map(Box::new),
            ..Default::default()
        };
        let confirmed = BankClientStatus {
            handover: handover_status(
                &credential(&[("k-0", "2030-01-02T00:05:00Z")], Some("k-new")),
                None,
            )
            .map(Box::new),
            ..Default::default()
        };
        assert_eq!(reasons(&none, &awaiting), ["HandoverStarted"]);
        assert_eq!(reasons(&awaiting, &awaiting), Vec::<&str>::new());
        assert_eq!(reasons(&awaiting, &confirmed), ["HandoverConfirmed"]);
        assert_eq!(reasons(&confirmed, &confirmed), Vec::<&str>::new());
        assert_eq!(reasons(&confirmed, &none), ["HandoverCompleted"]);
        let stale = BankClientStatus {
            ignored_confirmation: Some("k-0".into()),
            ..awaiting.clone()
        };
        let all = events(&bc, &awaiting, &stale);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, EventType::Warning);
        assert_eq!(all[0].1, "StaleHandoverConfirmation");
        assert!(all[0].2.contains("keyId k-new"), "{}", all[0].2);
        assert_eq!(
            reasons(&stale, &stale),
            Vec::<&str>::new(),
            "once per value"
        );
        let started = &events(&bc, &none, &awaiting)[0].2;
        assert!(
            started.contains(
                "kubectl annotate bankclient nordbank -n banks entra.bookme.io/handover-confirmed=k-new"
            ),
            "{started}"
        );
    }

    #[test]
    fn both_payloads_name_the_bank_the_new_key_and_how_to_confirm() {
        let bc = bank_client();
        let status = BankClientStatus {
            client_id: Some("client-1".into()),
            ..Default::default()
        };
        let h =
            handover_status(&credential(&[("k-0", "2030-02-01T00:00:00Z")], None), None).unwrap();
        let body = payload(WebhookFormat::Json, &bc, &status, &h);
        assert_eq!(body["event"], "handover.started");
        assert_eq!(body["handoverId"], "banks/nordbank/k-new");
        assert_eq!(
            body["bankClient"],
            json!({"namespace": "banks", "name": "nordbank"})
        );
        assert_eq!(body["bankId"], "nordbank");
        assert_eq!(body["clientId"], "client-1");
        assert_eq!(body["newKeyId"], "k-new");
        assert_eq!(body["previousValidUntil"], "2030-02-01T00:00:00Z");
        assert_eq!(body["confirm"]["annotation"], HANDOVER_CONFIRMED_ANNOTATION);
        assert_eq!(body["confirm"]["value"], "k-new");

        let card = payload(WebhookFormat::Teams, &bc, &status, &h);
        assert_eq!(card["type"], "message");
        let attachment = &card["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(attachment["content"]["type"], "AdaptiveCard");
        let text = card.to_string();
        for expected in [
            "banks/nordbank",
            "client-1",
            "k-new",
            "2030-02-01T00:00:00Z",
            "entra.bookme.io/handover-confirmed=k-new",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
