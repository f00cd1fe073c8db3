//! Mid-call control: `PATCH /v2/accounts/{account_id}/recordings/{id}` with
//! `{"data": {"status": "paused" | "in-progress" | "stopped", "pause_behavior": "silence" | "skip"}}`
//! (Twilio's `Status` and `PauseBehavior`), and `GET /v2/accounts/{account_id}/channels`, the
//! account's live calls with their recordings (Kazoo names this resource `channels`).
//!
//! A request reaches the call's own session ([`crate::outbound::live`]), which sends FreeSWITCH
//! the command and answers when FreeSWITCH has. Answers: 200 with the recording (its `status`,
//! `pause_behavior`, `pauses`); 404 for an id this account does not have; 409 when the recording
//! is not running, with its status; 400 naming the field; 502 with FreeSWITCH's `-ERR`; 504 when
//! FreeSWITCH does not answer. A recording another node of a shared database records is
//! forwarded to that node's API (its `api_url`, from the store) and its answer relayed; 503
//! naming the node when it cannot be reached. A forwarded request is never forwarded again.
//!
//! Invariants: an account token reaches only its account's recordings (another account's id is
//! 404, never 403, so ids cannot be probed); the token's secret is never logged (its id is); a
//! forward goes only to an address a node wrote for itself, never follows a redirect, and the
//! receiving node checks the token again.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::envelope::{success, ApiError};
use super::handlers::{authorize, data_of, stored, ApiResult};
use super::ApiState;
use crate::outbound::session::{ControlOutcome, Want};
use crate::store::RecordingState;
use crate::values::PauseBehavior;

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        message: "validation failed".into(),
        data: json!({ field: {"message": message} }),
    }
}

/// The body's wish, validated.
fn want_of(data: &Value) -> Result<Want, ApiError> {
    let Value::Object(map) = data else {
        return Err(invalid("data", "must be an object"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| *k != "status" && *k != "pause_behavior")
    {
        return Err(invalid(k, "unknown field: only status and pause_behavior"));
    }
    let behavior = match map.get("pause_behavior") {
        None => None,
        Some(Value::String(s)) => Some(
            PauseBehavior::parse(s)
                .ok_or_else(|| invalid("pause_behavior", "must be silence or skip"))?,
        ),
        Some(_) => return Err(invalid("pause_behavior", "must be silence or skip")),
    };
    let want = match map.get("status").and_then(Value::as_str) {
        Some("paused") => Want::Pause(behavior.unwrap_or_default()),
        Some("in-progress") => Want::Resume,
        Some("stopped") => Want::Stop,
        _ => {
            return Err(invalid(
                "status",
                "required: paused, in-progress or stopped",
            ))
        }
    };
    if behavior.is_some() && !matches!(want, Want::Pause(_)) {
        return Err(invalid("pause_behavior", "applies only with status paused"));
    }
    Ok(want)
}

fn view_response(status: StatusCode, view: impl serde::Serialize) -> ApiResult {
    Ok(success(
        status,
        serde_json::to_value(view).unwrap_or(Value::Null),
        None,
    ))
}

pub async fn patch_recording(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let want = want_of(&data_of(&body)?)?;
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let by = Some(crate::store::tokens::token_id(&token));
    let live = match &state.live {
        Some(l) => l.control(&id, Some(&account_id), want, by).await,
        None => None,
    };
    match live {
        Some(ControlOutcome::Done(v)) | Some(ControlOutcome::Unchanged(v)) => {
            view_response(StatusCode::OK, v)
        }
        Some(ControlOutcome::NotRunning(v)) => Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("the recording is not running ({})", v.status),
            data: json!({"status": v.status}),
        }),
        Some(ControlOutcome::Refused(text)) => Err(ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: format!("FreeSWITCH refused: {}", text.trim()),
            data: json!({"freeswitch": text.trim()}),
        }),
        Some(ControlOutcome::NoReply(why)) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("FreeSWITCH did not answer: {why}"),
        )),
        Some(ControlOutcome::Unknown) | None => {
            let req = Forward {
                method: reqwest::Method::PATCH,
                path: format!("/v2/accounts/{account_id}/recordings/{id}"),
                token: &token,
                body: &body,
                forwarded: headers.contains_key(FORWARDED),
            };
            not_live(&state, &account_id, &id, req).await
        }
    }
}

