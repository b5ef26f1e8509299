//! The generic REST handlers, one file per verb, shared by every resource in the registry.
//! Objects are `serde_json::Value`s that passed the typed check in `validate`.

pub mod binding;
pub mod create;
pub mod delete;
pub mod get;
pub mod list;
pub mod patch;
pub mod review;
pub mod scale;
pub mod update;
pub mod watch;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::store::{KeyValue, StoreError};

use super::object;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult};
use super::table::IncludeObject;
use super::{json, table, ResourceRequest};

impl ResourceRequest {
    /// The store key of the named object.
    pub(crate) fn key(&self) -> String {
        self.info.key(
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or_default(),
        )
    }

    pub(crate) fn name_str(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// The stored object and its store entry; 404 naming it when absent.
    pub(crate) async fn load(&self) -> ApiResult<(KeyValue, Value)> {
        let kv = self
            .state
            .store
            .get(&self.key())
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or_else(|| ApiError::not_found(self.info, self.name_str()))?;
        let obj = object::decode(self.info, &kv)?;
        Ok((kv, obj))
    }

    pub(crate) fn store_error(&self, e: StoreError) -> ApiError {
        ApiError::from_store(self.info, self.name_str(), e)
    }

    /// The request body as JSON (kubectl sends JSON; YAML is accepted as upstream does).
    pub(crate) fn body_json(&self) -> ApiResult<Value> {
        let ct = self.content_type.as_str();
        if ct.starts_with("application/yaml") {
            return serde_yaml::from_slice(&self.body)
                .map_err(|e| ApiError::bad_request(format!("the body is not valid YAML: {e}")));
        }
        if ct.starts_with("application/vnd.kubernetes.protobuf") {
            return crate::api::protobuf::decode(&self.body).map_err(|e| {
                let mut err = ApiError::unsupported_media_type(ct);
                err.message = e.to_string();
                err
            });
        }
        if !(ct.starts_with("application/json") || ct.starts_with("*/*") || ct.is_empty()) {
            return Err(ApiError::unsupported_media_type(ct));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as JSON: {e}"
            ))
        })
    }

    /// One object in the negotiated form (itself, or a one-row Table).
    pub(crate) fn respond(&self, code: StatusCode, obj: &Value) -> Response {
        if self.table && self.subresource.is_none() {
            let mut t = table::to_table(
                &self.info.qualified(),
                std::slice::from_ref(obj),
                self.include_object(),
                std::time::SystemTime::now(),
            );
            if let Some(rv) = object::resource_version(obj) {
                t["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            }
            return json(code, &t);
        }
        json(code, obj)
    }

    /// What each Table row carries (`includeObject`; upstream's default is metadata).
    pub(crate) fn include_object(&self) -> IncludeObject {
        self.params
            .include_object
            .as_deref()
            .and_then(IncludeObject::parse)
            .unwrap_or_default()
    }
}

/// Parsed label and field selectors of a list, watch or deletecollection.
pub(crate) struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    pub fn new(req: &ResourceRequest) -> ApiResult<Filter> {
        let labels = match req.params.label_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
            }
            _ => None,
        };
        let fields = match req.params.field_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => Some(
                FieldSelector::parse(&req.info.qualified(), s)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            _ => None,
        };
        Ok(Filter { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|l| l.matches(&object::labels(obj)))
            && self.fields.as_ref().is_none_or(|f| f.matches(obj))
    }
}
