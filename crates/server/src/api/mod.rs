//! The HTTP API: path routing, authentication and authorization checks, content negotiation,
//! and dispatch to discovery, OpenAPI and the generic REST handlers (one file per verb).

mod discovery;
mod handlers;
mod object;
mod openapi;
pub mod patch;
pub(crate) mod protobuf;
pub mod selector;
pub mod status;
pub mod table;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, User};
use crate::registry::{registry, ResourceInfo};
use crate::store::Backend;

pub(crate) use object::{new_uid, now};
use status::{ApiError, ApiResult};

/// What every request handler shares.
pub struct ApiState {
    pub store: Arc<dyn Backend>,
    /// Cancelled when the server stops: open watches end so connections can drain.
    pub shutdown: CancellationToken,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The join token, accepted as a bearer token for node bootstrap; `None` accepts none.
    pub join_token: Option<String>,
    /// A namespace controller runs: namespaces get the `kubernetes` finalizer on create and
    /// stay Terminating until it empties them and calls `/finalize` (upstream). Without one,
    /// deleting a namespace deletes its contents at once.
    pub namespace_controller: bool,
}

/// The router serving the whole API. The caller attaches a [`User`] to each request's
/// extensions (the TLS layer does it from the client certificate).
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new().fallback(move |req: Request<Body>| {
        let state = state.clone();
        async move { dispatch(state, req).await }
    })
}

/// Query parameters the API understands (the rest are ignored, as upstream does).
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout_seconds: Option<u64>,
    pub dry_run: bool,
    pub field_validation: Option<String>,
    pub field_manager: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub include_object: Option<String>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True")
}