/// The request as received, to send on to the node that records the recording (or holds its
/// file).
pub(super) struct Forward<'a> {
    pub method: reqwest::Method,
    pub path: String,
    pub token: &'a str,
    pub body: &'a Bytes,
    /// It came from another node already: never sent on again.
    pub forwarded: bool,
}

/// The header a forwarded request carries, so it is never forwarded twice.
pub(super) const FORWARDED: &str = "x-callrec-forwarded-from";

/// Sends the request to node `node`'s API and answers with what it answered; 503 naming the
/// node when it cannot be reached (or the request already came from another node).
pub(super) async fn forward(state: &ApiState, node: &str, req: Forward<'_>) -> ApiResult {
    let unreachable = |why: String| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!(
            "the recording is recorded by node {node}, which cannot be reached: {why}"
        ),
        data: json!({"node": node}),
    };
    if req.forwarded {
        return Err(unreachable("it does not follow the call either".into()));
    }
    let Some(base) = stored(state.store.node_api(node)).await? else {
        return Err(unreachable("it never said where its API answers".into()));
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = client
        .request(req.method.clone(), format!("{base}{}", req.path))
        .header("x-auth-token", req.token)
        .header(FORWARDED, state.store.node())
        .header("content-type", "application/json")
        .body(req.body.clone())
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| unreachable(crate::telemetry::error_chain(&e)))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body: Value = resp
        .json()
        .await
        .map_err(|e| unreachable(format!("unreadable answer: {e}")))?;
    tracing::info!(node = %node, method = %req.method, status = status.as_u16(), "request forwarded to the node holding the recording");
    Ok((status, axum::Json(body)).into_response())
}

/// The recording is not live on this node: the store says whether it exists, where (another
/// node's live recording: the request goes there), and how it ended.
async fn not_live(
    state: &ApiState,
    account_id: &str,
    id: &str,
    forward_req: Forward<'_>,
) -> ApiResult {
    let item = super::handlers::recording_of(state, account_id, id).await?;
    if item.state == RecordingState::Recording {
        if item.node != state.store.node() {
            return forward(state, &item.node, forward_req).await;
        }
        // Journaled here but no live session: the call ended a moment ago, or a previous run
        // left it (callrec finishes it from its file).
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: "the recording is not running (absent: no live call here follows it)".into(),
            data: json!({"status": "absent"}),
        });
    }
    Err(ApiError {
        status: StatusCode::CONFLICT,
        message: format!("the recording is not running (completed, {})", item.state),
        data: json!({"status": "completed", "state": item.state.as_str()}),
    })
}

pub async fn list_channels(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let calls = match &state.live {
        Some(l) => l.views(Some(&account_id)).await,
        None => vec![],
    };
    view_response(StatusCode::OK, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ApiError) -> String {
        e.data
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_default()
    }

    #[test]
    fn the_body_is_validated_naming_the_field() {
        let ok = |v: Value| want_of(&v).unwrap();
        assert_eq!(
            ok(json!({"status": "paused"})),
            Want::Pause(PauseBehavior::Silence)
        );
        assert_eq!(
            ok(json!({"status": "paused", "pause_behavior": "skip"})),
            Want::Pause(PauseBehavior::Skip)
        );
        assert_eq!(ok(json!({"status": "in-progress"})), Want::Resume);
        assert_eq!(ok(json!({"status": "stopped"})), Want::Stop);
        let bad = |v: Value| field(want_of(&v).unwrap_err());
        assert_eq!(bad(json!({"status": "sleeping"})), "status");
        assert_eq!(bad(json!({})), "status");
        assert_eq!(
            bad(json!({"status": "paused", "pause_behavior": "mute"})),
            "pause_behavior"
        );
        assert_eq!(
            bad(json!({"status": "stopped", "pause_behavior": "skip"})),
            "pause_behavior"
        );
        assert_eq!(bad(json!({"status": "paused", "colour": "red"})), "colour");
    }
}
