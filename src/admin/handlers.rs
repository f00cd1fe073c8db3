//! Request handlers: authorisation, validation, storage. Each returns `Result<Response,
//! ApiError>`; envelopes (and the request id) are added by [`super::envelope`].
//!
//! Invariants: the account in the path is the only account a request touches (the store is
//! always asked with it); a token is checked before anything else is read, so a request for
//! another account learns nothing (403 whatever the id); a document is stored only when
//! [`documents::parse`] accepts it.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::envelope::{success, success_with_warning, ApiError};
use super::ApiState;
use crate::rules::documents::{self, merge_patch};
use crate::store::documents::Expect;
use crate::store::{Doc, Kind, RecordingState, Revision, Scope, StoreError};
use crate::uploader::spool;

pub(super) type ApiResult = Result<Response, ApiError>;

/// The document kind of a collection path segment; 404 for anything else.
fn kind_of(collection: &str) -> Result<Kind, ApiError> {
    match collection {
        "users" => Ok(Kind::User),
        "devices" => Ok(Kind::Device),
        "callflows" => Ok(Kind::Callflow),
        "webhooks" => Ok(Kind::Webhook),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}

/// Awaits a store call; its error as the API answers it (a conflict, 503 while the database is
/// unreachable, else 500 with a log line).
pub(super) async fn stored<T>(
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, ApiError> {
    match call.await {
        Ok(v) => Ok(v),
        Err(StoreError::Conflict { current }) => Err(conflict(current)),
        Err(StoreError::Exists) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "a document with this id exists in this account",
        )),
        Err(StoreError::Unreachable(e)) => {
            tracing::warn!(error = %e, "database unreachable: API request refused");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "datastore unreachable; try again",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "store error");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "datastore error",
            ))
        }
    }
}

fn conflict(current: String) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        message: "conflicting revision".into(),
        data: json!({"revision": current}),
    }
}

/// Checks `X-Auth-Token`; `account_id` is the account in the path (`None`: admin only).
pub(super) async fn authorize(
    state: &ApiState,
    headers: &HeaderMap,
    account_id: Option<&str>,
) -> Result<Scope, ApiError> {
    let scope = token_scope(state, headers).await?;
    match (&scope, account_id) {
        (Scope::Admin, _) => Ok(scope),
        (Scope::Account(a), Some(path)) if a == path => Ok(scope),
        (Scope::Account(_), Some(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the token does not give access to this account",
        )),
        (Scope::Account(_), None) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this needs an admin token",
        )),
    }
}

/// What `X-Auth-Token` gives access to (401 without a valid one).
pub(super) async fn token_scope(state: &ApiState, headers: &HeaderMap) -> Result<Scope, ApiError> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing X-Auth-Token"))?
        .to_string();
    stored(state.store.verify_token(&token))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid credentials"))
}

/// What `If-Match` asks for. A value that is not a revision can never match (409).
fn if_match(headers: &HeaderMap) -> Expect {
    match headers.get("if-match") {
        None => Expect::Any,
        Some(v) => match v.to_str().ok().and_then(Revision::parse) {
            Some(r) => Expect::Revision(r),
            None => Expect::Revision(Revision(0)),
        },
    }
}

/// `{"data": {...}}` → the object.
pub(super) fn data_of(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        message: "invalid JSON".into(),
        data: json!({"body": {"message": e.to_string()}}),
    })?;
    match v.get("data") {
        Some(d @ Value::Object(_)) => Ok(d.clone()),
        _ => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "invalid data".into(),
            data: json!({"data": {"message": "required: an object under \"data\""}}),
        }),
    }
}

/// A document; when its stored settings no longer parse (written by an older version), a
/// `warning` says which field and that the settings are not applied to calls.
fn doc_response(doc: Doc, status: StatusCode) -> Response {
    let warning = documents::parse(doc.kind, &doc.body).err().map(|e| {
        json!({
            "message": "the stored recording settings are not valid and are not applied to calls; save the document again with valid settings",
            "fields": { e.path: {"message": e.message} },
        })
    });
    success_with_warning(
        status,
        public_body(doc.kind, doc.body),
        Some(doc.rev.to_string()),
        warning,
    )
}

/// A stored document as the API shows it: without callrec's private fields (`pvt_…`), and a
/// webhook without its secret.
fn public_body(kind: Kind, mut body: Value) -> Value {
    match kind {
        Kind::Webhook => crate::settings::webhook::shown(body),
        _ => {
            strip_private(&mut body);
            body
        }
    }
}

