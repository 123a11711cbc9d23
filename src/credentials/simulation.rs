//! A small in-memory world (Graph's password credentials, the Secret, the persisted status entry,
//! the operator process's memory) driven the way the controller drives the state machine, with a
//! crash injected before or after every step of a rotation. After each step and at the end it
//! checks the two promises of the design: once the Secret held a working value it always does,
//! and at rest every managed credential is current or previous.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;

use super::*;
use crate::api::appregistration::{PasswordCredentialSpec, PasswordCredentialStatus};
use crate::api::duration::{Duration, Overlap};
use crate::graph::SecretString;

const SECRET_NAME: &str = "payments-secret";

#[derive(Clone, Debug)]
struct GraphCredential {
    key_id: String,
    display_name: Option<String>,
    value: String,
    start: Timestamp,
    end: Timestamp,
}

#[derive(Clone, Debug)]
struct World {
    now: Timestamp,
    graph: Vec<GraphCredential>,
    secret: Option<Secret>,
    status: Option<PasswordCredentialStatus>,
    annotation: Option<String>,
    spec: PasswordCredentialSpec,
    counter: u32,
    /// Process memory: the last addPassword response. Lost in a crash.
    added: Option<AddedPassword>,
    /// Whether the Secret has ever held a working value.
    secret_was_working: bool,
    add_calls: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashPoint {
    /// The process dies before the step has any effect.
    Before,
    /// The step takes effect, the process dies before it sees the response or persists status.
    AfterEffect,
}

fn spec(lifetime: u64, renew_before: u64, overlap: Overlap) -> PasswordCredentialSpec {
    PasswordCredentialSpec {
        secret_name: SECRET_NAME.to_string(),
        lifetime: Duration::from_secs(lifetime),
        renew_before: Duration::from_secs(renew_before),
        overlap,
    }
}

fn context() -> SecretContext {
    SecretContext {
        app_registration: "payments".into(),
        namespace: "bookme".into(),
        client_id: "client".into(),
        tenant_id: "tenant".into(),
        authority_host: "https://login.example".into(),
    }
}

impl World {
    fn new(spec: PasswordCredentialSpec) -> Self {
        World {
            now: "2030-01-01T00:00:00Z".parse().unwrap(),
            graph: Vec::new(),
            secret: None,
            status: None,
            annotation: None,
            spec,
            counter: 0,
            added: None,
            secret_was_working: false,
            add_calls: 0,
        }
    }

    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    fn with_unmanaged(mut self) -> Self {
        self.graph.push(GraphCredential {
            key_id: "unmanaged-key".into(),
            display_name: Some("created in the portal".into()),
            value: "zzz-portal".into(),
            start: self.now,
            end: self.now + SignedDuration::from_hours(24 * 365),
        });
        self
    }

    fn observed_graph(&self) -> Vec<ObservedPassword> {
        self.graph
            .iter()
            .map(|c| ObservedPassword {
                key_id: c.key_id.clone(),
                display_name: c.display_name.clone(),
                hint: Some(c.value.chars().take(HINT_LEN).collect()),
                start: Some(c.start),
                end: c.end,
            })
            .collect()
    }

    fn observed_secret(&self) -> Option<ObservedSecret> {
        self.secret.as_ref().map(ObservedSecret::from_secret)
    }

    fn secret_data(&self, key: &str) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let bytes = secret.data.as_ref()?.get(key)?;
        Some(String::from_utf8(bytes.0.clone()).unwrap())
    }

    /// The Secret's value is accepted by the token endpoint: a credential with its key ID and
    /// value exists and has not expired.
    fn secret_works(&self) -> bool {
        let (Some(key_id), Some(value)) = (
            self.secret_data(KEY_KEY_ID),
            self.secret_data(KEY_CLIENT_SECRET),
        ) else {
            return false;
        };
        self.graph
            .iter()
            .any(|c| c.key_id == key_id && c.value == value && c.end > self.now)
    }

    fn managed(&self) -> impl Iterator<Item = &GraphCredential> {
        self.graph.iter().filter(|c| {
            c.display_name
                .as_deref()
                .and_then(parse_managed_display_name)
                .is_some()
        })
    }

    fn plan(&mut self) -> CredentialPlan {
        let graph = self.observed_graph();
        let secret = self.observed_secret();
        let nonce = format!("nonce{}", self.next());
        plan_password_rotation(&RotationInput {
            spec: &self.spec,
            status: self.status.as_ref(),
            graph: &graph,
            secret: secret.as_ref(),
            rotate_annotation: self.annotation.as_deref(),
            added: self.added.as_ref(),
            fresh_nonce: &nonce,
            now: self.now,
        })
        .expect("status written by the state machine is readable")
    }

