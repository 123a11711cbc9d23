//! The object store: one global resource-version counter (as etcd's), objects per resource, a
//! bounded event history for watches from a resource version, and the live watchers. Every write
//! commits under one lock and is handed to watchers in commit order, so none are lost or reordered.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::resources::ResKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub res: ResKey,
    pub namespace: String,
    pub kind: EventType,
    pub object: Arc<Value>,
}

/// What a watcher's channel carries: events, bookmarks (at a resource version that is at least
/// every event sent before it), and an error (410) that ends the stream.
#[derive(Clone, Debug)]
pub enum WatchMsg {
    Event(Event),
    Bookmark { rv: u64, initial_end: bool },
}

struct Watcher {
    id: u64,
    res: ResKey,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

pub struct Inner {
    pub rv: u64,
    pub objects: HashMap<ResKey, BTreeMap<(String, String), Arc<Value>>>,
    history: VecDeque<Event>,
    /// Highest resource version no longer in `history` (watches from before it get 410).
    compacted: u64,
    history_limit: usize,
    watchers: Vec<Watcher>,
    next_watcher: u64,
}

pub struct Store {
    pub inner: Mutex<Inner>,
}

pub enum WatchStart {
    Gone,
    Started {
        id: u64,
        rx: mpsc::UnboundedReceiver<WatchMsg>,
        /// Events to replay (history after the requested version, or synthetic ADDED events).
        replay: Vec<Event>,
        current_rv: u64,
    },
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                history_limit,
                watchers: Vec::new(),
                next_watcher: 1,
            }),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.inner.lock().rv
    }

    pub fn get(&self, res: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.inner
            .lock()
            .objects
            .get(res)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }

    /// All objects of a resource (optionally in one namespace), sorted by namespace and name, and
    /// the resource version of the snapshot.
    pub fn list(&self, res: &str, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.inner.lock();
        let items = match inner.objects.get(res) {
            Some(m) => match ns {
                Some(ns) => m
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
                None => m.values().cloned().collect(),
            },
            None => Vec::new(),
        };
        (items, inner.rv)
    }

    pub fn drop_watches(&self) {
        self.inner.lock().watchers.clear();
    }

    pub fn remove_watcher(&self, id: u64) {
        self.inner.lock().watchers.retain(|w| w.id != id);
    }

    /// Sends a bookmark to one watcher through its own channel, so it follows every event the
    /// watcher was sent before.
    pub fn bookmark(&self, id: u64) {
        let inner = self.inner.lock();
        if let Some(w) = inner.watchers.iter().find(|w| w.id == id) {
            let _ = w.tx.send(WatchMsg::Bookmark {
                rv: inner.rv,
                initial_end: false,
            });
        }
    }

    /// Registers a watcher. `from`: `Some(rv)` replays history after `rv` (410 if compacted);
    /// `None` replays the current objects as ADDED events (then `initial_end` bookmark if asked).
    pub fn watch(
        &self,
        res: &str,
        ns: Option<&str>,
        from: Option<u64>,
        send_initial_end: bool,
    ) -> WatchStart {
        let mut inner = self.inner.lock();
        let replay: Vec<Event> = match from {
            Some(rv) => {
                if rv < inner.compacted {
                    return WatchStart::Gone;
                }
                inner
                    .history
                    .iter()
                    .filter(|e| {
                        e.rv > rv && e.res == res && ns.is_none_or(|n| n == e.namespace.as_str())
                    })
                    .cloned()
                    .collect()
            }
            None => {
                let rv = inner.rv;
                inner
                    .objects
                    .get(res)
                    .map(|m| {
                        m.iter()
                            .filter(|((n, _), _)| ns.is_none_or(|x| x == n.as_str()))
                            .map(|((n, _), o)| Event {
                                rv,
                                res: res.to_string(),
                                namespace: n.clone(),
                                kind: EventType::Added,
                                object: o.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        if send_initial_end {
            let _ = tx.send(WatchMsg::Bookmark {
                rv: inner.rv,
                initial_end: true,
            });
        }
        let id = inner.next_watcher;
        inner.next_watcher += 1;
        inner.watchers.push(Watcher {
            id,
            res: res.to_string(),
            namespace: ns.map(String::from),
            tx,
        });
        WatchStart::Started {
            id,
            rx,
            replay,
            current_rv: inner.rv,
        }
    }
}

impl Inner {
    pub fn get(&self, res: &str, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(res)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores (or deletes) an object whose `metadata.resourceVersion` is already `rv` and
    /// publishes the event.
    pub fn commit(&mut self, res: &str, ns: &str, name: &str, kind: EventType, obj: Arc<Value>) {
        // Events: the same object in the other API's form, at the same resource version.
        if let Some((other, converted)) = crate::events_view::mirror(res, &obj)
            && (kind != EventType::Deleted || self.get(&other, ns, name).is_some())
        {
            self.commit_one(&other, ns, name, kind, Arc::new(converted));
        }
        self.commit_one(res, ns, name, kind, obj);
    }

    fn commit_one(&mut self, res: &str, ns: &str, name: &str, kind: EventType, obj: Arc<Value>) {
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.rv);
        let map = self.objects.entry(res.to_string()).or_default();
        let key = (ns.to_string(), name.to_string());
        if kind == EventType::Deleted {
            map.remove(&key);
        } else {
            map.insert(key, obj.clone());
        }
        let event = Event {
            rv,
            res: res.to_string(),
            namespace: ns.to_string(),
            kind,
            object: obj,
        };
        self.watchers.retain(|w| {
            if w.res != event.res || w.namespace.as_ref().is_some_and(|n| *n != event.namespace) {
                return true;
            }
            w.tx.send(WatchMsg::Event(event.clone())).is_ok()
        });
        self.history.push_back(event);
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    pub fn all_objects(&self) -> impl Iterator<Item = (&ResKey, &Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(r, m)| m.values().map(move |o| (r, o)))
    }
}