/// Removes callrec's private fields (`pvt_…`): a request never sets them.
fn strip_private(v: &mut Value) {
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|k, _| !k.starts_with(crate::settings::webhook::PRIVATE_PREFIX));
    }
}

/// `{"data": {...}}` of a document write, without private fields.
fn request_data(body: &Bytes) -> Result<Value, ApiError> {
    let mut data = data_of(body)?;
    strip_private(&mut data);
    Ok(data)
}

/// Records who writes the document (`pvt_writer`): an account token makes it account-written;
/// an admin token makes it admin-written unless it only patches a document an account wrote
/// (the account's URLs stay held to the account row of the destination policy).
fn stamp_writer(scope: &Scope, data: &mut Value) {
    use crate::settings::webhook::WRITER_FIELD;
    let Some(obj) = data.as_object_mut() else {
        return;
    };
    let was_account = obj.get(WRITER_FIELD).and_then(Value::as_str) == Some("account");
    let writer = match scope {
        Scope::Account(_) => "account",
        Scope::Admin if was_account => "account",
        Scope::Admin => "admin",
    };
    obj.insert(WRITER_FIELD.into(), Value::String(writer.into()));
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ids are 1-128 characters of [A-Za-z0-9._-]",
        ))
    }
}

async fn get_one(
    state: &ApiState,
    kind: Kind,
    account_id: &str,
    id: &str,
) -> Result<Option<Doc>, ApiError> {
    stored(state.store.get(kind, account_id, id)).await
}

async fn account_exists(state: &ApiState, account_id: &str) -> Result<(), ApiError> {
    match get_one(state, Kind::Account, account_id, account_id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "account not found")),
    }
}

pub async fn get_account(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    match get_one(&state, Kind::Account, &account_id, &account_id).await? {
        Some(d) => Ok(doc_response(d, StatusCode::OK)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "account not found")),
    }
}

pub async fn put_account(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let scope = authorize(&state, &headers, Some(&account_id)).await?;
    check_id(&account_id)?;
    let data = request_data(&body)?;
    write(
        &state,
        &scope,
        Kind::Account,
        &account_id,
        &account_id,
        data,
        if_match(&headers),
    )
    .await
}

pub async fn patch_account(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let scope = authorize(&state, &headers, Some(&account_id)).await?;
    patch(
        &state,
        &scope,
        Kind::Account,
        &account_id,
        &account_id,
        &body,
        &headers,
    )
    .await
}

