//! Quiet resyncs: a resync of an AppRegistration that nothing changed for, decided without
//! reading its application or service principal again.
//!
//! A full reconcile that wrote nothing to Graph leaves a [`Memo`] with its far requeue: a mark in
//! the tenant's change feed taken before it read Graph (`graph::ChangeFeed`), a hash of what it
//! planned from in Kubernetes, a hash of what it read from Graph that delta queries do not track,
//! and when something time-based (a renewal) is due. When that requeue brings the resource back
//! (and nothing else did: any other trigger finds no memo), the resync is quiet if
//! - nothing time-based is due and fewer than [`MAX_STREAK`] resyncs in a row were quiet;
//! - the change feed says neither the application nor its service principal changed since;
//! - the spec, annotations, status, referenced AppRegistrations and policies hash the same;
//! - the collections delta does not track, read again (each only when the spec manages it: app
//!   role assignments for a BankClient's child, so one read), hash the same.
//!
//! Otherwise it is a full reconcile, as before. A memo also lets the change feed wake the resource
//! early: a round that reports its application or service principal after the memo's read was
//! covered brings it back now, for a full reconcile (`Context::follow_changes`), so drift behind
//! the operator's back is repaired within a minute or so rather than at the next resync. One of
//! the operator's Secrets changing drops the memo (`forget_memo`), as does a change to any
//! EntraPolicy. A full resync still comes every [`MAX_STREAK`] + 1 resyncs, for what neither
//! delta nor the hashes cover (a resource API's role removed behind the operator's back, a change
//! lost by Entra's change tracking).

use jiff::Timestamp;

use crate::api::AppRegistration;
use crate::api::appregistration::AppRegistrationStatus;
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::controllers::later::Memo;
use crate::controllers::wiring::debug_hash;
use crate::graph::{ChangeFeed, Mark};

use super::observe::{PolicyFacts, observe_principal_names, observe_untracked};
use super::observed::Observed;
use super::references::ResolvedReferences;

/// Quiet resyncs in a row before a full one (with the default hourly resync: a full read of every
/// resource once a day).
pub(super) const MAX_STREAK: u8 = 23;

/// A renewal due within this is not waited for quietly.
const DUE_MARGIN: i64 = 5;

/// What a reconcile plans from in Kubernetes: the spec (its generation), the annotations (a
/// rotation asked for), the status as written, the referenced AppRegistrations and the policies.
pub(super) fn inputs_hash(
    obj: &AppRegistration,
    status: Option<&AppRegistrationStatus>,
    references: &ResolvedReferences,
    policy: &PolicyFacts,
) -> u64 {
    // The conditions in one order: the API server keeps the order of the first apply, the
    // reconcile computes them in its own.
    let status = status.map(|s| AppRegistrationStatus {
        conditions: s.conditions.sorted(),
        ..s.clone()
    });
    debug_hash(&(
        obj.metadata.generation,
        &obj.metadata.annotations,
        &status,
        references,
        &policy.view,
        &policy.claimed_elsewhere,
    ))
}

/// What was read from Graph that delta queries do not track.
pub(super) fn untracked_hash(observed: &Observed) -> u64 {
    debug_hash(&(
        &observed.owner_principal_names,
        &observed.owners,
        &observed.federated_credentials,
        &observed.app_role_assignments,
        &observed.oauth2_permission_grants,
    ))
}

/// The memo a full reconcile leaves, or `None` when the next resync must be full anyway (no mark:
/// the change feed is not tracking; the reconcile wrote to Graph; no application or service
/// principal recorded).
pub(super) fn memo_after_full(
    feed: &ChangeFeed,
    mark: Option<Mark>,
    wrote: bool,
    inputs: u64,
    status: &AppRegistrationStatus,
    observed: &Observed,
    due: Option<Timestamp>,
) -> Option<Memo> {
    let mark = mark.filter(|_| !wrote)?;
    let app = status.object_id.as_deref()?;
    let sp = status.service_principal_id.as_deref()?;
    Some(Memo {
        mark,
        ids: [feed.id_key(app), feed.id_key(sp)],
        inputs,
        untracked: untracked_hash(observed),
        due: due.map(|t| t.as_second()),
        streak: 0,
    })
}