impl Params {
    fn parse(query: Option<&str>) -> ApiResult<Params> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        let mut p = Params::default();
        for (k, v) in pairs {
            match k.as_str() {
                "labelSelector" => p.label_selector = Some(v),
                "fieldSelector" => p.field_selector = Some(v),
                "limit" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit {v:?}")))?;
                    p.limit = (n > 0).then_some(n as usize);
                }
                "continue" => p.continue_token = Some(v).filter(|s| !s.is_empty()),
                "resourceVersion" => p.resource_version = Some(v).filter(|s| !s.is_empty()),
                "resourceVersionMatch" => p.resource_version_match = Some(v),
                "watch" => p.watch = truthy(&v),
                "allowWatchBookmarks" => p.allow_bookmarks = truthy(&v),
                "sendInitialEvents" => p.send_initial_events = truthy(&v),
                "timeoutSeconds" => p.timeout_seconds = v.parse().ok(),
                "dryRun" => p.dry_run = v == "All",
                "fieldValidation" => p.field_validation = Some(v),
                "fieldManager" => p.field_manager = Some(v),
                "propagationPolicy" => p.propagation_policy = Some(v),
                "gracePeriodSeconds" => p.grace_period_seconds = v.parse().ok(),
                "includeObject" => p.include_object = Some(v),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// One resolved request on a resource.
pub(crate) struct ResourceRequest {
    pub state: Arc<ApiState>,
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub params: Params,
    /// The client asked for a meta.k8s.io/v1 Table (kubectl get).
    pub table: bool,
    pub content_type: String,
    pub body: Bytes,
    pub user: User,
}

/// A JSON response with `code`.
pub(crate) fn json(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Add upstream-style `Warning` headers (kubectl prints them as "Warning: ...").
pub(crate) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

async fn dispatch(state: Arc<ApiState>, req: Request<Body>) -> Response {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let resp = serve(state, req).await;
    tracing::debug!(%method, %uri, status = resp.status().as_u16(), "request");
    resp
}

async fn serve(state: Arc<ApiState>, req: Request<Body>) -> Response {
    let mut user = req
        .extensions()
        .get::<User>()
        .cloned()
        .unwrap_or(User::Anonymous);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let (User::Anonymous, Some(token)) = (&user, bearer) {
        // A token that is not ours is a failed login (401), not an anonymous request.
        match state
            .join_token
            .as_deref()
            .and_then(|j| User::from_bearer(token, j))
        {
            Some(u) => user = u,
            None => return ApiError::unauthorized().into_response(),
        }
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };

    // Liveness and version are public, as kube-apiserver's system:public-info-viewer makes them.
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return (StatusCode::OK, "ok").into_response(),
        "/version" => return json(StatusCode::OK, &discovery::version()),
        _ => {}
    }
    if user == User::Anonymous {
        return ApiError::unauthorized().into_response();
    }
    if let Some(resp) = discovery::serve(&path, &parts.headers) {
        return resp;
    }
    if path == "/openapi/v3" || path.starts_with("/openapi/v3/") {
        return openapi::serve(&path);
    }

    let params = match Params::parse(parts.uri.query()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return ApiError::path_not_found().into_response(),
    };
    // /namespaces/{ns}/{resource}/... is namespaced; /namespaces/{name}[/status|finalize] is
    // the Namespace object itself.
    let (namespace, rest) = match rest {
        ["namespaces", ns, res, tail @ ..] if !matches!(*res, "status" | "finalize") => {
            (Some(ns.to_string()), [&[*res][..], tail].concat())
        }
        other => (None, other.to_vec()),
    };
    let Some(info) = registry().find(group, version, rest[0]) else {
        return ApiError::path_not_found().into_response();
    };
    if info.namespaced != namespace.is_some() && !(info.namespaced && rest.len() == 1) {
        // A namespaced resource by name needs a namespace; a cluster one must not have one.
        return ApiError::path_not_found().into_response();
    }
    let name = rest.get(1).map(|s| s.to_string());
    let subresource = rest.get(2).map(|s| s.to_string());
    if rest.len() > 3 {
        return ApiError::path_not_found().into_response();
    }
    if let Some(sub) = &subresource {
        if !info.subresources.contains(&sub.as_str()) {
            return ApiError::path_not_found().into_response();
        }
    }

    let verb = match (&parts.method, name.is_some()) {
        (&Method::GET, _) if params.watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::POST, true) if matches!(subresource.as_deref(), Some("binding" | "eviction")) => {
            "create"
        }
        (&Method::PUT, true) => "update",
        (m, true) if subresource.as_deref() == Some("finalize") && m != Method::PUT => {
            return ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )
            .into_response()
        }
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (m, _) => {
            return ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            ))
            .into_response()
        }
    };
    if !info.verbs.contains(&verb) && subresource.is_none() {
        return ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
        .into_response();
    }
    if info.verbs == ["create"] {
        // Reviews are answered for the caller themselves: every authenticated user may ask.
        let body = match axum::body::to_bytes(body, 1 << 20).await {
            Ok(b) => b,
            Err(e) => {
                return ApiError::bad_request(format!("reading the body: {e}")).into_response()
            }
        };
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        return handlers::review::self_subject_access_review(&user, content_type, &body)
            .unwrap_or_else(IntoResponse::into_response);
    }
    if let Err(message) = auth::authorize(
        &user,
        &auth::Attributes {
            verb,
            group,
            resource: info.resource,
            subresource: subresource.as_deref(),
            namespace: namespace.as_deref(),
            name: name.as_deref(),
        },
    ) {
        return ApiError::forbidden(message).into_response();
    }

    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("reading the body: {e}")).into_response(),
    };
    let req = ResourceRequest {
        state,
        info,
        namespace,
        name,
        subresource,
        params,
        table: wants_table(&parts.headers),
        content_type,
        body,
        user,
    };
    let result = match (verb, req.subresource.as_deref()) {
        (_, Some("scale")) => handlers::scale::scale(&req, verb).await,
        ("create", Some("binding")) => handlers::binding::bind(&req).await,
        ("create", Some("eviction")) => handlers::delete::evict(&req).await,
        (_, Some("binding" | "eviction")) => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
        ("watch", _) => handlers::watch::watch(req).await,
        ("get", _) => handlers::get::get(&req).await,
        ("list", _) => handlers::list::list(&req).await,
        ("create", _) => handlers::create::create(&req).await,
        ("update", _) => handlers::update::update(&req).await,
        ("patch", _) => handlers::patch::patch(&req).await,
        ("delete", _) => handlers::delete::delete(&req).await,
        _ => handlers::delete::delete_collection(&req).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}
