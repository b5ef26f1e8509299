//! GET of one object (and of its status subresource, which returns the whole object).

use axum::http::StatusCode;
use axum::response::Response;

use crate::api::status::ApiResult;
use crate::api::ResourceRequest;

pub async fn get(req: &ResourceRequest) -> ApiResult<Response> {
    let (_, obj) = req.load().await?;
    Ok(req.respond(StatusCode::OK, &obj))
}
