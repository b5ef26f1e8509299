//! PATCH: JSON patch, JSON merge patch, strategic merge patch and server-side apply (the
//! patch module computes the new object), then the update rules. A write that loses a race
//! re-reads and re-applies the patch, as upstream's GuaranteedUpdate does, unless the patch
//! itself pinned a resourceVersion.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::api::object;
use crate::api::patch::{self, PatchKind};
use crate::api::status::{ApiError, ApiResult};
use crate::api::validate::{self, FieldValidation};
use crate::api::{with_warnings, ResourceRequest};

/// Re-reads after losing a write race before answering 409.
const RETRIES: usize = 5;

fn kind(content_type: &str) -> ApiResult<PatchKind> {
    PatchKind::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))
}

pub async fn patch(req: &ResourceRequest) -> ApiResult<Response> {
    let kind = kind(&req.content_type)?;
    let validation = FieldValidation::parse(req.params.field_validation.as_deref())?;
    if kind == PatchKind::Apply && req.params.field_manager.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::bad_request(
            "PATCH requests with server-side apply require a fieldManager",
        ));
    }
    let mut attempt = 0;
    loop {
        let loaded = match req.load().await {
            Ok(l) => Some(l),
            Err(e) if e.code == 404 && kind == PatchKind::Apply => None,
            Err(e) => return Err(e),
        };
        let original = match &loaded {
            Some((_, obj)) => obj.clone(),
            None => serde_json::json!({"metadata": {"name": req.name_str()}}),
        };
        let resource = match &req.subresource {
            Some(sub) => format!("{}/{sub}", req.info.qualified()),
            None => req.info.qualified(),
        };
        let patched = patch::apply(kind, &resource, &original, &req.body).map_err(|e| {
            let message = e.to_string();
            match e.http_status() {
                422 => ApiError::invalid(
                    req.info,
                    req.name_str(),
                    vec![crate::api::status::FieldError {
                        reason: "FieldValueInvalid",
                        field: "patch".into(),
                        message,
                    }],
                ),
                415 => ApiError::unsupported_media_type(&req.content_type),
                _ => ApiError::bad_request(message),
            }
        })?;
        let checked = validate::check(req.info, patched, req.namespace.as_deref(), validation)?;
        if object::name(&checked.object) != req.name_str() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                object::name(&checked.object),
                req.name_str()
            )));
        }
        let Some((kv, old)) = loaded else {
            let (obj, _) = super::create::create_object(req, checked.object).await?;
            return Ok(with_warnings(
                req.respond(StatusCode::CREATED, &obj),
                &checked.warnings,
            ));
        };
        let pinned = object::resource_version(&checked.object).map(str::to_string);
        let current = kv.mod_revision.to_string();
        if pinned.as_deref().is_some_and(|rv| rv != current) {
            return Err(ApiError::stale(req.info, req.name_str()));
        }
        let pinned_by_patch = object::resource_version(&original) != pinned.as_deref();
        match super::update::write(req, &kv, &old, with_rv(checked.object, &current)).await {
            Ok((obj, code)) => {
                return Ok(with_warnings(req.respond(code, &obj), &checked.warnings))
            }
            Err(e) if e.code == 409 && !pinned_by_patch && attempt < RETRIES => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

fn with_rv(mut obj: Value, rv: &str) -> Value {
    object::meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
    obj
}
