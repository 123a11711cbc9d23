//! A small in-memory world (Graph's password credentials, the Secret, the versioned status entry)
//! behind the driver's ports, running the production loop ([`drive_password`]) with faults
//! injected at every write: the process dies before the write takes effect, or after it took
//! effect but before it saw the answer (commit-then-fail). Status reads can lag (a cache behind the
//! operator's own last write) and the fence can be lost (a deposed leader).
//!
//! After every pass and at rest it checks the promises of the design:
//! - once the Secret held a working value it always does;
//! - nothing is removed that the Secret names, that is current, or that is a previous credential
//!   before its revoke time (judged against the latest persisted status, not the one the driver
//!   read);
//! - only this resource's credentials are ever removed;
//! - at rest, every credential of this resource is current or a previous one in its overlap, and
//!   no rotation is pending.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::executor::block_on;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;

use super::*;
use crate::api::appregistration::{PasswordCredentialSpec, PasswordCredentialStatus};
use crate::api::duration::{Duration, Overlap};
use crate::graph::SecretString;

const SECRET_NAME: &str = "payments-secret";
const UID: &str = "5f0c1d2e-0000-4000-8000-00000000aaaa";
const OTHER_UID: &str = "5f0c1d2e-0000-4000-8000-00000000bbbb";

#[derive(Clone, Debug)]
struct GraphCredential {
    key_id: String,
    display_name: Option<String>,
    value: String,
    start: Timestamp,
    end: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashPoint {
    /// The write fails without effect (the process dies before sending it, or the server refused).
    Before,
    /// The write takes effect; the process dies before it sees the answer.
    AfterEffect,
}

#[derive(Debug)]
struct World {
    now: Timestamp,
    graph: Vec<GraphCredential>,
    /// Key IDs that Graph reads do not list yet (replication lag).
    hidden: Vec<String>,
    secret: Option<Secret>,
    /// Every persisted version of the status entry; the version of `history[i]` is `i + 1`.
    history: Vec<Option<PasswordCredentialStatus>>,
    annotation: Option<String>,
    /// The handover-confirmed annotation (confirm delay: 5 s).
    confirmation: Option<String>,
    spec: PasswordCredentialSpec,
    declared: bool,
    counter: u32,
    add_calls: u32,
    /// The Graph write-budget priority each `add` ran under.
    add_priorities: Vec<crate::graph::Priority>,
    /// Whether the Secret has ever held a working value.
    secret_was_working: bool,
    /// Write calls made so far (every port write counts, conflicting ones too).
    writes: usize,
    /// Faults by write index.
    crashes: Vec<(usize, CrashPoint)>,
    /// The next `stale_reads` status reads return the version `lag_by` behind the latest.
    stale_reads: usize,
    lag_by: usize,
    /// The replica lost its lease.
    fenced: bool,
    violations: Vec<String>,
    events: Vec<CredentialEvent>,
}

fn spec(lifetime: u64, renew_before: u64, overlap: Overlap) -> PasswordCredentialSpec {
    PasswordCredentialSpec {
        secret_name: SECRET_NAME.into(),
        lifetime: Duration::from_secs(lifetime),
        renew_before: Duration::from_secs(renew_before),
        overlap,
    }
}

fn default_spec() -> PasswordCredentialSpec {
    spec(3600, 600, Overlap::For(Duration::from_secs(300)))
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

/// The Secret as the controller writes it: labelled and owned by the resource.
fn owned_secret(name: &str, credential: &AddedPassword) -> Secret {
    let mut secret = render_secret(
        &context(),
        name,
        &SecretCredential {
            key_id: &credential.key_id,
            expires_at: credential.end,
            value: &credential.value,
        },
    );
    secret.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "entra.bookme.io/v1alpha1".into(),
            kind: "AppRegistration".into(),
            name: "payments".into(),
            uid: UID.into(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    secret
}

fn crashed() -> PortError {
    PortError::Failed("injected crash".into())
}

impl World {
    fn new(spec: PasswordCredentialSpec) -> Self {
        World {
            now: "2030-01-01T00:00:00Z".parse().unwrap(),
            graph: Vec::new(),
            hidden: Vec::new(),
            secret: None,
            history: vec![None],
            annotation: None,
            confirmation: None,
            spec,
            declared: true,
            counter: 0,
            add_calls: 0,
            add_priorities: Vec::new(),
            secret_was_working: false,
            writes: 0,
            crashes: Vec::new(),
            stale_reads: 0,
            lag_by: 0,
            fenced: false,
            violations: Vec::new(),
            events: Vec::new(),
        }
    }

    fn with_unmanaged(mut self) -> Self {
        let now = self.now;
        self.push_credential(
            "unmanaged-key",
            Some("created in the portal"),
            "zzz-portal",
            now + SignedDuration::from_hours(24 * 365),
        );
        self.push_credential(
            "other-resource-key",
            Some(&managed_display_name(OTHER_UID, SECRET_NAME, "theirs")),
            "yyy-theirs",
            now + SignedDuration::from_hours(24 * 365),
        );
        self
    }

    fn push_credential(
        &mut self,
        key_id: &str,
        display_name: Option<&str>,
        value: &str,
        end: Timestamp,
    ) {
        let start = self.now;
        self.graph.push(GraphCredential {
            key_id: key_id.into(),
            display_name: display_name.map(str::to_string),
            value: value.into(),
            start,
            end,
        });
    }

    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    fn status(&self) -> Option<&PasswordCredentialStatus> {
        self.history.last().and_then(Option::as_ref)
    }

    fn version(&self) -> usize {
        self.history.len()
    }

    /// Replaces the persisted status (a test's hand edit, not the operator's write).
    fn set_status(&mut self, status: Option<PasswordCredentialStatus>) {
        self.history.push(status);
    }

    fn observed_graph(&self) -> Vec<ObservedPassword> {
        self.graph
            .iter()
            .filter(|c| !self.hidden.contains(&c.key_id))
            .map(|c| ObservedPassword {
                key_id: c.key_id.clone(),
                display_name: c.display_name.clone(),
                hint: Some(c.value.chars().take(HINT_LEN).collect()),
                start: Some(c.start),
                end: c.end,
            })
            .collect()
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

    /// This resource's credentials (its UID in the marker, or a legacy marker).
    fn own(&self) -> impl Iterator<Item = &GraphCredential> {
        self.graph.iter().filter(|c| {
            c.display_name
                .as_deref()
                .and_then(parse_managed_display_name)
                .is_some_and(|m| m.owner_uid.is_none() || m.is_owned_by(UID))
        })
    }

    /// Counts a write; `Err` if the injected fault says the write fails before taking effect,
    /// `Ok(true)` if it takes effect and then fails.
    fn write_gate(&mut self) -> Result<bool, PortError> {
        let index = self.writes;
        self.writes += 1;
        self.now += SignedDuration::from_secs(1);
        match self.crashes.iter().find(|(at, _)| *at == index) {
            Some((_, CrashPoint::Before)) => Err(crashed()),
            Some((_, CrashPoint::AfterEffect)) => Ok(true),
            None => Ok(false),
        }
    }

    /// Judges a removal against the truth (the latest persisted status and the Secret).
    fn check_removal(&mut self, key_id: &str) {
        let status = self.status().cloned().unwrap_or_default();
        let mut problems = Vec::new();
        if self.secret_data(KEY_KEY_ID).as_deref() == Some(key_id) {
            problems.push("the Secret names it");
        }
        if status.key_id.as_deref() == Some(key_id) {
            problems.push("it is the current credential");
        }
        if let Some(previous) = status.previous.iter().find(|p| p.key_id == key_id)
            && previous.revoke_at.parse::<Timestamp>().unwrap() > self.now
        {
            problems.push("it is a previous credential before its revoke time");
        }
        let owned = self
            .graph
            .iter()
            .find(|c| c.key_id == key_id)
            .and_then(|c| c.display_name.as_deref())
            .and_then(parse_managed_display_name)
            .is_some_and(|m| m.owner_uid.is_none() || m.is_owned_by(UID));
        if !owned && self.graph.iter().any(|c| c.key_id == key_id) {
            problems.push("it is not this resource's");
        }
        for problem in problems {
            self.violations
                .push(format!("removed {key_id} although {problem}"));
        }
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

    fn check_no_violations(&self, label: &str) {
        assert!(
            self.violations.is_empty(),
            "{label}: {:?}\n{self:#?}",
            self.violations
        );
    }

    fn check_at_rest(&self, label: &str) {
        self.check_no_violations(label);
        let status = self.status().expect("status written");
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
        for credential in self.own() {
            let key = credential.key_id.as_str();
            let in_overlap = status
                .previous
                .iter()
                .any(|p| p.key_id == key && p.revoke_at.parse::<Timestamp>().unwrap() > self.now);
            assert!(
                key == current || in_overlap,
                "{label}: credential {key} is held by nobody\n{self:#?}"
            );
        }
        for untouched in ["unmanaged-key", "other-resource-key"] {
            assert!(
                self.graph.iter().any(|c| c.key_id == untouched),
                "{label}: {untouched} is not this resource's and stays"
            );
        }
    }
}

/// The ports of one process incarnation: the world is shared, the status version it last saw is
/// its own.
struct Sim {
    world: Arc<Mutex<World>>,
    seen_version: Mutex<Option<usize>>,
}

impl Sim {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }
}

#[async_trait]
impl GraphPasswords for Sim {
    async fn list(&self) -> Result<Vec<ObservedPassword>, PortError> {
        Ok(self.world().observed_graph())
    }

    async fn add(&self, display_name: &str, end: Timestamp) -> Result<AddedPassword, PortError> {
        let mut w = self.world();
        let fail_after = w.write_gate()?;
        let n = w.next();
        w.add_calls += 1;
        w.add_priorities.push(crate::graph::current_priority());
        // Distinct three-character prefixes, so hints tell credentials apart.
        let value = format!("{n:03}~secret-value-{n}");
        let key_id = format!("key-{n}");
        // Graph's clock starts the credential (no startDateTime is sent).
        let start = w.now;
        w.graph.push(GraphCredential {
            key_id: key_id.clone(),
            display_name: Some(display_name.to_string()),
            value: value.clone(),
            start,
            end,
        });
        if fail_after {
            return Err(crashed());
        }
        Ok(AddedPassword {
            key_id,
            display_name: display_name.to_string(),
            hint: Some(value.chars().take(HINT_LEN).collect()),
            start: Some(start),
            end,
            value: SecretString::new(value),
        })
    }

    async fn remove(&self, key_id: &str) -> Result<(), PortError> {
        let mut w = self.world();
        let fail_after = w.write_gate()?;
        if w.graph.iter().any(|c| c.key_id == key_id) {
            w.check_removal(key_id);
        }
        w.graph.retain(|c| c.key_id != key_id);
        if fail_after {
            return Err(crashed());
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for Sim {
    async fn read(&self, name: &str) -> Result<Option<ObservedSecret>, PortError> {
        assert_eq!(name, SECRET_NAME);
        Ok(self
            .world()
            .secret
            .as_ref()
            .map(ObservedSecret::from_secret))
    }

    async fn write(&self, name: &str, credential: &AddedPassword) -> Result<(), PortError> {
        let mut w = self.world();
        let fail_after = w.write_gate()?;
        w.secret = Some(owned_secret(name, credential));
        if fail_after {
            return Err(crashed());
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), PortError> {
        assert_eq!(name, SECRET_NAME);
        let mut w = self.world();
        let fail_after = w.write_gate()?;
        if w.declared {
            w.violations
                .push("deleted the Secret of a declared password".into());
        }
        w.secret = None;
        w.secret_was_working = false;
        if fail_after {
            return Err(crashed());
        }
        Ok(())
    }
}

#[async_trait]
impl StatusStore for Sim {
    async fn read(&self, secret_name: &str) -> Result<Option<PasswordCredentialStatus>, PortError> {
        assert_eq!(secret_name, SECRET_NAME);
        let mut w = self.world();
        let mut version = w.version();
        if w.stale_reads > 0 {
            w.stale_reads -= 1;
            version = version.saturating_sub(w.lag_by).max(1);
        }
        *self.seen_version.lock().unwrap() = Some(version);
        Ok(w.history[version - 1].clone())
    }

    async fn write(
        &self,
        secret_name: &str,
        entry: Option<&PasswordCredentialStatus>,
    ) -> Result<(), PortError> {
        assert_eq!(secret_name, SECRET_NAME);
        let mut w = self.world();
        let fail_after = w.write_gate()?;
        let mut seen = self.seen_version.lock().unwrap();
        if *seen != Some(w.version()) {
            return Err(PortError::Conflict);
        }
        // As the API server: an update that changes nothing is not a new version.
        if w.status() != entry {
            w.history.push(entry.cloned());
        }
        *seen = Some(w.version());
        if fail_after {
            return Err(crashed());
        }
        Ok(())
    }
}

#[async_trait]
impl Events for Sim {
    async fn emit(&self, event: CredentialEvent) {
        self.world().events.push(event);
    }
}

impl Clock for Sim {
    fn now(&self) -> Timestamp {
        self.world().now
    }
}

impl Fence for Sim {
    fn check(&self) -> Result<(), Fenced> {
        if self.world().fenced {
            return Err(Fenced("lease lost".into()));
        }
        Ok(())
    }
}

/// The world shared by the passes of a scenario.
#[derive(Clone)]
struct Shared(Arc<Mutex<World>>);

impl Shared {
    fn new(world: World) -> Self {
        Shared(Arc::new(Mutex::new(world)))
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    /// One reconcile by a fresh process: the production driver against this world.
    fn pass(&self) -> Result<PassOutcome, DriverError> {
        let sim = Sim {
            world: self.0.clone(),
            seen_version: Mutex::new(None),
        };
        let (spec, declared, annotation, confirmation) = {
            let w = self.lock();
            (
                w.spec.clone(),
                w.declared,
                w.annotation.clone(),
                w.confirmation.clone(),
            )
        };
        block_on(drive_password(
            PasswordTarget {
                spec: &spec,
                declared,
                owner_uid: UID,
                rotate_annotation: annotation.as_deref(),
                handover_confirmation: confirmation.as_deref(),
                confirm_delay: SignedDuration::from_secs(5),
            },
            Ports {
                graph: &sim,
                secrets: &sim,
                status: &sim,
                events: &sim,
                clock: &sim,
                fence: &sim,
            },
        ))
    }

    /// Runs passes until one is idle without writing. Returns the number of writes made.
    fn settle(&self, label: &str) -> usize {
        let start = self.lock().writes;
        for pass in 0..40 {
            let before = self.lock().writes;
            let result = self.pass();
            let mut w = self.lock();
            w.check_secret_keeps_working(&format!("{label}, pass {pass}: {result:?}"));
            w.check_no_violations(label);
            let wrote = w.writes != before;
            w.now += SignedDuration::from_secs(1);
            if result.is_ok() && !wrote {
                return w.writes - start;
            }
        }
        panic!("{label}: did not settle in 40 passes\n{:#?}", self.lock());
    }

    fn status(&self) -> PasswordCredentialStatus {
        self.lock().status().cloned().expect("status written")
    }
}

/// A world at rest with a credential already issued.
fn settled_world(spec: PasswordCredentialSpec) -> World {
    let shared = Shared::new(World::new(spec).with_unmanaged());
    shared.settle("setup");
    shared.lock().check_at_rest("setup");
    let mut world = Arc::try_unwrap(shared.0).unwrap().into_inner().unwrap();
    world.writes = 0;
    world.events.clear();
    world
}

/// Runs the scenario to rest without a fault, then once per write and fault kind (and, for
/// `pairs`, twice), checking the invariants every time.
fn fault_at_every_write(name: &str, prepare: impl Fn() -> World) {
    let clean = Shared::new(prepare());
    let writes = clean.settle(name);
    clean.lock().check_at_rest(name);
    assert!(writes > 0, "{name}: scenario does nothing");
    for index in 0..writes {
        for point in [CrashPoint::Before, CrashPoint::AfterEffect] {
            let label = format!("{name}, {point:?} at write {index}");
            let mut world = prepare();
            world.crashes = vec![(index, point)];
            let shared = Shared::new(world);
            shared.settle(&label);
            shared.lock().check_at_rest(&label);
        }
    }
}

#[test]
fn initial_issue_survives_a_fault_at_every_write() {
    fault_at_every_write("initial", || World::new(default_spec()).with_unmanaged());
}

#[test]
fn due_rotation_survives_a_fault_at_every_write() {
    fault_at_every_write("due", || {
        let mut world = settled_world(default_spec());
        world.now += SignedDuration::from_secs(3000);
        world
    });
}

#[test]
fn a_due_rotation_queues_for_graph_writes_ahead_of_a_first_credential() {
    use crate::graph::Priority;
    let fresh = Shared::new(World::new(default_spec()).with_unmanaged());
    fresh.settle("initial");
    assert_eq!(fresh.lock().add_priorities, [Priority::Normal]);
    let mut world = settled_world(default_spec());
    let expires_at: Timestamp = world
        .status()
        .unwrap()
        .expires_at
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    world.add_priorities.clear();
    world.now += SignedDuration::from_secs(3000);
    let due = Shared::new(world);
    due.settle("due");
    assert_eq!(
        due.lock().add_priorities,
        [Priority::DueRotation {
            expires_at: expires_at.as_second()
        }]
    );
}

#[test]
fn annotation_rotation_survives_a_fault_at_every_write() {
    fault_at_every_write("annotation", || {
        let mut world = settled_world(default_spec());
        world.annotation = Some("2030-01-01".into());
        world
    });
}

#[test]
fn deleted_secret_survives_a_fault_at_every_write() {
    fault_at_every_write("deleted secret", || {
        let mut world = settled_world(default_spec());
        world.secret = None;
        world.secret_was_working = false;
        world
    });
}

#[test]
fn edited_secret_survives_a_fault_at_every_write() {
    fault_at_every_write("edited secret", || {
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
fn credential_deleted_in_portal_survives_a_fault_at_every_write() {
    fault_at_every_write("credential missing", || {
        let mut world = settled_world(default_spec());
        let current = world.status().unwrap().key_id.clone().unwrap();
        world.graph.retain(|c| c.key_id != current);
        world.now += REPLICATION_GRACE;
        world.secret_was_working = false;
        world
    });
}

#[test]
fn revocation_survives_a_fault_at_every_write() {
    fault_at_every_write("revoke", || {
        let mut world = settled_world(default_spec());
        world.annotation = Some("rotate".into());
        let shared = Shared::new(world);
        shared.settle("rotation before the revocation");
        let mut world = Arc::try_unwrap(shared.0).unwrap().into_inner().unwrap();
        assert_eq!(world.status().unwrap().previous.len(), 1);
        world.now += SignedDuration::from_secs(301);
        world.writes = 0;
        world
    });
}

#[test]
fn rotation_with_previous_credentials_and_an_orphan_survives_a_fault_at_every_write() {
    fault_at_every_write("previous and orphan", || {
        let mut world = settled_world(spec(3600, 600, Overlap::UntilExpiry));
        world.annotation = Some("first".into());
        let shared = Shared::new(world);
        shared.settle("first rotation");
        let mut world = Arc::try_unwrap(shared.0).unwrap().into_inner().unwrap();
        assert_eq!(world.status().unwrap().previous.len(), 1);
        world.annotation = Some("second".into());
        let end = world.now + SignedDuration::from_secs(3600);
        world.push_credential(
            "orphan-key",
            Some(&managed_display_name(UID, SECRET_NAME, "crashed-long-ago")),
            "ooo-orphan",
            end,
        );
        world.writes = 0;
        world
    });
}

#[test]
fn rotation_survives_two_faults_at_any_pair_of_writes() {
    let prepare = || {
        let mut world = settled_world(default_spec());
        world.now += SignedDuration::from_secs(3000);
        world
    };
    let writes = Shared::new(prepare()).settle("clean");
    for first in 0..writes {
        // The recovery after a fault takes extra writes; fault during those too.
        for second in first + 1..writes + 4 {
            for points in [
                (CrashPoint::AfterEffect, CrashPoint::AfterEffect),
                (CrashPoint::AfterEffect, CrashPoint::Before),
                (CrashPoint::Before, CrashPoint::AfterEffect),
            ] {
                let label = format!("faults {points:?} at writes {first} and {second}");
                let mut world = prepare();
                world.crashes = vec![(first, points.0), (second, points.1)];
                let shared = Shared::new(world);
                shared.settle(&label);
                shared.lock().check_at_rest(&label);
            }
        }
    }
}

/// A world just after a rotation with `UntilExpiry` (the previous credential kept for about an
/// hour), whose consumers confirmed the new credential.
fn confirmed_handover_world() -> World {
    let mut world = settled_world(spec(3600, 600, Overlap::UntilExpiry));
    world.annotation = Some("rotate".into());
    let shared = Shared::new(world);
    shared.settle("rotation before the confirmation");
    let mut world = Arc::try_unwrap(shared.0).unwrap().into_inner().unwrap();
    assert_eq!(world.status().unwrap().previous.len(), 1);
    world.confirmation = world.status().unwrap().key_id.clone();
    world.writes = 0;
    world.events.clear();
    world
}

/// [`confirmed_handover_world`] once the confirmation is recorded, at the shortened revoke time.
fn confirmed_handover_due_world() -> World {
    let shared = Shared::new(confirmed_handover_world());
    shared.settle("confirmation");
    let mut world = Arc::try_unwrap(shared.0).unwrap().into_inner().unwrap();
    let revoke_at: Timestamp = world.status().unwrap().previous[0]
        .revoke_at
        .parse()
        .unwrap();
    world.now = revoke_at;
    world.writes = 0;
    world.events.clear();
    world
}

#[test]
fn a_confirmed_handover_revokes_the_previous_after_the_delay_and_survives_a_fault_at_every_write() {
    // The confirmation is recorded and the previous credential's revoke time moves to 5 s later,
    // nearly an hour before the end of its overlap; at that time it is revoked.
    let shared = Shared::new(confirmed_handover_world());
    let previous = shared.status().previous[0].clone();
    let start = shared.lock().now;
    shared.settle("confirmation");
    let status = shared.status();
    let confirmed = status.handover_confirmed.clone().expect("recorded");
    assert_eq!(Some(&confirmed.key_id), status.key_id.as_ref());
    let revoke_at: Timestamp = status.previous[0].revoke_at.parse().unwrap();
    assert_eq!(
        revoke_at,
        confirmed.confirmed_at.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(5)
    );
    assert!(
        previous.revoke_at.parse::<Timestamp>().unwrap() > start + SignedDuration::from_secs(3000)
    );
    shared.lock().now = revoke_at;
    shared.settle("revocation after the confirmation");
    assert!(shared.status().previous.is_empty());
    assert!(
        !shared
            .lock()
            .graph
            .iter()
            .any(|c| c.key_id == previous.key_id)
    );
    fault_at_every_write("confirmation", confirmed_handover_world);
    fault_at_every_write(
        "revocation after a confirmation",
        confirmed_handover_due_world,
    );
}

#[test]
fn a_stale_confirmation_keeps_the_previous_until_its_own_time() {
    let mut world = confirmed_handover_world();
    let previous = world.status().unwrap().previous[0].clone();
    world.confirmation = Some(previous.key_id.clone());
    let shared = Shared::new(world);
    assert_eq!(shared.settle("stale confirmation"), 0);
    assert_eq!(shared.status().previous, vec![previous]);
}

#[test]
fn second_rotation_inside_the_overlap_keeps_the_first_previous_until_its_own_time() {
    // Overlap 300 s; rotate, then rotate again 100 s later.
    let shared = Shared::new(settled_world(default_spec()));
    let first_key = shared.status().key_id.unwrap();
    shared.lock().annotation = Some("one".into());
    shared.settle("first rotation");
    let after_first = shared.status();
    let [first_previous] = &after_first.previous[..] else {
        panic!("one previous: {after_first:?}")
    };
    assert_eq!(first_previous.key_id, first_key);
    let first_revoke: Timestamp = first_previous.revoke_at.parse().unwrap();
    let second_key = after_first.key_id.clone().unwrap();

    shared.lock().now += SignedDuration::from_secs(100);
    shared.lock().annotation = Some("two".into());
    shared.settle("second rotation");
    let after_second = shared.status();
    let revoke_times: Vec<(String, Timestamp)> = after_second
        .previous
        .iter()
        .map(|p| (p.key_id.clone(), p.revoke_at.parse().unwrap()))
        .collect();
    assert_eq!(revoke_times.len(), 2, "{revoke_times:?}");
    assert_eq!(revoke_times[0], (first_key.clone(), first_revoke));
    assert_eq!(revoke_times[1].0, second_key);
    assert!(revoke_times[1].1 > first_revoke);
    shared.lock().check_at_rest("second rotation");
    assert!(shared.lock().graph.iter().any(|c| c.key_id == first_key));

    // Each goes at its own time.
    shared.lock().now = first_revoke;
    shared.settle("first revocation");
    assert!(!shared.lock().graph.iter().any(|c| c.key_id == first_key));
    assert!(shared.lock().graph.iter().any(|c| c.key_id == second_key));
    assert_eq!(shared.status().previous.len(), 1);
    shared.lock().now = revoke_times[1].1;
    shared.settle("second revocation");
    assert!(!shared.lock().graph.iter().any(|c| c.key_id == second_key));
    assert!(shared.status().previous.is_empty());
    shared.lock().check_at_rest("both revoked");
}

#[test]
fn a_lagging_status_read_never_causes_a_wrong_revoke_or_rotation() {
    // Two rotations land; then every pass for a while reads status from before them (the cache
    // lags the operator's own writes), while Graph and the Secret are current.
    for lag_by in 1..8 {
        for stale_reads in [1, 2, 3, 10] {
            let label = format!("lag by {lag_by} versions for {stale_reads} reads");
            let shared = Shared::new(settled_world(default_spec()));
            shared.lock().annotation = Some("one".into());
            shared.settle("first rotation");
            shared.lock().annotation = Some("two".into());
            shared.settle("second rotation");
            let truth = shared.status();
            assert_eq!(truth.previous.len(), 2);
            let adds = shared.lock().add_calls;
            {
                let mut w = shared.lock();
                w.stale_reads = stale_reads;
                w.lag_by = lag_by;
            }
            shared.settle(&label);
            let w = shared.lock();
            w.check_at_rest(&label);
            assert_eq!(w.add_calls, adds, "{label}: no rotation from a stale read");
            assert_eq!(w.status(), Some(&truth), "{label}: the newer status stands");
        }
    }
}

#[test]
fn a_lagging_read_during_a_rotation_with_faults_stays_safe() {
    let prepare = || {
        let mut world = settled_world(default_spec());
        world.now += SignedDuration::from_secs(3000);
        world
    };
    let writes = Shared::new(prepare()).settle("clean");
    for index in 0..writes {
        for lag_by in 1..4 {
            let label = format!("fault at write {index}, then reads lag by {lag_by}");
            let mut world = prepare();
            world.crashes = vec![(index, CrashPoint::AfterEffect)];
            let shared = Shared::new(world);
            // The pass that fails leaves the next ones reading behind.
            let _ = shared.pass();
            {
                let mut w = shared.lock();
                w.stale_reads = 3;
                w.lag_by = lag_by;
            }
            shared.settle(&label);
            shared.lock().check_at_rest(&label);
        }
    }
}

#[test]
fn a_fenced_replica_writes_nothing() {
    for trigger in ["due", "revoke"] {
        let mut world = settled_world(default_spec());
        match trigger {
            "due" => world.now += SignedDuration::from_secs(3000),
            _ => {
                world.annotation = Some("x".into());
                let shared = Shared::new(world);
                shared.settle("rotation");
                world = Arc::try_unwrap(shared.0).unwrap().into_inner().unwrap();
                world.now += SignedDuration::from_secs(400);
            }
        }
        world.fenced = true;
        let before = world.writes;
        let shared = Shared::new(world);
        let result = shared.pass();
        assert!(
            matches!(result, Err(DriverError::Fenced(_))),
            "{trigger}: {result:?}"
        );
        assert_eq!(
            shared.lock().writes,
            before,
            "{trigger}: no write attempted"
        );
        shared.lock().fenced = false;
        shared.settle("leader again");
        shared.lock().check_at_rest(trigger);
    }
}

#[test]
fn two_replicas_one_stale_never_undo_each_other() {
    // Replica A reads status, replica B rotates to completion, then A tries to act on its read.
    let shared = Shared::new(settled_world(default_spec()));
    shared.lock().now += SignedDuration::from_secs(3000);
    let a = Sim {
        world: shared.0.clone(),
        seen_version: Mutex::new(None),
    };
    block_on(StatusStore::read(&a, SECRET_NAME)).unwrap();
    shared.settle("replica B rotates");
    let truth = shared.status();
    let result = block_on(StatusStore::write(
        &a,
        SECRET_NAME,
        Some(&PasswordCredentialStatus {
            secret_name: SECRET_NAME.into(),
            ..Default::default()
        }),
    ));
    assert!(matches!(result, Err(PortError::Conflict)));
    assert_eq!(shared.status(), truth);
}

#[test]
fn full_lifecycle_with_second_scale_durations() {
    // lifetime 60s, renew 20s before expiry, previous kept 10s.
    let shared = Shared::new(
        World::new(spec(60, 20, Overlap::For(Duration::from_secs(10)))).with_unmanaged(),
    );
    shared.settle("initial");
    shared.lock().check_at_rest("initial");
    assert_eq!(shared.lock().add_calls, 1);
    let first = shared.status();
    let first_key = first.key_id.clone().unwrap();
    let first_expiry: Timestamp = first.expires_at.clone().unwrap().parse().unwrap();

    // Idle until the renewal time, then exactly one rotation.
    let outcome = shared.pass().unwrap();
    let renew_at: Timestamp = first.renew_at.clone().unwrap().parse().unwrap();
    assert_eq!(outcome.requeue_at, Some(renew_at));
    assert_eq!(renew_at, first_expiry - SignedDuration::from_secs(20));

    shared.lock().now = renew_at;
    shared.settle("rotation");
    shared.lock().check_at_rest("rotation");
    assert_eq!(shared.lock().add_calls, 2);
    let second = shared.status();
    let previous = second.previous[0].clone();
    assert_eq!(previous.key_id, first_key);
    let revoke_at: Timestamp = previous.revoke_at.parse().unwrap();
    assert!(revoke_at <= first_expiry);

    // Requeue at the earlier of revocation and the next renewal.
    assert_eq!(shared.pass().unwrap().requeue_at, Some(revoke_at));

    shared.lock().now = revoke_at;
    shared.settle("revoke");
    shared.lock().check_at_rest("revoke");
    assert!(shared.status().previous.is_empty());
    assert!(!shared.lock().graph.iter().any(|c| c.key_id == first_key));
    assert_eq!(shared.lock().add_calls, 2);
    assert_eq!(count_unmanaged(&shared.lock().observed_graph(), UID), 2);
    let events = shared.lock().events.clone();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CredentialEvent::Rotated { .. }))
    );
    assert!(events.iter().any(|e| matches!(
        e,
        CredentialEvent::Removed {
            reason: CredentialReason::RevokePrevious,
            ..
        }
    )));
}

#[test]
fn each_annotation_value_rotates_exactly_once() {
    let shared = Shared::new(settled_world(default_spec()));
    let adds = shared.lock().add_calls;
    shared.lock().annotation = Some("a".into());
    shared.settle("a");
    assert_eq!(shared.lock().add_calls, adds + 1);
    assert_eq!(shared.status().rotate_token.as_deref(), Some("a"));
    shared.settle("a again");
    shared.lock().now += SignedDuration::from_secs(60);
    shared.settle("a later");
    assert_eq!(shared.lock().add_calls, adds + 1, "same value, no rotation");
    shared.lock().annotation = None;
    shared.settle("annotation removed");
    assert_eq!(shared.lock().add_calls, adds + 1, "removed, no rotation");
    shared.lock().annotation = Some("b".into());
    shared.settle("b");
    assert_eq!(shared.lock().add_calls, adds + 2);
    shared.lock().check_at_rest("b");
}

#[test]
fn annotation_present_at_creation_is_honoured_by_the_first_credential() {
    let mut world = World::new(default_spec()).with_unmanaged();
    world.annotation = Some("x".into());
    let shared = Shared::new(world);
    shared.settle("initial");
    shared.settle("again");
    assert_eq!(shared.lock().add_calls, 1);
}

#[test]
fn lost_status_adopts_the_credential_the_secret_holds() {
    let shared = Shared::new(settled_world(default_spec()));
    let key = shared.status().key_id;
    shared.lock().set_status(None);
    shared.settle("adopt");
    shared.lock().check_at_rest("adopt");
    assert_eq!(shared.status().key_id, key);
    assert_eq!(shared.lock().add_calls, 1, "no rotation");
    assert!(shared.lock().events.iter().any(|e| matches!(
        e,
        CredentialEvent::StatusChanged {
            reason: CredentialReason::Adopted,
            ..
        }
    )));
}

#[test]
fn secret_written_before_replication_is_awaited_not_replaced() {
    // A fault right after the Secret write; on restart, Graph's read replica does not list the
    // new credential yet. Rotating again would replace a Secret that works.
    let mut world = settled_world(default_spec());
    world.annotation = Some("go".into());
    let shared = Shared::new(world);
    // Find the Secret write: run a clean copy and watch the writes.
    let secret_write = {
        let probe = Shared::new(settled_world(default_spec()));
        probe.lock().annotation = Some("go".into());
        let mut index = None;
        for i in 0..20 {
            let mut w = probe.lock();
            let old = w.secret_data(KEY_KEY_ID);
            w.crashes = vec![(i, CrashPoint::AfterEffect)];
            w.writes = 0;
            drop(w);
            let _ = probe.pass();
            if probe.lock().secret_data(KEY_KEY_ID) != old {
                index = Some(i);
                break;
            }
        }
        index.expect("a Secret write")
    };
    shared.lock().crashes = vec![(secret_write, CrashPoint::AfterEffect)];
    while shared.lock().writes <= secret_write {
        let _ = shared.pass();
    }
    let new_key = shared.lock().secret_data(KEY_KEY_ID).unwrap();
    shared.lock().hidden = vec![new_key.clone()];
    let adds = shared.lock().add_calls;
    let outcome = shared.pass().unwrap();
    assert_eq!(outcome.reason, CredentialReason::WaitingForReplication);
    assert_eq!(shared.lock().add_calls, adds);
    shared.lock().hidden.clear();
    shared.settle("replicated");
    shared.lock().check_at_rest("replicated");
    assert_eq!(shared.status().key_id.as_deref(), Some(new_key.as_str()));
}

#[test]
fn legacy_credentials_are_used_and_rotated_away_but_legacy_orphans_stay() {
    // A status written before markers carried the UID.
    let mut world = World::new(default_spec()).with_unmanaged();
    let end = world.now + SignedDuration::from_secs(3600);
    world.push_credential(
        "legacy-current",
        Some(&format!("entra-operator:{SECRET_NAME}:old1")),
        "lll-legacy",
        end,
    );
    world.push_credential(
        "legacy-stray",
        Some(&format!("entra-operator:{SECRET_NAME}:old0")),
        "sss-stray",
        end,
    );
    world.secret = Some(render_secret(
        &context(),
        SECRET_NAME,
        &SecretCredential {
            key_id: "legacy-current",
            expires_at: end,
            value: &SecretString::new("lll-legacy"),
        },
    ));
    world.secret_was_working = true;
    let renew_at = end - SignedDuration::from_secs(600);
    world.set_status(Some(PasswordCredentialStatus {
        secret_name: SECRET_NAME.into(),
        key_id: Some("legacy-current".into()),
        hint: Some("lll".into()),
        expires_at: Some(end.to_string().into()),
        renew_at: Some(renew_at.to_string().into()),
        created_at: Some(world.now.to_string()),
        ..Default::default()
    }));
    let shared = Shared::new(world);
    shared.settle("steady on a legacy credential");
    assert_eq!(
        shared.lock().add_calls,
        0,
        "a legacy credential is used as is"
    );
    assert!(
        shared
            .lock()
            .graph
            .iter()
            .any(|c| c.key_id == "legacy-stray")
    );

    shared.lock().annotation = Some("migrate".into());
    shared.settle("rotate away");
    let status = shared.status();
    assert_eq!(status.previous[0].key_id, "legacy-current");
    let revoke_at: Timestamp = status.previous[0].revoke_at.parse().unwrap();
    shared.lock().now = revoke_at;
    shared.settle("revoke the legacy previous");
    let w = shared.lock();
    w.check_no_violations("legacy");
    assert!(
        !w.graph.iter().any(|c| c.key_id == "legacy-current"),
        "named by status: removed"
    );
    assert!(
        w.graph.iter().any(|c| c.key_id == "legacy-stray"),
        "a legacy credential nothing names is left alone"
    );
}

#[test]
fn status_naming_another_resources_credential_never_removes_it() {
    // A forged or restored status claims another resource's credential as previous.
    let shared = Shared::new(settled_world(default_spec()));
    let mut status = shared.status();
    status
        .previous
        .push(crate::api::appregistration::PreviousCredential {
            key_id: "other-resource-key".into(),
            revoke_at: "2000-01-01T00:00:00Z".into(),
        });
    shared.lock().set_status(Some(status));
    shared.settle("forged previous");
    let w = shared.lock();
    w.check_at_rest("forged previous");
    assert!(w.status().unwrap().previous.is_empty(), "forgotten");
    assert!(w.events.iter().any(|e| matches!(
        e,
        CredentialEvent::StatusChanged {
            reason: CredentialReason::NotOurs,
            ..
        }
    )));
}

#[test]
fn an_undeclared_password_gets_its_overlap_then_goes() {
    let shared = Shared::new(settled_world(default_spec()));
    let key = shared.status().key_id.unwrap();
    shared.lock().declared = false;
    shared.settle("undeclared");
    let status = shared.status();
    assert_eq!(status.key_id, None);
    let [previous] = &status.previous[..] else {
        panic!("{status:?}")
    };
    assert_eq!(previous.key_id, key);
    assert!(
        shared.lock().graph.iter().any(|c| c.key_id == key),
        "kept for its overlap"
    );
    let revoke_at: Timestamp = previous.revoke_at.parse().unwrap();
    let overlap = revoke_at.duration_since(shared.lock().now).as_secs();
    assert!(
        (290..=300).contains(&overlap),
        "about 300 s of overlap: {overlap}"
    );
    assert!(
        shared.lock().secret.is_some(),
        "the Secret stays for the overlap"
    );
    shared.lock().now = revoke_at;
    shared.settle("overlap over");
    let w = shared.lock();
    w.check_no_violations("undeclared");
    assert!(
        w.secret.is_none(),
        "the operator's Secret goes at the end of the overlap"
    );
    assert!(!w.graph.iter().any(|c| c.key_id == key));
    assert_eq!(w.status(), None, "entry forgotten");
    assert!(w.graph.iter().any(|c| c.key_id == "unmanaged-key"));
}

#[test]
fn an_undeclared_password_whose_secret_was_taken_over_keeps_its_credential() {
    let shared = Shared::new(settled_world(default_spec()));
    let key = shared.status().key_id.unwrap();
    shared.lock().declared = false;
    // Someone keeps the Secret: removes the owner reference.
    shared
        .lock()
        .secret
        .as_mut()
        .unwrap()
        .metadata
        .owner_references = None;
    shared.settle("undeclared");
    shared.lock().now += SignedDuration::from_secs(400);
    shared.settle("overlap over");
    let w = shared.lock();
    w.check_no_violations("taken over");
    assert!(w.secret.is_some());
    assert!(
        w.graph.iter().any(|c| c.key_id == key),
        "a Secret still names it"
    );
}

#[test]
fn an_undeclared_password_survives_a_fault_at_every_write() {
    let prepare = || {
        let mut world = settled_world(default_spec());
        world.now += SignedDuration::from_secs(3000);
        world.declared = false;
        world
    };
    let clean = Shared::new(prepare());
    clean.settle("clean");
    let writes = clean.lock().writes;
    for index in 0..writes {
        for point in [CrashPoint::Before, CrashPoint::AfterEffect] {
            let mut world = prepare();
            world.crashes = vec![(index, point)];
            let shared = Shared::new(world);
            shared.settle("undeclared with a fault");
            let w = shared.lock();
            w.check_no_violations("undeclared with a fault");
            let status = w.status().expect("kept during the overlap");
            assert!(status.key_id.is_none() && status.pending.is_none());
            assert_eq!(status.previous.len(), 1);
        }
    }
}