    fn add_password(
        &mut self,
        display_name: String,
        start: Timestamp,
        end: Timestamp,
    ) -> AddedPassword {
        let n = self.next();
        self.add_calls += 1;
        // Distinct three-character prefixes, so hints tell credentials apart.
        let value = format!("{n:03}~secret-value-{n}");
        let key_id = format!("key-{n}");
        self.graph.push(GraphCredential {
            key_id: key_id.clone(),
            display_name: Some(display_name.clone()),
            value: value.clone(),
            start,
            end,
        });
        AddedPassword {
            key_id,
            display_name,
            hint: Some(value.chars().take(HINT_LEN).collect()),
            start: Some(start),
            end,
            value: SecretString::new(value),
        }
    }

    /// Executes one plan as the controller would; returns false when the plan was Idle.
    fn execute(&mut self, plan: CredentialPlan, crash: Option<CrashPoint>) -> bool {
        if crash == Some(CrashPoint::Before) {
            self.added = None;
            return true;
        }
        let status_write = matches!(
            plan.action,
            CredentialAction::RecordPending { .. }
                | CredentialAction::CompleteRotation { .. }
                | CredentialAction::UpdateStatus
        );
        match plan.action {
            CredentialAction::Idle { .. } => return false,
            CredentialAction::RecordPending { .. }
            | CredentialAction::CompleteRotation { .. }
            | CredentialAction::UpdateStatus => {}
            CredentialAction::AddPassword {
                display_name,
                start,
                end,
            } => {
                let added = self.add_password(display_name, start, end);
                self.added = Some(added);
            }
            CredentialAction::WriteSecret { credential } => {
                self.secret = Some(render_secret(
                    &context(),
                    SECRET_NAME,
                    &SecretCredential {
                        key_id: &credential.key_id,
                        expires_at: credential.end,
                        value: &credential.value,
                    },
                ));
            }
            CredentialAction::RemovePassword { key_id } => {
                assert_ne!(
                    key_id, "unmanaged-key",
                    "unmanaged credentials are left alone"
                );
                self.graph.retain(|c| c.key_id != key_id);
            }
        }
        match crash {
            Some(CrashPoint::AfterEffect) => {
                self.added = None;
                if status_write {
                    self.status = Some(plan.status);
                }
            }
            _ => self.status = Some(plan.status),
        }
        true
    }

    fn check_secret_keeps_working(&mut self, context: &str) {
        if self.secret_was_working {
            assert!(
                self.secret_works(),
                "{context}: the Secret held a working value and lost it\n{self:#?}"
            );
        }
        self.secret_was_working |= self.secret_works();
    }

    /// Runs steps until Idle, crashing at step `crash_at` if given. Returns the number of steps.
    fn settle(&mut self, crash_at: Option<(usize, CrashPoint)>, label: &str) -> usize {
        self.settle_with_crashes(crash_at.as_slice(), label)
    }

    /// Runs steps until Idle, crashing at each listed step. Returns the number of steps.
    fn settle_with_crashes(&mut self, crashes: &[(usize, CrashPoint)], label: &str) -> usize {
        for step in 0..50 {
            let plan = self.plan();
            let crash = crashes
                .iter()
                .find(|(at, _)| *at == step)
                .map(|(_, point)| *point);
            if !self.execute(plan, crash) {
                return step;
            }
            self.check_secret_keeps_working(&format!("{label}, step {step}, crash {crash:?}"));
            self.now += SignedDuration::from_secs(1);
        }
        panic!("{label}: did not settle in 50 steps\n{self:#?}");
    }

    fn check_at_rest(&self, label: &str) {
        let status = self.status.as_ref().expect("status written");
        assert!(status.pending.is_none(), "{label}: pending left over");
        let current = status.key_id.as_deref().expect("a current credential");
        assert!(
            self.secret_works(),
            "{label}: the Secret does not work\n{self:#?}"
        );
        assert_eq!(
            self.secret_data(KEY_KEY_ID).as_deref(),
            Some(current),
            "{label}: the Secret holds the current credential"
        );
        let previous = status.previous.as_ref().map(|p| p.key_id.as_str());
        for credential in self.managed() {
            let key = Some(credential.key_id.as_str());
            assert!(
                key == Some(current) || key == previous,
                "{label}: orphaned credential {}\n{self:#?}",
                credential.key_id
            );
        }
        assert!(
            self.graph.iter().any(|c| c.key_id == "unmanaged-key"),
            "{label}: the unmanaged credential is untouched"
        );
    }
}

