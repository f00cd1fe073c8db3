//! Crossbar response envelopes: `{"data", "revision", "request_id", "status": "success"}` and
//! `{"error": "<code>", "message", "data", "request_id", "status": "error"}`.
//!
//! The request id (the client's `X-Request-ID` when it is sane, else a fresh one) is set for
//! the duration of each request by [`with_request_id`], so handlers never pass it around.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::rules::model::FieldErrors;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Middleware: gives the request its id for envelopes and echoes it in `X-Request-ID`.
pub async fn with_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = id.parse() {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn request_id() -> String {
    REQUEST_ID.try_with(|r| r.clone()).unwrap_or_default()
}

pub fn success(status: StatusCode, data: Value, revision: Option<String>) -> Response {
    let mut body = json!({"data": data, "request_id": request_id(), "status": "success"});
    if let Some(r) = revision {
        body["revision"] = Value::String(r);
    }
    (status, Json(body)).into_response()
}

/// An API error: status, message, optional details.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub data: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            data: json!({}),
        }
    }

    pub fn invalid(errors: FieldErrors) -> ApiError {
        let data: serde_json::Map<String, Value> = errors
            .into_iter()
            .map(|(k, v)| (k, json!({"message": v})))
            .collect();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "invalid data".into(),
            data: Value::Object(data),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.status.as_u16().to_string(),
            "message": self.message,
            "data": self.data,
            "request_id": request_id(),
            "status": "error",
        });
        (self.status, Json(body)).into_response()
    }
}
