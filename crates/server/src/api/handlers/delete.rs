//! DELETE and deletecollection.
//!
//! Upstream semantics: a pod bound to a node is deleted gracefully (deletionTimestamp and
//! deletionGracePeriodSeconds are set and the object stays until the kubelet, or a delete
//! with grace 0, removes it); an object with finalizers stays, marked for deletion, until
//! they are all removed; `propagationPolicy` Foreground/Orphan is recorded as the
//! `foregroundDeletion`/`orphan` finalizer for the garbage collector. An immediate delete
//! answers a Success Status; one that leaves the object answers the object.

use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};
use serde_json::{json, Value};

use crate::api::object;
use crate::api::status::{status_value, ApiError, ApiResult};
use crate::api::{json, ResourceRequest};
use crate::registry::registry;
use crate::store::KeyValue;

use super::Filter;

/// DeleteOptions from the body (kubectl sends one) merged over the query parameters.
struct Options {
    grace: Option<i64>,
    policy: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

fn options(req: &ResourceRequest) -> ApiResult<Options> {
    // kubectl's typed clients send DeleteOptions as protobuf, the others as JSON.
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        req.body_json()?
    };
    let dry_run_body = body["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(Options {
        grace: body["gracePeriodSeconds"]
            .as_i64()
            .or(req.params.grace_period_seconds),
        policy: body["propagationPolicy"]
            .as_str()
            .map(str::to_string)
            .or_else(|| req.params.propagation_policy.clone()),
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run: req.params.dry_run || dry_run_body,
    })
}

