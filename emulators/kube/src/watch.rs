//! Watch streams: newline-delimited events from a resource version (410 when it is too old) or
//! with the initial events, bookmarks, timeouts, and tables for `kubectl get -w`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use hyper::{Response, header};
use serde_json::{Value, json};

use crate::api_error::{ApiError, error_response};
use crate::list::matches_field_selector;
use crate::request::{Params, ReqInfo};
use crate::resources::status_error;
use crate::selectors::{LabelSelector, parse_field_selector};
use crate::state::State;
use crate::store::{WatchMsg, WatchStart};
use crate::table;

/// How a watch renders each object: whole, as a table row (`kubectl get -w`), or as
/// `PartialObjectMetadata` (metadata-only watches).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Object,
    Table,
    Metadata,
}

/// A watch stream: newline-delimited `{"type": ..., "object": ...}`.
pub(crate) async fn watch(
    state: Arc<State>,
    ri: ReqInfo,
    params: Params,
    shape: Shape,
) -> Response<Body> {
    let labels = match LabelSelector::parse(params.get("labelSelector").unwrap_or("")) {
        Ok(l) => l,
        Err(e) => return error_response(ApiError::bad_request(e)),
    };
    let fields = match parse_field_selector(params.get("fieldSelector").unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return error_response(ApiError::bad_request(e)),
    };
    let bookmarks = params.flag("allowWatchBookmarks");
    let send_initial = params.flag("sendInitialEvents");
    let rv_param = params.get("resourceVersion").unwrap_or("").to_string();
    let from = if send_initial || rv_param.is_empty() || rv_param == "0" {
        None
    } else {
        match rv_param.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_response(ApiError::bad_request(format!(
                    "invalid resource version: {rv_param}"
                )));
            }
        }
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let start = state.store.watch(
        &ri.rt.key(),
        ri.namespace.as_deref(),
        from,
        send_initial && bookmarks,
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    match start {
        WatchStart::Gone => {
            let status = status_error(
                410,
                "Expired",
                &format!(
                    "too old resource version: {rv_param} ({})",
                    state.store.current_rv()
                ),
                None,
            );
            let line = format!("{}\n", json!({"type": "ERROR", "object": status}));
            let _ = tx.send(Ok(Bytes::from(line))).await;
        }
        WatchStart::Started {
            id,
            rx: mut events,
            replay,
            ..
        } => {
            let st = state.clone();
            tokio::spawn(async move {
                struct Guard(Arc<State>, u64);
                impl Drop for Guard {
                    fn drop(&mut self) {
                        self.0.store.remove_watcher(self.1);
                    }
                }
                let _guard = Guard(st.clone(), id);
                let deadline = tokio::time::Instant::now() + timeout;
                let mut first = true;
                let render = |kind: &str, obj: &Value, first: &mut bool| -> Option<Bytes> {
                    let mut o = st.output(&ri.rt, &ri.version, obj);
                    if shape == Shape::Metadata && kind != "BOOKMARK" {
                        o = table::partial_metadata(&o);
                    }
                    if shape == Shape::Table {
                        let rv = o["metadata"]["resourceVersion"].clone();
                        o = table::table_for(
                            &st,
                            &ri,
                            &[o],
                            json!({"resourceVersion": rv}),
                            params.get("includeObject"),
                            *first,
                        );
                        *first = false;
                    }
                    let line = format!("{}\n", json!({"type": kind, "object": o}));
                    Some(Bytes::from(line))
                };
                let matches = |o: &Value| labels.matches(o) && matches_field_selector(&fields, o);
                for e in replay {
                    if !matches(&e.object) {
                        continue;
                    }
                    if let Some(b) = render(e.kind.as_str(), &e.object, &mut first)
                        && tx.send(Ok(b)).await.is_err()
                    {
                        return;
                    }
                }
                let mut tick = tokio::time::interval(st.bookmark_interval);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = tick.tick(), if bookmarks => st.store.bookmark(id),
                        _ = tx.closed() => return,
                        msg = events.recv() => {
                            let Some(msg) = msg else { return };
                            let bytes = match msg {
                                WatchMsg::Event(e) => {
                                    if !matches(&e.object) { continue; }
                                    match render(e.kind.as_str(), &e.object, &mut first) { Some(b) => b, None => continue }
                                }
                                WatchMsg::Bookmark { rv, initial_end } => {
                                    if !bookmarks { continue; }
                                    let mut meta = json!({"resourceVersion": rv.to_string()});
                                    if initial_end {
                                        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                                    }
                                    let obj = json!({"kind": ri.rt.kind, "apiVersion": ri.rt.api_version(&ri.version), "metadata": meta});
                                    Bytes::from(format!("{}\n", json!({"type": "BOOKMARK", "object": obj})))
                                }
                            };
                            if tx.send(Ok(bytes)).await.is_err() { return; }
                        }
                    }
                }
            });
        }
    }
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
