//! POST: create an object. The server sets uid, creationTimestamp, generation and (from the
//! store revision) resourceVersion; generateName gets a random suffix; the namespace must
//! exist; `dryRun=All` validates and answers without storing.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::api::object;
use crate::api::status::{ApiError, ApiResult};
use crate::api::validate::{self, FieldValidation};
use crate::api::{with_warnings, ResourceRequest};
use crate::registry::registry;
use crate::store::StoreError;

/// Attempts at a free generated name before giving up (5 random characters rarely collide).
const GENERATE_ATTEMPTS: usize = 5;

pub async fn create(req: &ResourceRequest) -> ApiResult<Response> {
    let body = req.body_json()?;
    let validation = FieldValidation::parse(req.params.field_validation.as_deref())?;
    let checked = validate::check(req.info, body, req.namespace.as_deref(), validation)?;
    let (obj, code) = create_object(req, checked.object).await?;
    Ok(with_warnings(req.respond(code, &obj), &checked.warnings))
}

/// Create a checked object (also used by server-side apply of an absent object).
pub(crate) async fn create_object(
    req: &ResourceRequest,
    mut obj: Value,
) -> ApiResult<(Value, StatusCode)> {
    let info = req.info;
    let generate = object::meta(&obj)["generateName"]
        .as_str()
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .filter(|_| object::name(&obj).is_empty());
    if let Some(g) = &generate {
        object::meta_mut(&mut obj).insert(
            "name".into(),
            Value::String(format!("{g}{}", object::name_suffix())),
        );
    }
    {
        let m = object::meta_mut(&mut obj);
        m.insert("uid".into(), Value::String(object::new_uid()));
        m.insert("creationTimestamp".into(), Value::String(object::now()));
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
        // Objects with a spec track spec changes in generation (pods do not, before 1.33).
        if tracks_generation(info, &obj) {
            object::meta_mut(&mut obj).insert("generation".into(), Value::from(1));
        }
    }
    validate::default(info, &mut obj);
    if object::is_namespace(info) && req.state.namespace_controller {
        obj["spec"]["finalizers"] = serde_json::json!(["kubernetes"]);
    }
    validate::validate(info, &obj)?;

    if let Some(ns) = req.namespace.as_deref().filter(|_| info.namespaced) {
        let namespaces = registry()
            .find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
        let exists = req
            .state
            .store
            .get(&namespaces.key(None, ns))
            .await
            .map_err(|e| ApiError::from_store(namespaces, ns, e))?;
        match exists {
            None => return Err(ApiError::not_found(namespaces, ns)),
            Some(kv) => {
                let nsobj = object::decode(namespaces, &kv)?;
                if !object::meta(&nsobj)["deletionTimestamp"].is_null() {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        info.qualified(),
                        object::name(&obj)
                    )));
                }
            }
        }
    }

    if req.params.dry_run {
        let name = object::name(&obj).to_string();
        let key = info.key(req.namespace.as_deref(), &name);
        let existing = req.state.store.get(&key).await;
        if existing
            .map_err(|e| ApiError::from_store(info, &name, e))?
            .is_some()
        {
            return Err(ApiError::already_exists(info, &name));
        }
        return Ok((obj, StatusCode::CREATED));
    }
    let mut attempt = 0;
    loop {
        let name = object::name(&obj).to_string();
        let key = info.key(req.namespace.as_deref(), &name);
        match req.state.store.create(&key, object::encode(&obj)).await {
            Ok(rev) => {
                object::set_resource_version(&mut obj, rev);
                return Ok((obj, StatusCode::CREATED));
            }
            Err(StoreError::AlreadyExists(_))
                if generate.is_some() && attempt < GENERATE_ATTEMPTS =>
            {
                attempt += 1;
                let g = generate.as_deref().unwrap_or_default();
                object::meta_mut(&mut obj).insert(
                    "name".into(),
                    Value::String(format!("{g}{}", object::name_suffix())),
                );
            }
            Err(e) => return Err(ApiError::from_store(info, &name, e)),
        }
    }
}

/// Objects with a spec count its changes in metadata.generation; pods (before 1.33) and
/// namespaces do not, as upstream.
pub(crate) fn tracks_generation(info: &crate::registry::ResourceInfo, obj: &Value) -> bool {
    let exempt = info.group.is_empty() && matches!(info.resource, "pods" | "namespaces");
    !exempt && obj.get("spec").is_some_and(|s| !s.is_null())
}