/// A world at rest with a credential already issued, at `now`.
fn settled_world(spec: PasswordCredentialSpec) -> World {
    let mut world = World::new(spec).with_unmanaged();
    world.settle(None, "setup");
    world.check_at_rest("setup");
    world
}

/// Runs `scenario` to rest without a crash, then once per step and crash point, checking the
/// invariants every time.
fn crash_at_every_step(name: &str, prepare: impl Fn() -> World) {
    let mut clean = prepare();
    let steps = clean.settle(None, name);
    clean.check_at_rest(name);
    assert!(steps > 0, "{name}: scenario does nothing");
    for step in 0..steps {
        for point in [CrashPoint::Before, CrashPoint::AfterEffect] {
            let label = format!("{name}, crash {point:?} at step {step}");
            let mut world = prepare();
            world.settle(Some((step, point)), &label);
            world.check_at_rest(&label);
        }
    }
}

fn default_spec() -> PasswordCredentialSpec {
    spec(3600, 600, Overlap::For(Duration::from_secs(300)))
}

#[test]
fn initial_issue_survives_a_crash_at_every_step() {
    crash_at_every_step("initial", || World::new(default_spec()).with_unmanaged());
}

#[test]
fn due_rotation_survives_a_crash_at_every_step() {
    crash_at_every_step("due", || {
        let mut world = settled_world(default_spec());
        world.now += SignedDuration::from_secs(3000);
        world
    });
}

#[test]
fn annotation_rotation_survives_a_crash_at_every_step() {
    crash_at_every_step("annotation", || {
        let mut world = settled_world(default_spec());
        world.annotation = Some("2030-01-01".into());
        world
    });
}

#[test]
fn deleted_secret_survives_a_crash_at_every_step() {
    crash_at_every_step("deleted secret", || {
        let mut world = settled_world(default_spec());
        world.secret = None;
        world.secret_was_working = false;
        world
    });
}

#[test]
fn edited_secret_survives_a_crash_at_every_step() {
    crash_at_every_step("edited secret", || {
        let mut world = settled_world(default_spec());
        let secret = world.secret.as_mut().unwrap();
        secret.data.as_mut().unwrap().insert(
            KEY_CLIENT_SECRET.into(),
            k8s_openapi::ByteString(b"typed-by-hand".to_vec()),
        );
        world.secret_was_working = false;
        world
    });
}

#[test]
fn credential_deleted_in_portal_survives_a_crash_at_every_step() {
    crash_at_every_step("credential missing", || {
        let mut world = settled_world(default_spec());
        let current = world.status.as_ref().unwrap().key_id.clone().unwrap();
        world.graph.retain(|c| c.key_id != current);
        world.now += REPLICATION_GRACE;
        world.secret_was_working = false;
        world
    });
}

#[test]
fn rotation_with_a_previous_and_an_orphan_survives_a_crash_at_every_step() {
    crash_at_every_step("previous and orphan", || {
        let mut world = settled_world(spec(3600, 600, Overlap::UntilExpiry));
        world.annotation = Some("first".into());
        world.settle(None, "first rotation");
        assert!(world.status.as_ref().unwrap().previous.is_some());
        world.annotation = Some("second".into());
        let now = world.now;
        world.add_password(
            managed_display_name(SECRET_NAME, "crashed-long-ago"),
            now,
            now + SignedDuration::from_secs(3600),
        );
        world
    });
}

#[test]
fn full_lifecycle_with_second_scale_durations() {
    // lifetime 60s, renew 20s before expiry, previous kept 10s.
    let mut world =
        World::new(spec(60, 20, Overlap::For(Duration::from_secs(10)))).with_unmanaged();
    world.settle(None, "initial");
    world.check_at_rest("initial");
    assert_eq!(world.add_calls, 1);
    let first = world.status.clone().unwrap();
    let first_key = first.key_id.clone().unwrap();
    let first_expiry: Timestamp = first.expires_at.clone().unwrap().parse().unwrap();

    // Idle until the renewal time, then exactly one rotation.
    let plan = world.plan();
    let renew_at: Timestamp = first.renew_at.clone().unwrap().parse().unwrap();
    assert_eq!(
        plan.action,
        CredentialAction::Idle {
            requeue_at: Some(renew_at)
        }
    );
    assert_eq!(renew_at, first_expiry - SignedDuration::from_secs(20));

    world.now = renew_at;
    world.settle(None, "rotation");
    world.check_at_rest("rotation");
    assert_eq!(world.add_calls, 2);
    let second = world.status.clone().unwrap();
    let previous = second
        .previous
        .clone()
        .expect("the first credential is kept");
    assert_eq!(previous.key_id, first_key);
    let revoke_at: Timestamp = previous.revoke_at.parse().unwrap();
    assert!(revoke_at <= first_expiry);
    assert!(revoke_at > world.now - SignedDuration::from_secs(10));

    // Requeue at the earlier of revocation and the next renewal.
    let plan = world.plan();
    assert_eq!(
        plan.action,
        CredentialAction::Idle {
            requeue_at: Some(revoke_at)
        }
    );

    world.now = revoke_at;
    world.settle(None, "revoke");
    world.check_at_rest("revoke");
    assert!(world.status.as_ref().unwrap().previous.is_none());
    assert!(!world.graph.iter().any(|c| c.key_id == first_key));
    assert_eq!(world.add_calls, 2);
    assert_eq!(count_unmanaged(&world.observed_graph()), 1);
}

