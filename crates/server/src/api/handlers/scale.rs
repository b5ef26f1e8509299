//! The `scale` subresource of Deployments and ReplicaSets: an `autoscaling/v1` Scale view of
//! `spec.replicas` (what `kubectl scale` and autoscalers read and write). Writes go through
//! the main object's update rules, so generation and optimistic concurrency behave the same.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::api::object;
use crate::api::patch::{self, PatchKind};
use crate::api::status::{ApiError, ApiResult, FieldError};
use crate::api::{json, ResourceRequest};
use crate::registry::ResourceInfo;

/// Re-reads after losing a write race before answering 409.
const RETRIES: usize = 5;

/// `spec.selector.matchLabels` as a selector string (`app=web,tier=fe`).
fn selector_string(obj: &Value) -> String {
    obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn to_scale(obj: &Value) -> Value {
    let meta = object::meta(obj);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(obj),
        },
    })
}

fn invalid(info: &ResourceInfo, name: &str, value: &Value) -> ApiError {
    let mut e = ApiError::invalid(
        info,
        name,
        vec![FieldError {
            reason: "FieldValueInvalid",
            field: "spec.replicas".into(),
            message: format!("Invalid value: {value}: must be greater than or equal to 0"),
        }],
    );
    e.message = format!(
        "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {value}: must be greater than or equal to 0"
    );
    e
}

pub async fn scale(req: &ResourceRequest, verb: &str) -> ApiResult<Response> {
    let mut attempt = 0;
    loop {
        let (kv, obj) = req.load().await?;
        let current = to_scale(&obj);
        let desired = match verb {
            "get" => return Ok(json(StatusCode::OK, &current)),
            "update" => req.body_json()?,
            "patch" => {
                let kind = PatchKind::from_content_type(&req.content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(&req.content_type))?;
                // A Scale has no merge keys: a strategic merge is a plain merge here.
                let kind = if kind == PatchKind::StrategicMerge {
                    PatchKind::Merge
                } else {
                    kind
                };
                patch::apply(kind, "scales.autoscaling", &current, &req.body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            other => {
                return Err(ApiError::method_not_allowed(format!(
                    "{other} is not supported on the scale subresource"
                )))
            }
        };
        let replicas = &desired["spec"]["replicas"];
        let n = replicas
            .as_i64()
            .filter(|n| *n >= 0 && *n <= i64::from(i32::MAX))
            .ok_or_else(|| invalid(req.info, req.name_str(), replicas))?;
        let pinned = object::resource_version(&desired)
            .filter(|rv| Some(*rv) != object::resource_version(&current));
        if pinned.is_some() {
            return Err(ApiError::stale(req.info, req.name_str()));
        }
        let mut new = obj.clone();
        new["spec"]["replicas"] = Value::from(n);
        match super::update::write(req, &kv, &obj, new).await {
            Ok((written, _)) => return Ok(json(StatusCode::OK, &to_scale(&written))),
            Err(e) if e.code == 409 && verb == "patch" && attempt < RETRIES => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
