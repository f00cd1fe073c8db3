//! Crossbar response envelopes: `{"data", "revision", "request_id", "status": "success"}` and
//! `{"error": "<code>", "message", "data", "request_id", "status": "error"}`.
//!
//! The request id (the client's `X-Request-ID` when it is sane, else a fresh one) is set for
//! the duration of each request by [`with_request_id`], so handlers never pass it around.
//!
//! Invariant: every error the API answers is an envelope, including those axum produces
//! itself (body over the limit → 413, wrong method → 405, a path or query that does not
//! parse → 400): [`with_request_id`] wraps any error response that is not JSON.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::rules::documents::FieldError;

/// Largest request body accepted, in bytes; larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
    let mut resp = REQUEST_ID
        .scope(id.clone(), async move {
            let resp = next.run(req).await;
            let is_json = resp
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if resp.status().is_success() || is_json {
                return resp;
            }
            wrap_plain_error(resp).await
        })
        .await;
    if let Ok(v) = id.parse() {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// An error axum answered by itself (plain text) as an envelope.
async fn wrap_plain_error(resp: Response) -> Response {
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body over the limit of {MAX_BODY_BYTES} bytes")
        }
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_string(),
        StatusCode::NOT_FOUND => "not found".to_string(),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_lowercase(),
        _ => text,
    };
    ApiError::new(status, message).into_response()
}

fn request_id() -> String {
    REQUEST_ID.try_with(|r| r.clone()).unwrap_or_default()
}

pub fn success(status: StatusCode, data: Value, revision: Option<String>) -> Response {
    success_with_warning(status, data, revision, None)
}

/// A page of a listing: `next_start_key` (absent on the last page) asks for the next one as
/// `?start_key=…` (Kazoo's paging).
pub fn success_paged(data: Value, next_start_key: Option<String>) -> Response {
    let mut body = json!({"data": data, "request_id": request_id(), "status": "success"});
    if let Some(k) = next_start_key {
        body["next_start_key"] = Value::String(k);
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// A success that also carries a `warning` (a stored document that no longer parses).
pub fn success_with_warning(
    status: StatusCode,
    data: Value,
    revision: Option<String>,
    warning: Option<Value>,
) -> Response {
    let mut body = json!({"data": data, "request_id": request_id(), "status": "success"});
    if let Some(r) = revision {
        body["revision"] = Value::String(r);
    }
    if let Some(w) = warning {
        body["warning"] = w;
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

    /// 400 naming the field: `{"data": {"record_call.format": {"message": …}}}`.
    pub fn invalid(e: FieldError) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "invalid data".into(),
            data: json!({ e.path: {"message": e.message} }),
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
