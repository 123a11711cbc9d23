//! The operator's Kubernetes event writer.
//!
//! Events are written as `events.k8s.io/v1`, as kube-rs's `Recorder` writes them, with one
//! difference in how repeats are remembered. The `Recorder` keeps every event it published in the
//! last 6 minutes, whole, in an unbounded map, and scans all of it on every publish: a burst of
//! 10,000 new resources (several events each) kept tens of megabytes and made each publish cost
//! the whole burst (BENCHMARKS.md, "Scale"). Here a repeat is remembered by a small key in a map of
//! at most [`REMEMBERED`] entries, least recently used first out (client-go's event correlator
//! bounds its cache the same way, at 4,096), and only for [`SERIES_WINDOW`].
//!
//! A repeat (same object, type, reason and note within the window) becomes the first event's
//! `series` (`kubectl describe` shows "x5 over 3m"), by a merge patch of the series alone; anything
//! else is a new event. Unlike the `Recorder`, the note is part of what makes a repeat and the
//! object's resourceVersion is not: a new message is never hidden under an old one, and the same
//! message about the same object does not become a new event each time the object changed.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};
use lru::LruCache;

/// How many distinct recent events are remembered for series (client-go's correlator: 4,096).
pub const REMEMBERED: usize = 4096;
/// How long a repeat still joins the earlier event's series (as kube-rs and client-go: 6 min).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// `events.k8s.io/v1` refuses a note over 1 kB ("must be at most 1kB in size").
const NOTE_LIMIT: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    warning: bool,
    reason: String,
    note: String,
    /// kind, namespace, name, uid of the object the event is about (not its resourceVersion).
    regarding: [Option<String>; 4],
}

#[derive(Clone, Debug)]
struct Series {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes events, folding repeats into series with a bounded memory of recent events.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    recent: Mutex<LruCache<Key, Series>>,
}

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_capacity(client, reporter, REMEMBERED)
    }

    pub fn with_capacity(client: Client, reporter: Reporter, capacity: usize) -> Self {
        EventPublisher {
            client,
            reporter,
            recent: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// Recent events remembered for series (for tests).
    pub fn remembered(&self) -> usize {
        self.recent.lock().expect("event memory poisoned").len()
    }

    /// Publishes one event about `regarding`: a new event, or the next count of a recent repeat's
    /// series.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let note = truncate(note, NOTE_LIMIT);
        let key = Key {
            warning: matches!(type_, EventType::Warning),
            reason: reason.to_string(),
            note: note.to_string(),
            regarding: [
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ],
        };
        let now = Timestamp::now();
        let repeat = {
            let mut recent = self.recent.lock().expect("event memory poisoned");
            match recent.get_mut(&key) {
                Some(s) if s.last + SERIES_WINDOW > now => {
                    s.count += 1;
                    s.last = now;
                    Some(s.clone())
                }
                _ => None,
            }
        };
        if let Some(series) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &series.namespace);
            let patch = serde_json::json!({
                "series": { "count": series.count, "lastObservedTime": MicroTime(now) },
            });
            match api
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Gone (the API server keeps events an hour): start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.new_event(regarding, type_, reason, note, now);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        self.recent.lock().expect("event memory poisoned").put(
            key,
            Series {
                namespace,
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn new_event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
        now: Timestamp,
    ) -> Event {
        let controller = &self.reporter.controller;
        Event {
            action: Some("Reconcile".to_string()),
            reason: Some(reason.to_string()),
            note: Some(note.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            metadata: ObjectMeta {
                // Cluster-scoped objects' events go to `default`, as kube-rs's Recorder does.
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".to_string()),
                ),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Default::default()
        }
    }
}

/// At most `limit` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, limit: usize) -> &str {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        // 'é' is two bytes: a cut inside it keeps the character out.
        assert_eq!(truncate("aé", 2), "a");
    }
}
