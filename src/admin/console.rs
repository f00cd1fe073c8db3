//! The routes the operators' console (`/ui/`) reads, beside the Crossbar-like ones:
//!
//! - `GET /v2/accounts`: the accounts a token sees (an admin every account document, an
//!   account token its own);
//! - `GET /v2/accounts/{a}/calls[?party=&call_id=&since=&until=&recorded=&start_key=&limit=]`
//!   and `GET /v2/accounts/{a}/calls/{call_id}/decision`: decision records ("why (not)
//!   recorded"), with the outcomes of the call's recordings and the recordings kept;
//! - `GET /v2/accounts/{a}/{users|devices}/{id}/effective_record_call[?direction=&network=]`:
//!   what the planner's merge gives that user or device, field by field with its document;
//! - `POST /v2/accounts/{a}/recordings/{id}/retry`: failed deliveries due again;
//! - `GET /v2/accounts/{a}/recordings/{id}/waveform[?points=]`: peaks of the audio, computed
//!   here ([`crate::media::peaks`]);
//! - `POST /v2/accounts/{a}/recordings/{id}/link` and `GET …/recordings/{id}/audio?expires=&sig=`:
//!   a short-lived signed link an `<audio>` element can load ([`super::links`]).
//!
//! Invariants: every route checks the token against the account in the path before reading
//! anything (as the rest of the API); a record of another account is 404, never shown; nothing
//! here writes but `retry` (which logs who asked).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::envelope::{success, success_paged, ApiError};
use super::handlers::{
    authorize, given, page_key, parse_page_key, recording_of, stored, token_scope, ApiResult,
};
use super::ApiState;
use crate::rules::documents::{Direction, Network};
use crate::store::decisions::DecisionFilter;
use crate::store::{Kind, Scope};
use crate::uploader::spool;