/// Logs why a resync is a full one (debug: one line per resource and resync).
fn full(obj: &AppRegistration, why: &str) -> Option<Memo> {
    use kube::ResourceExt;
    tracing::debug!(
        appregistration = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        why,
        "resync reads Graph in full"
    );
    None
}

/// Whether this resync is quiet: the memo the far requeue handed back still holds. Returns the
/// memo for the next resync, or `None` (a full reconcile follows). Reads from Graph only the
/// collections delta does not track, and only when everything else already holds.
pub(super) async fn check(
    obj: &AppRegistration,
    memo: Memo,
    references: &ResolvedReferences,
    policy: &PolicyFacts,
    ctx: &Context,
) -> Result<Option<Memo>, Error> {
    let now = Timestamp::now().as_second();
    if memo.streak >= MAX_STREAK || memo.due.is_some_and(|due| now + DUE_MARGIN >= due) {
        return Ok(full(obj, "a full resync or a renewal is due"));
    }
    let status = obj.status.as_ref();
    let (Some(object_id), Some(sp_id)) = (
        status.and_then(|s| s.object_id.as_deref()),
        status.and_then(|s| s.service_principal_id.as_deref()),
    ) else {
        return Ok(full(obj, "no application or service principal recorded"));
    };
    if !ctx.changes.unchanged_since(memo.mark, &[object_id, sp_id]) {
        return Ok(full(obj, "delta reports a change, or has not caught up"));
    }
    if inputs_hash(obj, status, references, policy) != memo.inputs {
        return Ok(full(
            obj,
            "the spec, status, references or policies changed",
        ));
    }
    let mut observed = Observed::default();
    observe_principal_names(obj, ctx, &mut observed).await?;
    let mut federated_ids = Default::default();
    observe_untracked(
        obj,
        ctx,
        object_id,
        Some(sp_id),
        &mut observed,
        &mut federated_ids,
    )
    .await?;
    if untracked_hash(&observed) != memo.untracked {
        return Ok(full(
            obj,
            "owners, federated credentials, assignments or grants changed",
        ));
    }
    Ok(Some(Memo {
        streak: memo.streak + 1,
        ..memo
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, Conditions};

    fn condition(type_: &str, status: &str) -> Condition {
        serde_json::from_value(serde_json::json!({
            "type": type_, "status": status, "reason": "R", "message": "m",
            "lastTransitionTime": "2026-12-04T15:11:50Z"
        }))
        .expect("a condition")
    }

    #[test]
    fn conditions_in_another_order_are_the_same_conditions_and_the_same_inputs() {
        let obj: AppRegistration = serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": "orders", "namespace": "team-a", "generation": 1},
            "spec": {"displayName": "orders"}
        }))
        .unwrap();
        let status = |conditions: Vec<Condition>| AppRegistrationStatus {
            conditions: Conditions(conditions),
            ..Default::default()
        };
        let stored = status(vec![
            condition("Ready", "True"),
            condition("Synced", "True"),
        ]);
        let computed = status(vec![
            condition("Synced", "True"),
            condition("Ready", "True"),
        ]);
        let changed = status(vec![
            condition("Synced", "False"),
            condition("Ready", "True"),
        ]);
        assert_eq!(stored.conditions, computed.conditions);
        assert_ne!(stored.conditions, changed.conditions);
        assert_ne!(
            stored.conditions,
            Conditions(vec![condition("Ready", "True")])
        );
        let policy = PolicyFacts {
            view: Default::default(),
            claimed_elsewhere: Default::default(),
        };
        let refs = ResolvedReferences::default();
        let hash = |s: &AppRegistrationStatus| inputs_hash(&obj, Some(s), &refs, &policy);
        assert_eq!(hash(&stored), hash(&computed));
        assert_ne!(hash(&stored), hash(&changed));
    }
}