#[test]
fn each_annotation_value_rotates_exactly_once() {
    let mut world = settled_world(default_spec());
    let adds = world.add_calls;
    world.annotation = Some("a".into());
    world.settle(None, "a");
    assert_eq!(world.add_calls, adds + 1);
    assert_eq!(
        world.status.as_ref().unwrap().rotate_token.as_deref(),
        Some("a")
    );
    world.settle(None, "a again");
    world.now += SignedDuration::from_secs(60);
    world.settle(None, "a later");
    assert_eq!(
        world.add_calls,
        adds + 1,
        "the same value does not rotate again"
    );
    world.annotation = None;
    world.settle(None, "annotation removed");
    assert_eq!(
        world.add_calls,
        adds + 1,
        "removing the annotation does not rotate"
    );
    world.annotation = Some("b".into());
    world.settle(None, "b");
    assert_eq!(world.add_calls, adds + 2);
    world.check_at_rest("b");
}

#[test]
fn annotation_present_at_creation_is_honoured_by_the_first_credential() {
    let mut world = World::new(default_spec()).with_unmanaged();
    world.annotation = Some("x".into());
    world.settle(None, "initial");
    world.settle(None, "again");
    assert_eq!(world.add_calls, 1);
}

#[test]
fn lost_status_adopts_the_credential_the_secret_holds() {
    let mut world = settled_world(default_spec());
    let key = world.status.as_ref().unwrap().key_id.clone();
    world.status = None;
    let plan = world.plan();
    assert_eq!(plan.action, CredentialAction::UpdateStatus);
    assert_eq!(plan.reason, CredentialReason::Adopted);
    world.settle(None, "adopt");
    world.check_at_rest("adopt");
    assert_eq!(world.status.as_ref().unwrap().key_id, key);
    assert_eq!(world.add_calls, 1, "no rotation");
}

#[test]
fn secret_written_before_replication_is_awaited_not_replaced() {
    // Crash after the Secret write; on restart, Graph's read replica does not list the new
    // credential yet. Rotating again would replace a Secret that works.
    let mut world = settled_world(default_spec());
    world.annotation = Some("go".into());
    for step in 0.. {
        assert!(step < 50, "no WriteSecret step\n{world:#?}");
        let plan = world.plan();
        let write = matches!(plan.action, CredentialAction::WriteSecret { .. });
        world.execute(plan, write.then_some(CrashPoint::AfterEffect));
        if write {
            break;
        }
    }
    let new_key = world.secret_data(KEY_KEY_ID).unwrap();
    let hidden: Vec<GraphCredential> = world.graph.clone();
    world.graph.retain(|c| c.key_id != new_key);
    let plan = world.plan();
    assert_eq!(plan.reason, CredentialReason::WaitingForReplication);
    assert!(matches!(plan.action, CredentialAction::Idle { .. }));
    world.graph = hidden;
    world.settle(None, "replicated");
    world.check_at_rest("replicated");
    assert_eq!(
        world.status.as_ref().unwrap().key_id.as_deref(),
        Some(new_key.as_str())
    );
}

#[test]
fn rotation_survives_two_crashes_at_any_pair_of_steps() {
    let prepare = || {
        let mut world = settled_world(default_spec());
        world.now += SignedDuration::from_secs(3000);
        world
    };
    let steps = prepare().settle(None, "clean");
    for first in 0..steps {
        // The recovery after a crash takes extra steps; crash during those too.
        for second in first + 1..steps + 4 {
            for points in [
                (CrashPoint::AfterEffect, CrashPoint::AfterEffect),
                (CrashPoint::AfterEffect, CrashPoint::Before),
                (CrashPoint::Before, CrashPoint::AfterEffect),
            ] {
                let label = format!("crashes {points:?} at steps {first} and {second}");
                let mut world = prepare();
                world.settle_with_crashes(&[(first, points.0), (second, points.1)], &label);
                world.check_at_rest(&label);
            }
        }
    }
}
