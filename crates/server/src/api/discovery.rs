//! Discovery: `/version`, the legacy documents (`/api`, `/api/v1`, `/apis`, `/apis/<g>`,
//! `/apis/<g>/<v>`) and the aggregated `apidiscovery.k8s.io/v2` lists kubectl 1.32 asks for
//! first, all generated from the registry. The aggregated form has no k8s-openapi type, so it
//! is built as JSON following the upstream API (k8s.io/api/apidiscovery/v2).

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use serde_json::{json, Value};

use crate::registry::{registry, subresource_kind, ResourceInfo};

use super::json;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The Kubernetes version this server implements (what kubectl checks for skew).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": concat!("v1.32.0-deckhand-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (deckhand is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=APIGroupDiscoveryList")
                && params.contains(&"v=v2")
                && params.contains(&"g=apidiscovery.k8s.io")
        })
}

/// Serve a discovery path, or `None` when `path` is not one.
pub fn serve(path: &str, headers: &HeaderMap) -> Option<Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let value = match segs.as_slice() {
        ["api"] if wants_aggregated(headers) => return Some(aggregated(true)),
        ["apis"] if wants_aggregated(headers) => return Some(aggregated(false)),
        ["api"] => to_value(&APIVersions {
            versions: vec!["v1".into()],
            server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
                client_cidr: "0.0.0.0/0".into(),
                server_address: String::new(),
            }],
        }),
        ["api", "v1"] => resource_list("", "v1"),
        ["apis"] => to_value(&APIGroupList {
            groups: registry()
                .groups()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, v)| api_group(g, v))
                .collect(),
        }),
        ["apis", g] => {
            let (g, v) = registry().groups().into_iter().find(|(x, _)| x == g)?;
            to_value(&api_group(g, v))
        }
        ["apis", g, v] => {
            registry().in_group(g, v).next()?;
            resource_list(g, v)
        }
        _ => return None,
    };
    Some(json(StatusCode::OK, &value))
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn api_group(group: &str, version: &str) -> APIGroup {
    let gv = GroupVersionForDiscovery {
        group_version: format!("{group}/{version}"),
        version: version.to_string(),
    };
    APIGroup {
        name: group.to_string(),
        preferred_version: Some(gv.clone()),
        server_address_by_client_cidrs: None,
        versions: vec![gv],
    }
}

fn api_resource(r: &ResourceInfo) -> APIResource {
    APIResource {
        name: r.resource.to_string(),
        singular_name: r.singular.clone(),
        namespaced: r.namespaced,
        kind: r.kind.to_string(),
        verbs: r.verbs.iter().map(|v| v.to_string()).collect(),
        short_names: (!r.short_names.is_empty())
            .then(|| r.short_names.iter().map(|s| s.to_string()).collect()),
        categories: (!r.categories.is_empty())
            .then(|| r.categories.iter().map(|s| s.to_string()).collect()),
        group: None,
        version: None,
        storage_version_hash: None,
    }
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in registry().in_group(group, version) {
        resources.push(api_resource(r));
        for sub in r.subresources {
            let (group, version, kind, verbs) = subresource_kind(r, sub);
            let foreign = group != r.group || version != r.version;
            resources.push(APIResource {
                name: format!("{}/{sub}", r.resource),
                singular_name: String::new(),
                namespaced: r.namespaced,
                kind: kind.to_string(),
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                short_names: None,
                categories: None,
                group: foreign.then(|| group.to_string()),
                version: foreign.then(|| version.to_string()),
                storage_version_hash: None,
            });
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    to_value(&APIResourceList {
        group_version: gv,
        resources,
    })
}

/// The aggregated discovery document for the core group (`core`) or all named groups.
fn aggregated(core: bool) -> Response {
    let items: Vec<Value> = registry()
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, v)| {
            let resources: Vec<Value> = registry()
                .in_group(g, v)
                .map(|r| {
                    let kind = json!({"group": g, "version": v, "kind": r.kind});
                    let mut res = json!({
                        "resource": r.resource,
                        "responseKind": kind,
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        res["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        res["categories"] = json!(r.categories);
                    }
                    if !r.subresources.is_empty() {
                        res["subresources"] = r
                            .subresources
                            .iter()
                            .map(|s| {
                                let (sg, sv, sk, verbs) = subresource_kind(r, s);
                                json!({"subresource": s,
                                       "responseKind": {"group": sg, "version": sv, "kind": sk},
                                       "verbs": verbs})
                            })
                            .collect();
                    }
                    res
                })
                .collect();
            let mut item = json!({
                "metadata": {"creationTimestamp": null},
                "versions": [{"version": v, "resources": resources, "freshness": "Current"}],
            });
            if !g.is_empty() {
                item["metadata"]["name"] = json!(g);
            }
            item
        })
        .collect();
    let doc = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, AGGREGATED)],
        doc.to_string(),
    )
        .into_response()
}
