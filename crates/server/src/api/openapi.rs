//! OpenAPI v3: the `/openapi/v3` index and one document per group version, with each
//! resource's operations and the schemas of its types (from k8s-openapi, tagged with
//! `x-kubernetes-group-version-kind` as upstream's are, so `kubectl explain` finds them).
//! kubectl reads the PATCH operations' parameters to learn that the server does field
//! validation (`fieldValidation`), and otherwise refuses `apply`/`create` without
//! `--validate=false`. The PATCH operations declare no request bodies on purpose: kubectl
//! then computes `apply` patches from its compiled-in types, whose merge keys are exact,
//! rather than from these schemas, which do not carry `x-kubernetes-patch-merge-key`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
            return cached(rest, || document(g, v));
        }
    }
    ApiError::path_not_found().into_response()
}

/// Documents are built once per process: the served API does not change while it runs,
/// and building one (schemas included) costs milliseconds kubectl would wait for each time.
fn cached(key: &str, build: impl FnOnce() -> Value) -> Response {
    static DOCS: std::sync::LazyLock<std::sync::Mutex<HashMap<String, Arc<String>>>> =
        std::sync::LazyLock::new(Default::default);
    let hit = DOCS.lock().ok().and_then(|d| d.get(key).cloned());
    let body = match hit {
        Some(b) => b,
        None => {
            let b = Arc::new(build().to_string());
            if let Ok(mut d) = DOCS.lock() {
                d.insert(key.to_string(), b.clone());
            }
            b
        }
    };
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.as_str().to_owned(),
    )
        .into_response()
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
        "components": {"schemas": schemas(group, version)},
    })
}

/// The component schemas of a group version's resources and everything they refer to.
fn schemas(group: &str, version: &str) -> Value {
    let mut gen = schemars::gen::SchemaSettings::openapi3().into_generator();
    let mut tagged = Vec::new();
    for r in registry().in_group(group, version) {
        let reference = (r.schema)(&mut gen);
        if let Some(name) = reference
            .into_object()
            .reference
            .and_then(|r| r.rsplit('/').next().map(str::to_string))
        {
            tagged.push((name, r));
        }
    }
    let mut defs = serde_json::to_value(gen.take_definitions()).unwrap_or_else(|_| json!({}));
    for (name, r) in tagged {
        if let Some(schema) = defs.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
            );
        }
    }
    wrap_refs(&mut defs);
    defs
}

/// OpenAPI 3.0 ignores the siblings of a `$ref`; upstream wraps such references in `allOf`
/// so a field keeps its own description. Do the same.
fn wrap_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.len() > 1 {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
            m.values_mut().for_each(wrap_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}