pub async fn list_docs(
    State(state): State<ApiState>,
    Path((account_id, collection)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let kind = kind_of(&collection)?;
    account_exists(&state, &account_id).await?;
    let docs = stored(state.store.list(kind, &account_id)).await?;
    let data: Vec<Value> = docs
        .into_iter()
        .map(|d| public_body(d.kind, d.body))
        .collect();
    Ok(success(StatusCode::OK, Value::Array(data), None))
}

pub async fn create_doc(
    State(state): State<ApiState>,
    Path((account_id, collection)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let scope = authorize(&state, &headers, Some(&account_id)).await?;
    let kind = kind_of(&collection)?;
    account_exists(&state, &account_id).await?;
    let data = request_data(&body)?;
    let id = match data.get("id") {
        Some(Value::String(s)) => s.clone(),
        _ => uuid::Uuid::new_v4().simple().to_string(),
    };
    check_id(&id)?;
    let mut resp = write(&state, &scope, kind, &account_id, &id, data, Expect::Absent).await?;
    *resp.status_mut() = StatusCode::CREATED;
    Ok(resp)
}

pub async fn get_doc(
    State(state): State<ApiState>,
    Path((account_id, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let kind = kind_of(&collection)?;
    match get_one(&state, kind, &account_id, &id).await? {
        Some(d) => Ok(doc_response(d, StatusCode::OK)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{collection}/{id} not found"),
        )),
    }
}

pub async fn put_doc(
    State(state): State<ApiState>,
    Path((account_id, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let scope = authorize(&state, &headers, Some(&account_id)).await?;
    let kind = kind_of(&collection)?;
    check_id(&id)?;
    account_exists(&state, &account_id).await?;
    let data = request_data(&body)?;
    write(
        &state,
        &scope,
        kind,
        &account_id,
        &id,
        data,
        if_match(&headers),
    )
    .await
}

pub async fn patch_doc(
    State(state): State<ApiState>,
    Path((account_id, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let scope = authorize(&state, &headers, Some(&account_id)).await?;
    let kind = kind_of(&collection)?;
    patch(&state, &scope, kind, &account_id, &id, &body, &headers).await
}

pub async fn delete_doc(
    State(state): State<ApiState>,
    Path((account_id, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let kind = kind_of(&collection)?;
    let expect = match if_match(&headers) {
        Expect::Revision(r) => Some(r),
        _ => None,
    };
    if stored(state.store.delete(kind, &account_id, &id, expect)).await? {
        tracing::info!(account_id = %account_id, kind = kind.as_str(), id = %id, "document deleted");
        Ok(success(StatusCode::OK, json!({"id": id}), None))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{collection}/{id} not found"),
        ))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

/// Validates and stores a whole document.
async fn write(
    state: &ApiState,
    scope: &Scope,
    kind: Kind,
    account_id: &str,
    id: &str,
    data: Value,
    expect: Expect,
) -> ApiResult {
    let mut data = data;
    stamp_writer(scope, &mut data);
    // A webhook's secret: kept, or made (and shown once, in this response).
    let revealed = match kind {
        Kind::Webhook => super::webhooks::prepare(state, account_id, id, &mut data).await?,
        _ => None,
    };
    let settings = documents::parse(kind, &data).map_err(ApiError::invalid)?;
    check_destinations(state, scope, &data).await?;
    if let documents::Settings::Callflow(cf) = settings {
        callflow_conflicts(state, account_id, id, cf).await?;
    }
    let doc = stored(state.store.put(kind, account_id, id, data, expect)).await?;
    tracing::info!(account_id = %account_id, kind = kind.as_str(), id = %id, revision = doc.rev.0, "document saved");
    if let Some(secret) = revealed {
        // The document was just validated: no warning to add.
        tracing::info!(account_id = %account_id, webhook_id = %id, "webhook secret generated; returned once in this response");
        let mut body = public_body(kind, doc.body);
        body["secret"] = Value::String(secret);
        return Ok(success(StatusCode::OK, body, Some(doc.rev.to_string())));
    }
    Ok(doc_response(doc, StatusCode::OK))
}

/// The destination policy on every URL of the document, for its writer: 400 naming the field.
async fn check_destinations(state: &ApiState, scope: &Scope, data: &Value) -> Result<(), ApiError> {
    use crate::settings::policy::{urls_in, Writer};
    let writer = match scope {
        Scope::Admin => Writer::Admin,
        Scope::Account(_) => Writer::Account,
    };
    let policy = state.policy;
    for (path, url) in urls_in(data) {
        // A name is resolved: off the runtime.
        let u = url.clone();
        let verdict = tokio::task::spawn_blocking(move || policy.check_url(&u, writer))
            .await
            .unwrap_or(Ok(()));
        if let Err(why) = verdict {
            tracing::warn!(field = %path, reason = %why, "destination refused by destination_policy");
            return Err(ApiError::invalid(documents::FieldError {
                path,
                message: format!("refused by destination_policy: {why}"),
            }));
        }
    }
    Ok(())
}

/// 409 when a number or pattern of callflow `id` belongs to another callflow of the account.
async fn callflow_conflicts(
    state: &ApiState,
    account_id: &str,
    id: &str,
    new: documents::CallflowSettings,
) -> Result<(), ApiError> {
    let others = stored(state.store.list(Kind::Callflow, account_id)).await?;
    let others: Vec<(String, documents::CallflowSettings)> = others
        .into_iter()
        .filter_map(|d| match documents::parse(Kind::Callflow, &d.body) {
            Ok(documents::Settings::Callflow(cf)) => Some((d.id, cf)),
            _ => None,
        })
        .collect();
    let clashes = documents::callflow_conflicts(id, &new, &others);
    if clashes.is_empty() {
        return Ok(());
    }
    let data: serde_json::Map<String, Value> = clashes
        .into_iter()
        .map(|e| (e.path, json!({"message": e.message})))
        .collect();
    Err(ApiError {
        status: StatusCode::CONFLICT,
        message: "number or pattern already routed by another callflow".into(),
        data: Value::Object(data),
    })
}

/// Merges `{"data": patch}` into the stored document, validates, stores conditionally.
async fn patch(
    state: &ApiState,
    scope: &Scope,
    kind: Kind,
    account_id: &str,
    id: &str,
    body: &Bytes,
    headers: &HeaderMap,
) -> ApiResult {
    let patch = request_data(body)?;
    let current = get_one(state, kind, account_id, id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "document not found"))?;
    let expected = match if_match(headers) {
        Expect::Revision(r) => r,
        _ => current.rev,
    };
    if expected != current.rev {
        return Err(conflict(current.rev.to_string()));
    }
    let mut merged = current.body;
    merge_patch(&mut merged, &patch);
    write(
        state,
        scope,
        kind,
        account_id,
        id,
        merged,
        Expect::Revision(expected),
    )
    .await
}

/// Filters of the recordings listing (times in Unix seconds).
#[derive(Debug, serde::Deserialize, Default)]
pub struct RecordingQuery {
    pub state: Option<String>,
    /// Only the recordings on this node (every node's by default).
    pub node: Option<String>,
    pub call_id: Option<String>,
    /// The caller's or the callee's number.
    pub party: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: Option<u32>,
    /// A previous page's `next_start_key`.
    pub start_key: Option<String>,
}

/// A page key: `<created_us>.<id>` of the last row shown.
pub(super) fn page_key(created_us: u64, id: &str) -> String {
    format!("{created_us}.{id}")
}

/// Reads a page key; 400 for anything that is not one.
pub(super) fn parse_page_key(k: &str) -> Result<(u64, String), ApiError> {
    k.split_once('.')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_string())))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "invalid query".into(),
            data: json!({"start_key": {"message": "must be a next_start_key this API returned"}}),
        })
}

/// An optional text filter: empty means unset.
pub(super) fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn list_recordings(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    Query(q): Query<RecordingQuery>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let wanted = match given(q.state) {
        None => None,
        Some(s) => Some(RecordingState::parse(&s).ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "invalid query".into(),
            data: json!({"state": {"message": "must be recording, pending, uploading, delivered, failed or stored"}}),
        })?),
    };
    let after = given(q.start_key).map(|k| parse_page_key(&k)).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let f = spool::Filter {
        node: given(q.node),
        state: wanted,
        account_id: Some(account_id),
        call_id: given(q.call_id),
        party: given(q.party),
        since_us: q.since.map(|s| s.saturating_mul(1_000_000)),
        until_us: q.until.map(|s| s.saturating_mul(1_000_000)),
        limit: Some(limit),
        after,
    };
    let items = stored(spool::list(&state.store, &f)).await?;
    let next = (items.len() == limit as usize)
        .then(|| {
            items
                .last()
                .map(|i| page_key(i.created_us, &i.meta.recording_id))
        })
        .flatten();
    let data = serde_json::to_value(items).unwrap_or(Value::Null);
    Ok(super::envelope::success_paged(data, next))
}

/// The recording `id` of `account_id`, or 404.
pub(super) async fn recording_of(
    state: &ApiState,
    account_id: &str,
    id: &str,
) -> Result<spool::Item, ApiError> {
    stored(spool::get(&state.store, id))
        .await?
        .filter(|it| it.meta.call.account_id.as_deref() == Some(account_id))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("recordings/{id} not found")))
}

