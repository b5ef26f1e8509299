//! API errors as `metav1.Status` objects, with the codes, reasons and messages kube-apiserver
//! uses, so kubectl and client libraries print and classify them the same way.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

use crate::registry::ResourceInfo;
use crate::store::StoreError;

/// One field-level problem in a 422 Invalid answer.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueForbidden`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        FieldError {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: \"{value}\": {detail}"),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// An error answered to a client. Built by the constructors below, which mirror the helpers
/// in k8s.io/apimachinery/pkg/api/errors.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: most errors carry none, and a small error keeps every `Result` small.
    pub details: Option<Box<StatusDetails>>,
}

fn details(info: &ResourceInfo, name: &str) -> StatusDetails {
    StatusDetails {
        name: Some(name.to_string()),
        group: (!info.group.is_empty()).then(|| info.group.to_string()),
        kind: Some(info.resource.to_string()),
        ..Default::default()
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// A path that names no resource (upstream's generic 404 text).
    pub fn path_not_found() -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = Some(Box::default());
        e
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", info.qualified()),
        );
        e.details = Some(Box::new(details(info, name)));
        e
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", info.qualified()),
        );
        e.details = Some(Box::new(details(info, name)));
        e
    }

    /// A stale resourceVersion or a failed precondition.
    pub fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                info.qualified()
            ),
        );
        e.details = Some(Box::new(details(info, name)));
        e
    }

    pub fn stale(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<FieldError>) -> Self {
        let summary = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>();
        let summary = if summary.len() == 1 {
            summary[0].clone()
        } else {
            format!("[{}]", summary.join(", "))
        };
        let mut d = details(info, name);
        d.kind = Some(info.kind.to_string());
        d.causes = Some(
            causes
                .into_iter()
                .map(|c| StatusCause {
                    reason: Some(c.reason.to_string()),
                    message: Some(c.message),
                    field: Some(c.field),
                })
                .collect(),
        );
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {summary}", info.kind),
        );
        e.details = Some(Box::new(d));
        e
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"),
        )
    }

    /// A resourceVersion older than the store keeps (watch and list).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        );
        e.details = Some(Box::new(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ResourceVersionTooLarge".to_string()),
                message: Some("Too large resource version".to_string()),
                field: None,
            }]),
            retry_after_seconds: Some(1),
            ..Default::default()
        }));
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// Map a store failure on `name` of `info`.
    pub fn from_store(info: &ResourceInfo, name: &str, err: StoreError) -> Self {
        match err {
            StoreError::NotFound(_) => Self::not_found(info, name),
            StoreError::AlreadyExists(_) => Self::already_exists(info, name),
            StoreError::Conflict { .. } => Self::stale(info, name),
            StoreError::Compacted {
                requested,
                compacted,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::FutureRevision { requested, current } => {
                Self::too_large_resource_version(requested, current)
            }
            StoreError::Backend(e) => Self::internal(e),
        }
    }

    pub fn to_status(&self) -> Status {
        Status {
            status: Some("Failure".to_string()),
            message: Some(self.message.clone()),
            reason: Some(self.reason.to_string()),
            code: Some(i32::from(self.code)),
            details: self.details.as_deref().cloned(),
            metadata: ListMeta::default(),
        }
    }

    pub fn to_value(&self) -> serde_json::Value {
        status_value(&self.to_status())
    }
}

/// A Status as JSON with its kind and apiVersion (k8s-openapi's Status serializes them).
pub fn status_value(status: &Status) -> serde_json::Value {
    serde_json::to_value(status).unwrap_or_else(|_| serde_json::json!({"kind": "Status"}))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_value().to_string();
        (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
