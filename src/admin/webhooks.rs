//! What the API does for webhook documents beyond the other collections: the secret is
//! write-only (kept across writes that do not name one, made when there is none and shown in
//! that one response). (Like every document, a webhook records its writer, `pvt_writer`, so a
//! notification connects under the destination policy row of whoever wrote the `uri`.)
//!
//! Invariants: a stored webhook always has a secret; a secret leaves callrec only in the
//! response to the write that generated it.

use serde_json::Value;

use super::envelope::ApiError;
use super::handlers::stored;
use super::ApiState;
use crate::settings::webhook::Secret;
use crate::store::Kind;
use axum::http::StatusCode;

/// Readies `data` for storing: the secret kept or generated. Returns the generated secret
/// (`whsec_…`) to show once.
pub(super) async fn prepare(
    state: &ApiState,
    account_id: &str,
    id: &str,
    data: &mut Value,
) -> Result<Option<String>, ApiError> {
    let Some(obj) = data.as_object_mut() else {
        return Ok(None); // not an object: the parser says so
    };
    if obj.get("secret").is_some_and(|s| !s.is_null()) {
        return Ok(None);
    }
    obj.remove("secret");
    // A whole-document write (PUT) keeps the stored secret: nobody can send it back.
    let stored = stored(state.store.get(Kind::Webhook, account_id, id)).await?;
    if let Some(secret) = stored
        .as_ref()
        .and_then(|d| d.body.get("secret"))
        .and_then(Value::as_str)
        .filter(|s| Secret::parse(s).is_ok())
    {
        obj.insert("secret".into(), Value::String(secret.to_string()));
        return Ok(None);
    }
    let secret = Secret::generate()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .reveal();
    obj.insert("secret".into(), Value::String(secret.clone()));
    Ok(Some(secret))
}
