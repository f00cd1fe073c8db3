//! Erasure on request: `DELETE /v2/accounts/{account_id}/recordings/{id}` and
//! `DELETE /v2/accounts/{account_id}/recordings?call_id=…` take out everything callrec holds of a
//! recording (its file, its `.json`, its row, journal and deliveries: pending ones are
//! cancelled). What was already delivered to the account's own server is not callrec's to
//! delete.
//!
//! Invariants: a recording still recording or being uploaded is never erased (409 naming it and
//! its state); a recording whose file is on another node is erased by that node (the request is
//! sent on, 503 naming the node when it cannot be reached); every erasure writes one audit line
//! (`callrec::audit`) naming the token's id, the account, the recording and the call's id, with
//! no caller data.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::control::{forward, Forward, FORWARDED};
use super::envelope::{success, ApiError};
use super::handlers::{authorize, stored, ApiResult};
use super::ApiState;
use crate::store::retention::Erasure;
use crate::uploader::retention::{self, FilesRemoved};

/// The request's token as sent (to send the request on to another node).
pub(super) fn raw_token(headers: &HeaderMap) -> String {
    headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The id of the request's token (never the token): what audit lines name.
pub(super) fn token_id(headers: &HeaderMap) -> String {
    crate::store::tokens::token_id(&raw_token(headers))
}

fn audit(token: &str, account_id: &str, r: &crate::store::retention::Removed, f: FilesRemoved) {
    tracing::info!(
        target: "callrec::audit",
        token_id = %token,
        account_id = %crate::telemetry::printable(account_id),
        recording_id = %r.id,
        call_id = %crate::telemetry::printable(&r.call_id),
        was = r.state.as_str(),
        files = f.files,
        bytes = f.bytes,
        "recording erased on request"
    );
}

fn busy(id: &str, state: crate::store::RecordingState) -> ApiError {
    let what = match state.as_str() {
        "recording" => "still recording",
        "uploading" => "being uploaded now",
        other => other,
    };
    ApiError {
        status: StatusCode::CONFLICT,
        message: format!("recording {id} is {what}: try again once it is kept"),
        data: json!({"recording_id": id, "state": state.as_str()}),
    }
}

pub async fn delete_recording(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let token = token_id(&headers);
    let (outcome, files) = stored(retention::erase(
        &state.store,
        &id,
        Some(account_id.as_str()),
    ))
    .await?;
    match outcome {
        Erasure::Unknown => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("recordings/{id} not found"),
        )),
        Erasure::Busy(s) => Err(busy(&id, s)),
        Erasure::Elsewhere(node) => {
            let raw = raw_token(&headers);
            let empty = Bytes::new();
            let req = Forward {
                method: reqwest::Method::DELETE,
                path: format!("/v2/accounts/{account_id}/recordings/{id}"),
                token: &raw,
                body: &empty,
                forwarded: headers.contains_key(FORWARDED),
            };
            forward(&state, &node, req).await
        }
        Erasure::Removed(r) => {
            audit(&token, &account_id, &r, files);
            Ok(success(
                StatusCode::OK,
                json!({"id": r.id, "call_id": r.call_id, "erased": {"files": files.files, "bytes": files.bytes}}),
                None,
            ))
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct CallQuery {
    pub call_id: Option<String>,
}

/// Every recording of one call: all or, when one is busy, none that is busy (the 409 names
/// them and lists what was erased).
pub async fn delete_call(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    Query(q): Query<CallQuery>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let call_id = q
        .call_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "invalid query".into(),
            data: json!({"call_id": {"message": "required: the call whose recordings to erase"}}),
        })?;
    let token = token_id(&headers);
    let ids = stored(
        state
            .store
            .recordings_of_call(Some(account_id.as_str()), &call_id),
    )
    .await?;
    if ids.is_empty() {
        // No recording, but the call's decision record holds its parties too.
        let n = erase_decisions(&state, &token, &account_id, &call_id).await?;
        if n == 0 {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no recording or decision record of call {call_id} in this account"),
            ));
        }
        return Ok(success(
            StatusCode::OK,
            json!({"call_id": call_id, "erased": [], "decision_records": n}),
            None,
        ));
    }
    // Nothing is erased while any of the call's recordings is busy.
    let states = stored(async {
        let mut out = Vec::new();
        for id in &ids {
            if let Some(r) = crate::uploader::spool::get(&state.store, id).await? {
                if r.meta.call.account_id.as_deref() == Some(account_id.as_str()) {
                    out.push((id.clone(), r.state, r.node));
                }
            }
        }
        Ok(out)
    })
    .await?;
    let held: Vec<Value> = states
        .iter()
        .filter(|(_, s, _)| s.held())
        .map(|(id, s, _)| json!({"recording_id": id, "state": s.as_str()}))
        .collect();
    if !held.is_empty() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "{} recording(s) of call {call_id} are still recording or being uploaded: nothing erased",
                held.len()
            ),
            data: json!({"busy": held}),
        });
    }
    if let Some((_, _, node)) = states.iter().find(|(_, _, n)| n != state.store.node()) {
        let raw = raw_token(&headers);
        let empty = Bytes::new();
        let path = format!(
            "/v2/accounts/{account_id}/recordings?call_id={}",
            crate::uploader::url::encode(&call_id)
        );
        let req = Forward {
            method: reqwest::Method::DELETE,
            path,
            token: &raw,
            body: &empty,
            forwarded: headers.contains_key(FORWARDED),
        };
        return forward(&state, node, req).await;
    }
    let mut erased = Vec::new();
    let mut busy_now = Vec::new();
    for (id, _, _) in states {
        let (outcome, files) = stored(retention::erase(
            &state.store,
            &id,
            Some(account_id.as_str()),
        ))
        .await?;
        match outcome {
            Erasure::Removed(r) => {
                audit(&token, &account_id, &r, files);
                erased.push(json!({"id": r.id, "files": files.files, "bytes": files.bytes}));
            }
            Erasure::Busy(s) => busy_now.push(json!({"recording_id": id, "state": s.as_str()})),
            Erasure::Unknown | Erasure::Elsewhere(_) => {}
        }
    }
    if !busy_now.is_empty() {
        // One became busy between the check and its erasure (an upload started).
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: "a recording of the call became busy while it was being erased".into(),
            data: json!({"busy": busy_now, "erased": erased}),
        });
    }
    let n = erase_decisions(&state, &token, &account_id, &call_id).await?;
    Ok(success(
        StatusCode::OK,
        json!({"call_id": call_id, "erased": erased, "decision_records": n}),
        None,
    ))
}

/// Erases the call's decision records (its parties, its rules) with one audit line.
async fn erase_decisions(
    state: &ApiState,
    token: &str,
    account_id: &str,
    call_id: &str,
) -> Result<usize, ApiError> {
    let n = stored(state.store.erase_decisions(Some(account_id), call_id)).await?;
    if n > 0 {
        tracing::info!(
            target: "callrec::audit",
            token_id = %token,
            account_id = %crate::telemetry::printable(account_id),
            call_id = %crate::telemetry::printable(call_id),
            records = n,
            "decision records erased on request"
        );
    }
    Ok(n)
}
