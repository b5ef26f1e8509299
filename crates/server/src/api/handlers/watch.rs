//! WATCH: a chunked stream of `{"type", "object"}` events (one JSON document per line).
//!
//! Without a resourceVersion (or with "0") the stream starts with the current objects as
//! ADDED events, then changes after that list's revision. With a resourceVersion it replays
//! the store's history after it; one that was compacted away yields a single ERROR event
//! carrying a 410 Expired Status (HTTP 200, as kube-apiserver does), and the client relists.
//! Selectors are applied to both the old and new object, so an object that stops matching is
//! seen as DELETED and one that starts matching as ADDED. With `allowWatchBookmarks` the
//! client gets BOOKMARK events carrying the revision it is known to be current at.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::object;
use crate::api::status::{ApiError, ApiResult};
use crate::api::{table, ResourceRequest};
use crate::registry::ResourceInfo;
use crate::store::{Event, Revision, StoreError};

use super::Filter;

/// Events buffered per watcher before the writer waits for a slow client.
const BUFFER: usize = 128;

struct Encoder {
    info: &'static ResourceInfo,
    table: bool,
    include_object: table::IncludeObject,
}

impl Encoder {
    fn event(&self, kind: &str, obj: &Value) -> Bytes {
        let object = if self.table {
            table::to_table(
                &self.info.qualified(),
                std::slice::from_ref(obj),
                self.include_object,
                std::time::SystemTime::now(),
            )
        } else {
            obj.clone()
        };
        let mut line = json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rev: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta});
        let mut line = json!({"type": "BOOKMARK", "object": obj}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn error(&self, e: &ApiError) -> Bytes {
        let mut line = json!({"type": "ERROR", "object": e.to_value()}).to_string();
        line.push('\n');
        Bytes::from(line)
    }
}

pub async fn watch(mut req: ResourceRequest) -> ApiResult<Response> {
    // GET .../pods/x?watch=1 watches one object, like fieldSelector=metadata.name=x.
    if let Some(name) = req.name.take() {
        let sel = format!("metadata.name={name}");
        req.params.field_selector = Some(match req.params.field_selector.take() {
            Some(s) if !s.is_empty() => format!("{s},{sel}"),
            _ => sel,
        });
    }
    let filter = Filter::new(&req)?;
    let enc = Encoder {
        info: req.info,
        table: req.table,
        include_object: req.include_object(),
    };
    let rv = req.params.resource_version.clone();
    let initial_wanted =
        req.params.send_initial_events || matches!(rv.as_deref(), None | Some("0"));
    let (initial, from) = if initial_wanted {
        let mut listing = ResourceRequest {
            params: req.params.clone(),
            ..clone_request(&req)
        };
        listing.params.limit = None;
        listing.params.continue_token = None;
        listing.params.resource_version_match = None;
        let page = super::list::read(&listing, &filter).await?;
        (page.items, page.revision)
    } else {
        let rv = rv.unwrap_or_default();
        let from = rv
            .parse::<Revision>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        (Vec::new(), from)
    };

    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    let prefix = req.info.prefix(req.namespace.as_deref());
    let stream = req.state.store.watch(&prefix, from).await;
    let mut stream = match stream {
        Ok(s) => Some(s),
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let e = ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ));
            let _ = tx.try_send(enc.error(&e));
            None
        }
        Err(e) => return Err(req.store_error(e)),
    };

    let state = req.state.clone();
    let bookmarks = req.params.allow_bookmarks;
    let send_initial_end = req.params.send_initial_events && bookmarks;
    let timeout = req.params.timeout_seconds.map(Duration::from_secs);
    tokio::spawn(async move {
        let Some(stream) = stream.as_mut() else {
            return;
        };
        for obj in &initial {
            if tx.send(enc.event("ADDED", obj)).await.is_err() {
                return;
            }
        }
        let mut last = from;
        if send_initial_end && tx.send(enc.bookmark(last, true)).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600)));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(state.bookmark_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let line = tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => Some(enc.bookmark(last, false)),
                ev = stream.next() => match ev {
                    None => return,
                    Some(Err(StoreError::Compacted { requested, compacted })) => {
                        let e = ApiError::expired(format!("too old resource version: {requested} ({compacted})"));
                        let _ = tx.send(enc.error(&e)).await;
                        return;
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(enc.error(&ApiError::internal(e.to_string()))).await;
                        return;
                    }
                    Some(Ok(ev)) => {
                        last = ev.revision();
                        match translate(enc.info, &filter, &ev) {
                            Ok(Some((kind, obj))) => Some(enc.event(kind, &obj)),
                            Ok(None) => None,
                            Err(e) => {
                                let _ = tx.send(enc.error(&e)).await;
                                return;
                            }
                        }
                    }
                },
            };
            if let Some(line) = line {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    });

    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The watch event a store change is for this watcher, if any.
fn translate(
    info: &ResourceInfo,
    filter: &Filter,
    ev: &Event,
) -> ApiResult<Option<(&'static str, Value)>> {
    match ev {
        Event::Put { kv, prev } => {
            let obj = object::decode(info, kv)?;
            let now = filter.matches(&obj);
            let before = match prev {
                Some(p) => Some(filter.matches(&object::decode(info, p)?)),
                None if kv.create_revision != kv.mod_revision => Some(true),
                None => None,
            };
            Ok(match (before, now) {
                (Some(true), true) => Some(("MODIFIED", obj)),
                (_, true) => Some(("ADDED", obj)),
                (Some(true), false) => Some(("DELETED", obj)),
                _ => None,
            })
        }
        Event::Deleted { kv } => {
            let obj = object::decode(info, kv)?;
            Ok(filter.matches(&obj).then_some(("DELETED", obj)))
        }
    }
}

fn clone_request(req: &ResourceRequest) -> ResourceRequest {
    ResourceRequest {
        state: req.state.clone(),
        info: req.info,
        namespace: req.namespace.clone(),
        name: None,
        subresource: None,
        params: req.params.clone(),
        table: req.table,
        content_type: req.content_type.clone(),
        body: Bytes::new(),
        user: req.user.clone(),
    }
}
