//! PUT: replace an object with optimistic concurrency (a stale resourceVersion is a 409).
//! The main endpoint keeps the stored status and the status subresource keeps the stored
//! spec, as upstream does for resources with a status subresource; spec changes bump
//! generation; an update that changes nothing writes nothing; an object being deleted whose
//! last finalizer is removed goes away.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::api::object;
use crate::api::status::{ApiError, ApiResult};
use crate::api::validate::{self, FieldValidation};
use crate::api::{with_warnings, ResourceRequest};
use crate::store::KeyValue;

use super::create::tracks_generation;

pub async fn update(req: &ResourceRequest) -> ApiResult<Response> {
    let body = req.body_json()?;
    let validation = FieldValidation::parse(req.params.field_validation.as_deref())?;
    let checked = validate::check(req.info, body, req.namespace.as_deref(), validation)?;
    let new = checked.object;
    let body_name = object::name(&new);
    if body_name != req.name_str() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            req.name_str()
        )));
    }
    let (kv, old) = req.load().await?;
    if let Some(rv) = object::resource_version(&new) {
        if rv != kv.mod_revision.to_string() {
            return Err(ApiError::stale(req.info, req.name_str()));
        }
    }
    let (obj, code) = write(req, &kv, &old, new).await?;
    Ok(with_warnings(req.respond(code, &obj), &checked.warnings))
}

/// Store `new` over `old` (read at `kv`), applying the update rules. Shared with patch and
/// graceful delete. A concurrent write makes it fail with 409 Conflict.
pub(crate) async fn write(
    req: &ResourceRequest,
    kv: &KeyValue,
    old: &Value,
    mut new: Value,
) -> ApiResult<(Value, StatusCode)> {
    let info = req.info;
    let status_only = req.subresource.as_deref() == Some("status");
    if object::is_namespace(info) {
        // spec.finalizers change only through /finalize; /finalize changes nothing else.
        let finalizers = if req.subresource.as_deref() == Some("finalize") {
            new["spec"]["finalizers"].clone()
        } else {
            old["spec"]["finalizers"].clone()
        };
        if req.subresource.as_deref() == Some("finalize") {
            new = old.clone();
        }
        if !new["spec"].is_object() {
            new["spec"] = serde_json::json!({});
        }
        match finalizers {
            Value::Null => {
                if let Some(spec) = new["spec"].as_object_mut() {
                    spec.remove("finalizers");
                }
            }
            f => new["spec"]["finalizers"] = f,
        }
    }
    if info.has_status() {
        let keep = if status_only { "spec" } else { "status" };
        if let Value::Object(m) = &mut new {
            match old.get(keep) {
                Some(v) => {
                    m.insert(keep.to_string(), v.clone());
                }
                None => {
                    m.remove(keep);
                }
            }
        }
    }
    // Fields only the server sets.
    {
        let old_meta = object::meta(old).clone();
        let m = object::meta_mut(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(k) {
                Some(v) if !v.is_null() => {
                    m.insert(k.to_string(), v.clone());
                }
                _ => {
                    m.remove(k);
                }
            }
        }
        m.insert(
            "resourceVersion".into(),
            Value::String(kv.mod_revision.to_string()),
        );
    }
    validate::default(info, &mut new);
    validate::validate_update(info, old, &mut new)?;
    validate::validate(info, &new)?;
    if tracks_generation(info, old) && new.get("spec") != old.get("spec") {
        let generation = object::meta(old)["generation"].as_i64().unwrap_or(0) + 1;
        object::meta_mut(&mut new).insert("generation".into(), Value::from(generation));
    }
    if new == *old {
        return Ok((new, StatusCode::OK));
    }
    if req.params.dry_run {
        return Ok((new, StatusCode::OK));
    }
    let being_deleted = !object::meta(&new)["deletionTimestamp"].is_null();
    let grace = object::meta(&new)["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0);
    if being_deleted && grace == 0 && object::pending_finalizers(info, &new).is_empty() {
        let gone = req
            .state
            .store
            .delete(&kv.key, Some(kv.mod_revision))
            .await
            .map_err(|e| req.store_error(e))?;
        object::set_resource_version(&mut new, gone.mod_revision);
        if object::is_namespace(info) && !req.state.namespace_controller {
            super::delete::delete_namespace_contents(req, object::name(&new)).await;
        }
        return Ok((new, StatusCode::OK));
    }
    let rev = req
        .state
        .store
        .update(&kv.key, object::encode(&new), kv.mod_revision)
        .await
        .map_err(|e| req.store_error(e))?;
    object::set_resource_version(&mut new, rev);
    Ok((new, StatusCode::OK))
}