/// `pods/eviction` (`kubectl drain`): a delete with the Eviction's DeleteOptions. No
/// PodDisruptionBudgets are served yet, so every eviction is allowed.
pub async fn evict(req: &ResourceRequest) -> ApiResult<Response> {
    let eviction = req.body_json()?;
    let named = eviction["metadata"]["name"].as_str().unwrap_or_default();
    if !named.is_empty() && named != req.name_str() {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object ({named} vs {})",
            req.name_str()
        )));
    }
    let opts = &eviction["deleteOptions"];
    let mut opts = Options {
        grace: opts["gracePeriodSeconds"].as_i64(),
        policy: opts["propagationPolicy"].as_str().map(str::to_string),
        uid: opts["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: opts["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run: req.params.dry_run,
    };
    opts.dry_run |= eviction["deleteOptions"]["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    let (kv, obj) = req.load().await?;
    delete_one(req, &opts, kv, obj).await?;
    let ok = Status {
        status: Some("Success".into()),
        code: Some(201),
        ..Default::default()
    };
    Ok(json(StatusCode::CREATED, &status_value(&ok)))
}

pub async fn delete(req: &ResourceRequest) -> ApiResult<Response> {
    let opts = options(req)?;
    let (kv, obj) = req.load().await?;
    let (code, body) = delete_one(req, &opts, kv, obj).await?;
    Ok(json(code, &body))
}

async fn delete_one(
    req: &ResourceRequest,
    opts: &Options,
    kv: KeyValue,
    mut obj: Value,
) -> ApiResult<(StatusCode, Value)> {
    let info = req.info;
    let name = object::name(&obj).to_string();
    let uid = object::meta(&obj)["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(want) = &opts.uid {
        if *want != uid {
            return Err(ApiError::conflict(
                info,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
    }
    if let Some(want) = &opts.resource_version {
        if *want != kv.mod_revision.to_string() {
            return Err(ApiError::conflict(
                info,
                &name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
    }
    if let Some(p) = &opts.policy {
        if !matches!(p.as_str(), "Foreground" | "Background" | "Orphan") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {p:?} is not one of Foreground, Background, Orphan"
            )));
        }
    }

    // Grace: only pods have one; a pod not on a node, or already finished, has nothing to
    // stop and goes at once.
    let mut grace = 0;
    if info.group.is_empty() && info.resource == "pods" {
        let spec_grace = obj["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        grace = opts.grace.unwrap_or(spec_grace).max(0);
        let unscheduled = obj["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .is_empty();
        let finished = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if unscheduled || finished {
            grace = 0;
        }
        // A second delete may only shorten a grace period already running.
        if let Some(current) = object::meta(&obj)["deletionGracePeriodSeconds"].as_i64() {
            grace = grace.min(current);
        }
    }
    let mut finalizers = object::finalizers(&obj);
    let wanted = match opts.policy.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    if let Some(f) = wanted {
        if !finalizers.iter().any(|x| x == f) {
            finalizers.push(f.to_string());
        }
    }

    let namespace_finalizers =
        object::pending_finalizers(info, &obj).len() > object::finalizers(&obj).len();
    if grace > 0 || !finalizers.is_empty() || namespace_finalizers {
        let before = obj.clone();
        if object::is_namespace(info) {
            // Upstream: a namespace being deleted is Terminating until its content is gone.
            obj["status"]["phase"] = json!("Terminating");
        }
        let m = object::meta_mut(&mut obj);
        if grace > 0 || m.get("deletionTimestamp").is_none_or(Value::is_null) {
            m.insert(
                "deletionTimestamp".into(),
                Value::String(object::time_after(grace)),
            );
        }
        m.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
        if !finalizers.is_empty() {
            m.insert("finalizers".into(), json!(finalizers));
        }
        if obj == before || opts.dry_run {
            return Ok((StatusCode::OK, obj));
        }
        let rev = req
            .state
            .store
            .update(&kv.key, object::encode(&obj), kv.mod_revision)
            .await
            .map_err(|e| ApiError::from_store(info, &name, e))?;
        object::set_resource_version(&mut obj, rev);
        return Ok((StatusCode::OK, obj));
    }

    if opts.dry_run {
        return Ok((StatusCode::OK, success(req, &name, &uid)));
    }
    req.state
        .store
        .delete(&kv.key, Some(kv.mod_revision))
        .await
        .map_err(|e| ApiError::from_store(info, &name, e))?;
    if object::is_namespace(info) && !req.state.namespace_controller {
        delete_namespace_contents(req, &name).await;
    }
    Ok((StatusCode::OK, success(req, &name, &uid)))
}

/// Without a namespace controller (`ApiState::namespace_controller`), a deleted namespace's
/// objects are removed here, at once.
pub(crate) async fn delete_namespace_contents(req: &ResourceRequest, ns: &str) {
    for info in registry().all().iter().filter(|r| r.namespaced) {
        let prefix = info.prefix(Some(ns));
        let Ok(page) = req.state.store.list(&prefix, None, None, None).await else {
            continue;
        };
        for kv in page.items {
            if let Err(e) = req.state.store.delete(&kv.key, None).await {
                tracing::warn!(key = %kv.key, error = %e, "deleting namespace content");
            }
        }
    }
}

fn success(req: &ResourceRequest, name: &str, uid: &str) -> Value {
    status_value(&Status {
        status: Some("Success".into()),
        details: Some(StatusDetails {
            name: Some(name.to_string()),
            group: (!req.info.group.is_empty()).then(|| req.info.group.to_string()),
            kind: Some(req.info.resource.to_string()),
            uid: Some(uid.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub async fn delete_collection(req: &ResourceRequest) -> ApiResult<Response> {
    let opts = options(req)?;
    let filter = Filter::new(req)?;
    let page = super::list::read(req, &filter).await?;
    let mut items = Vec::new();
    for obj in page.items {
        let key = req.info.key(object::namespace(&obj), object::name(&obj));
        // Re-read: each object is deleted at its own latest revision.
        let Some(kv) = req
            .state
            .store
            .get(&key)
            .await
            .map_err(|e| req.store_error(e))?
        else {
            continue;
        };
        let current = object::decode(req.info, &kv)?;
        match delete_one(req, &opts, kv, current.clone()).await {
            Ok(_) => items.push(current),
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": req.info.list_kind,
        "apiVersion": req.info.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": items,
    });
    Ok(json(StatusCode::OK, &list))
}
