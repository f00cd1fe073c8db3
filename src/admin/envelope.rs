//! Crossbar response envelopes: `{"data", "revision", "request_id", "status": "success"}` and
//! `{"error": "<code>", "message", "data", "request_id", "status": "error"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::rules::model::FieldErrors;

pub fn success(
    status: StatusCode,
    data: Value,
    revision: Option<String>,
    request_id: &str,
) -> Response {
    let mut body = json!({"data": data, "request_id": request_id, "status": "success"});
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

    pub fn into_response_with(self, request_id: &str) -> Response {
        let body = json!({
            "error": self.status.as_u16().to_string(),
            "message": self.message,
            "data": self.data,
            "request_id": request_id,
            "status": "error",
        });
        (self.status, Json(body)).into_response()
    }
}
