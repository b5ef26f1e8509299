//! A minimal OpenAPI v3 discovery: the `/openapi/v3` index and one document per group
//! version listing each resource's operations with the query parameters it accepts.
//! kubectl reads the PATCH operations' parameters to learn that the server does field
//! validation (`fieldValidation`), and otherwise refuses `apply`/`create` without
//! `--validate=false`. Full schemas (for `kubectl explain`) are not served yet.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::registry::{registry, ResourceInfo};

use super::json;
use super::status::ApiError;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn serve(path: &str) -> Response {
    let rest = path
        .trim_start_matches("/openapi/v3")
        .trim_start_matches('/');
    if rest.is_empty() {
        let mut paths = Map::new();
        for (g, v) in registry().groups() {
            let p = gv_path(g, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash())}),
            );
        }
        return json(StatusCode::OK, &json!({"paths": paths}));
    }
    for (g, v) in registry().groups() {
        if gv_path(g, v) == rest {
            return json(StatusCode::OK, &document(g, v));
        }
    }
    axum::response::IntoResponse::into_response(ApiError::path_not_found())
}

/// Changes whenever the served API can (clients cache documents by this).
fn hash() -> &'static str {
    concat!("deckhand-", env!("CARGO_PKG_VERSION"))
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operations(r: &ResourceInfo, item: bool) -> Value {
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let op = |action: &str, params: Vec<Value>| {
        json!({
            "operationId": format!("{action}{}", r.kind),
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    let write_params = || {
        vec![
            param("dryRun"),
            param("fieldManager"),
            param("fieldValidation"),
        ]
    };
    if item {
        let mut patch_params = write_params();
        patch_params.push(param("force"));
        json!({
            "get": op("get", vec![]),
            "put": op("put", write_params()),
            "patch": op("patch", patch_params),
            "delete": op("delete", vec![param("dryRun"), param("gracePeriodSeconds"), param("propagationPolicy")]),
        })
    } else {
        json!({
            "get": op("list", vec![param("labelSelector"), param("fieldSelector"), param("limit"),
                                   param("continue"), param("resourceVersion"), param("watch")]),
            "post": op("post", write_params()),
            "delete": op("deletecollection", vec![param("labelSelector"), param("fieldSelector")]),
        })
    }
}

fn document(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    for r in registry().in_group(group, version) {
        let base = format!("/{}", gv_path(group, version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.resource)
        } else {
            format!("{base}/{}", r.resource)
        };
        paths.insert(format!("{collection}/{{name}}"), operations(r, true));
        paths.insert(collection, operations(r, false));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })
}
