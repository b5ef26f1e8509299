//! SelfSubjectAccessReview (`kubectl auth can-i`): the authorizer's answer for the caller,
//! returned in the review's status and never stored.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::api::json;
use crate::api::status::{ApiError, ApiResult};
use crate::auth::{self, User};

pub fn self_subject_access_review(
    user: &User,
    content_type: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let mut review: Value = if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        crate::api::protobuf::decode(body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(content_type);
            err.message = e.to_string();
            err
        })?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?
    };
    let spec = &review["spec"];
    let allowed = if let Some(ra) = spec["resourceAttributes"].as_object() {
        let s = |k: &str| ra.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        let attrs = auth::Attributes {
            verb: s("verb").unwrap_or_default(),
            group: s("group").unwrap_or_default(),
            resource: s("resource").unwrap_or_default(),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
        };
        auth::authorize(user, &attrs)
    } else if spec["nonResourceAttributes"].is_object() {
        // Non-resource URLs (discovery, health) are open to every authenticated user.
        Ok(())
    } else {
        return Err(ApiError::bad_request(
            "exactly one of spec.resourceAttributes and spec.nonResourceAttributes must be set",
        ));
    };
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    review["status"] = match allowed {
        Ok(()) => json!({"allowed": true, "reason": "allowed by the system:masters group"}),
        // As RBAC: a denial has no reason (kubectl would print it after "no").
        Err(_) => json!({"allowed": false}),
    };
    Ok(json(StatusCode::CREATED, &review))
}
