//! LIST with label/field selectors, `limit`/`continue` and resourceVersion semantics.
//!
//! The continue token is opaque to clients: base64 of `{"rv":N,"start":"<last key>"}`. Every
//! page of one list is read at the first page's revision (a consistent snapshot, as etcd
//! gives upstream); once that revision is compacted the token answers 410 Expired.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use crate::api::object;
use crate::api::status::{ApiError, ApiResult};
use crate::api::{json, table, ResourceRequest};
use crate::store::{Revision, StoreError};

use super::Filter;

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn encode_token(rv: Revision, start: &str) -> String {
    let t = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
}

fn decode_token(s: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {s:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

/// A page of matching objects and where to go on.
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// Read the matching objects the request asks for (shared with deletecollection and the
/// initial state of a watch).
pub(crate) async fn read(req: &ResourceRequest, filter: &Filter) -> ApiResult<Page> {
    let prefix = req.info.prefix(req.namespace.as_deref());
    let (mut at, mut start) = match req.params.continue_token.as_deref() {
        Some(t) => {
            let t = decode_token(t)?;
            (Some(t.rv), Some(t.start))
        }
        None => (None, None),
    };
    if at.is_none() {
        // resourceVersion="" or "0": the latest state; Exact: that revision; otherwise
        // (NotOlderThan) the latest, once the store has reached the requested revision.
        if let Some(rv) = req
            .params
            .resource_version
            .as_deref()
            .filter(|rv| *rv != "0")
        {
            let rv: Revision = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            if req.params.resource_version_match.as_deref() == Some("Exact") {
                at = Some(rv);
            } else {
                wait_for_revision(req, rv).await?;
            }
        }
    }
    let limit = req.params.limit;
    let mut items = Vec::new();
    let mut revision = None;
    loop {
        let page = req
            .state
            .store
            .list(&prefix, start.as_deref(), limit, at)
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } if req.params.continue_token.is_some() => {
                    ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                }
                other => req.store_error(other),
            })?;
        revision.get_or_insert(page.revision);
        at = Some(page.revision);
        let mut last = None;
        for kv in &page.items {
            last = Some(kv.key.clone());
            let obj = object::decode(req.info, kv)?;
            if filter.matches(&obj) {
                items.push(obj);
                if limit.is_some_and(|l| items.len() >= l) {
                    break;
                }
            }
        }
        let full = limit.is_some_and(|l| items.len() >= l);
        let more_here = last.as_deref() != page.items.last().map(|kv| kv.key.as_str());
        let more = page.more || more_here;
        if full || !more || last.is_none() {
            let revision = revision.unwrap_or_default();
            let continue_token = (more && last.is_some())
                .then(|| encode_token(revision, last.as_deref().unwrap_or_default()));
            return Ok(Page {
                items,
                revision,
                continue_token,
            });
        }
        // A filter dropped items from a limited page: read on from the last key seen.
        start = last;
    }
}

/// How long a read "not older than" a revision the store has not reached yet waits for it
/// (upstream waits 3 s, then answers 504 "Too large resource version").
const FUTURE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn wait_for_revision(req: &ResourceRequest, rv: Revision) -> ApiResult<()> {
    let deadline = tokio::time::Instant::now() + FUTURE_WAIT;
    loop {
        let current = req
            .state
            .store
            .current_revision()
            .await
            .map_err(|e| req.store_error(e))?;
        if current >= rv {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::too_large_resource_version(rv, current));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub async fn list(req: &ResourceRequest) -> ApiResult<Response> {
    let filter = Filter::new(req)?;
    let page = read(req, &filter).await?;
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = Value::String(c.clone());
    }
    if req.table {
        let mut t = table::to_table(
            &req.info.qualified(),
            &page.items,
            req.include_object(),
            std::time::SystemTime::now(),
        );
        t["metadata"] = meta;
        return Ok(json(StatusCode::OK, &t));
    }
    let list = json!({
        "kind": req.info.list_kind,
        "apiVersion": req.info.api_version(),
        "metadata": meta,
        "items": page.items,
    });
    Ok(json(StatusCode::OK, &list))
}