/// `GET /v2/accounts`.
pub async fn list_accounts(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult {
    let scope = token_scope(&state, &headers).await?;
    let docs = match &scope {
        Scope::Admin => stored(state.store.documents_of_kind(Kind::Account)).await?,
        Scope::Account(a) => stored(state.store.get(Kind::Account, a, a))
            .await?
            .into_iter()
            .collect(),
    };
    let mut out: Vec<Value> = docs
        .iter()
        .map(|d| json!({"id": d.account_id, "name": d.body.get("name").cloned().unwrap_or(Value::Null)}))
        .collect();
    if let (Scope::Account(a), true) = (&scope, out.is_empty()) {
        // An account token whose account has no document yet still has its account.
        out.push(json!({"id": a, "name": null}));
    }
    Ok(success(
        StatusCode::OK,
        json!({"accounts": out, "admin": matches!(scope, Scope::Admin)}),
        None,
    ))
}

/// Filters of the calls listing (times in Unix seconds).
#[derive(Debug, serde::Deserialize, Default)]
pub struct CallQuery {
    pub party: Option<String>,
    pub call_id: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// `true`: calls with recordings planned; `false`: calls with none.
    pub recorded: Option<bool>,
    pub start_key: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /v2/accounts/{a}/calls`: decision records, newest first.
pub async fn list_calls(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    Query(q): Query<CallQuery>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let f = DecisionFilter {
        account_id: Some(account_id),
        party: given(q.party),
        call_id: given(q.call_id),
        since_us: q.since.map(|s| s.saturating_mul(1_000_000)),
        until_us: q.until.map(|s| s.saturating_mul(1_000_000)),
        recorded: q.recorded,
        after: given(q.start_key).map(|k| parse_page_key(&k)).transpose()?,
        limit,
    };
    let rows = stored(state.store.decisions(&f)).await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| page_key(r.created_us, &r.id)))
        .flatten();
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "call_id": r.call_id,
                "at_us": r.created_us,
                "node": r.node,
                "caller": r.caller,
                "callee": r.callee,
                "planned": r.planned,
                "decision": r.body,
            })
        })
        .collect();
    Ok(success_paged(Value::Array(data), next))
}

/// `GET /v2/accounts/{a}/calls/{call_id}/decision`.
pub async fn get_decision(
    State(state): State<ApiState>,
    Path((account_id, call_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let found = stored(
        state
            .store
            .decision_of_call(Some(account_id.as_str()), &call_id),
    )
    .await?;
    let Some((row, outcomes)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no decision record for this call (callrec never saw it, or it is past decision_retention_days)",
        ));
    };
    let f = spool::Filter {
        account_id: Some(account_id),
        call_id: Some(call_id),
        limit: Some(100),
        ..spool::Filter::default()
    };
    let recordings = stored(spool::list(&state.store, &f)).await?;
    Ok(success(
        StatusCode::OK,
        json!({
            "call_id": row.call_id,
            "at_us": row.created_us,
            "node": row.node,
            "decision": row.body,
            "outcomes": outcomes,
            "recordings": recordings,
        }),
        None,
    ))
}

/// Query of `effective_record_call`.
#[derive(Debug, serde::Deserialize, Default)]
pub struct EffectiveQuery {
    pub direction: Option<String>,
    pub network: Option<String>,
}

fn bad_query(field: &str, message: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        message: "invalid query".into(),
        data: json!({ field: {"message": message} }),
    }
}

/// `GET /v2/accounts/{a}/{users|devices}/{id}/effective_record_call`: one direction and
/// network when both are given, else all four.
pub async fn effective_record_call(
    State(state): State<ApiState>,
    Path((account_id, collection, id)): Path<(String, String, String)>,
    Query(q): Query<EffectiveQuery>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let kind = match collection.as_str() {
        "users" => Kind::User,
        "devices" => Kind::Device,
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    };
    let directions = match given(q.direction).as_deref() {
        None => vec![Direction::Outbound, Direction::Inbound],
        Some("outbound") => vec![Direction::Outbound],
        Some("inbound") => vec![Direction::Inbound],
        Some(_) => return Err(bad_query("direction", "must be inbound or outbound")),
    };
    let networks = match given(q.network).as_deref() {
        None => vec![Network::Offnet, Network::Onnet],
        Some("offnet") => vec![Network::Offnet],
        Some("onnet") => vec![Network::Onnet],
        Some(_) => return Err(bad_query("network", "must be onnet or offnet")),
    };
    let found = stored(crate::rules::planner::party_of(
        &state.store,
        kind,
        &account_id,
        &id,
    ))
    .await?;
    let Some(parties) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{collection}/{id} not found"),
        ));
    };
    let mut out = Vec::new();
    for d in &directions {
        for n in &networks {
            out.push(crate::rules::effective::effective(
                parties.account.as_ref(),
                &parties.caller,
                *d,
                *n,
            ));
        }
    }
    Ok(success(
        StatusCode::OK,
        json!({
            "id": id,
            "kind": kind.as_str(),
            "effective": out,
            "note": "the endpoint merge (account endpoint defaults, user, device); account-wide rules and callflows apply to calls as well",
        }),
        None,
    ))
}

/// `POST /v2/accounts/{a}/recordings/{id}/retry`.
pub async fn retry_recording(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    recording_of(&state, &account_id, &id).await?;
    let n = stored(state.store.retry_failed(Some(id.as_str()))).await?;
    tracing::info!(
        target: "callrec::audit",
        account_id = %crate::telemetry::printable(&account_id),
        recording_id = %crate::telemetry::printable(&id),
        token_id = %super::erasure::token_id(&headers),
        retried = n,
        "failed deliveries put back in the queue"
    );
    let item = recording_of(&state, &account_id, &id).await?;
    Ok(success(
        StatusCode::OK,
        json!({"retried": n, "recording": item}),
        None,
    ))
}

/// Query of `waveform`.
#[derive(Debug, serde::Deserialize, Default)]
pub struct WaveQuery {
    pub points: Option<usize>,
}

/// `GET /v2/accounts/{a}/recordings/{id}/waveform`.
pub async fn waveform(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(String, String)>,
    Query(q): Query<WaveQuery>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let item = recording_of(&state, &account_id, &id).await?;
    super::links::playable(&item)?;
    let points = q.points.unwrap_or(800).clamp(16, 4000);
    if item.node != state.store.node() {
        // The file is on the node that recorded it: that node draws it.
        let token = super::erasure::raw_token(&headers);
        let empty = axum::body::Bytes::new();
        let req = super::control::Forward {
            method: reqwest::Method::GET,
            path: format!("/v2/accounts/{account_id}/recordings/{id}/waveform?points={points}"),
            token: &token,
            body: &empty,
            forwarded: headers.contains_key(super::control::FORWARDED),
        };
        return super::control::forward(&state, &item.node, req).await;
    }
    let path = std::path::PathBuf::from(&item.meta.file_path);
    let peaks = tokio::task::spawn_blocking(move || crate::media::peaks(&path, points))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "waveform task failed"))?;
    match peaks {
        Ok(p) => Ok(success(
            StatusCode::OK,
            serde_json::to_value(p).unwrap_or(Value::Null),
            None,
        )),
        Err(crate::media::MediaError::Missing) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "the file is not stored on this node ({}): delivered and not kept, or removed",
                item.node
            ),
        )),
        Err(e) => {
            tracing::warn!(recording_id = %id, error = %e, "waveform: the file cannot be decoded");
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the file cannot be decoded: {e}"),
            ))
        }
    }
}