pub async fn get_recording(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let item = recording_of(&state, &account_id, &id).await?;
    let wants_audio = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("audio/"));
    if !wants_audio {
        let data = serde_json::to_value(item).unwrap_or(Value::Null);
        return Ok(success(StatusCode::OK, data, None));
    }
    let file = tokio::fs::File::open(&item.meta.file_path)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "the file is not stored locally (delivered or removed)",
            )
        })?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, item.meta.mime().to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// Liveness: the process answers. No token (probes cannot send one); reveals nothing.
pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "alive"}))).into_response()
}

/// Readiness: the outbound listener is up, the store takes writes, and the recordings directory
/// is writable with enough free space. 200 when all hold, else 503 naming what does not.
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let store_ok = state.store.check_writable().await.is_ok();
    let mut checks = serde_json::Map::new();
    checks.insert("store_writable".into(), json!(store_ok));
    let mut ready = store_ok;
    if let Some(r) = &state.readiness {
        let listener = r.listener_up.load(std::sync::atomic::Ordering::Relaxed);
        let dir = r.recordings_dir.clone();
        let min_free = r.min_free_bytes;
        let space = tokio::task::spawn_blocking(move || crate::recorder::space::check(&dir))
            .await
            .unwrap_or(crate::recorder::space::Space {
                writable: false,
                free: None,
            });
        let (writable, free) = (space.writable, space.free);
        let space_ok = free.is_some_and(|f| f >= min_free);
        checks.insert("listener_up".into(), json!(listener));
        checks.insert("recordings_dir_writable".into(), json!(writable));
        checks.insert("recordings_free_bytes".into(), json!(free));
        checks.insert("recordings_free_enough".into(), json!(space_ok));
        // Not logged here (probes poll often): the space watcher logs when it starts and ends.
        ready &= listener && writable && space_ok;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": ready, "checks": checks})),
    )
        .into_response()
}

/// Prometheus metrics; needs an admin token.
pub async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult {
    authorize(&state, &headers, None).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics::METRICS.render() + &crate::telemetry::metrics::render_labelled(),
    )
        .into_response())
}
