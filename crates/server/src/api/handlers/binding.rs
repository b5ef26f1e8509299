//! `pods/binding`: how the scheduler assigns a pod to a node. It sets `spec.nodeName` once
//! (a bound pod cannot be re-bound: 409) and records the PodScheduled condition, as
//! kube-apiserver's binding REST does.

use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::{json, Value};

use crate::api::object;
use crate::api::status::{status_value, ApiError, ApiResult, FieldError};
use crate::api::{json, ResourceRequest};

pub async fn bind(req: &ResourceRequest) -> ApiResult<Response> {
    let body = req.body_json()?;
    let name = req.name_str();
    let node = body["target"]["name"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::invalid(
            req.info,
            name,
            vec![FieldError::required("target.name", "")],
        ));
    }
    let (kv, mut pod) = req.load().await?;
    if !object::meta(&pod)["deletionTimestamp"].is_null() {
        return Err(ApiError::conflict(
            req.info,
            name,
            &format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            req.info,
            name,
            &format!("pod {name} is already assigned to node \"{bound}\""),
        ));
    }
    pod["spec"]["nodeName"] = Value::String(node.to_string());
    if let Some(extra) = body["metadata"]["annotations"].as_object() {
        let meta = object::meta_mut(&mut pod);
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            for (k, v) in extra {
                a.insert(k.clone(), v.clone());
            }
        }
    }
    let condition = json!({"type": "PodScheduled", "status": "True",
                           "lastProbeTime": null, "lastTransitionTime": object::now()});
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conditions = pod["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = conditions {
        list.retain(|c| c["type"] != "PodScheduled");
        list.push(condition);
    }
    if !req.params.dry_run {
        req.state
            .store
            .update(&kv.key, object::encode(&pod), kv.mod_revision)
            .await
            .map_err(|e| req.store_error(e))?;
    }
    let ok = Status {
        status: Some("Success".into()),
        code: Some(201),
        ..Default::default()
    };
    Ok(json(StatusCode::CREATED, &status_value(&ok)))
}
