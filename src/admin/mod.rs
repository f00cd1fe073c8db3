//! The Crossbar-like HTTP API for recording settings.
//!
//! Routes (every one but `/healthz` and `/readyz` needs `X-Auth-Token`; an account token only
//! reaches its own account; the probes reveal nothing but readiness):
//! `GET/PUT/PATCH /v2/accounts/{account_id}`,
//! `GET/POST /v2/accounts/{account_id}/{users|devices|callflows|webhooks}`,
//! `GET/PUT/PATCH/DELETE /v2/accounts/{account_id}/{users|devices|callflows|webhooks}/{id}`
//! (a webhook's secret is write-only: [`webhooks`]),
//! `GET /v2/accounts/{account_id}/recordings[?state=&call_id=&since=&until=]`,
//! `GET /v2/accounts/{account_id}/recordings/{id}` (`Accept: audio/*` for the file itself),
//! `PATCH /v2/accounts/{account_id}/recordings/{id}` (pause, resume or stop a live recording:
//! [`control`]), `DELETE /v2/accounts/{account_id}/recordings/{id}` and
//! `DELETE /v2/accounts/{account_id}/recordings?call_id=…` (erasure: [`erasure`]),
//! `GET /v2/accounts/{account_id}/channels` (live calls and their recordings).
//! Bodies are `{"data": {...}}`; PATCH merges (JSON merge patch: `null` deletes a key);
//! `If-Match: <revision>` makes a write conditional (409 when the document moved on).
//!
//! Invariants: nothing is stored that fails validation; tokens are never logged.

pub mod console;
pub mod control;
pub mod envelope;
pub mod erasure;
pub mod handlers;
pub mod links;
pub mod ui;
pub mod webhooks;

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// What `/readyz` checks beyond the store (`None`: the store only).
    pub readiness: Option<std::sync::Arc<Readiness>>,
    /// The calls this process follows (`None`: no outbound listener here, so no live call).
    pub live: Option<std::sync::Arc<crate::outbound::live::LiveCalls>>,
    /// Where written URLs may lead, checked on save.
    pub policy: crate::settings::policy::DestinationPolicy,
    /// Signs the console's short-lived audio links (random per process).
    pub links: links::LinkKey,
}

/// The state `/readyz` reports on.
#[derive(Debug)]
pub struct Readiness {
    /// The outbound listener is accepting calls.
    pub listener_up: std::sync::atomic::AtomicBool,
    /// Where FreeSWITCH writes recordings: must be writable with `min_free_bytes` free.
    pub recordings_dir: std::path::PathBuf,
    pub min_free_bytes: u64,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/v2/accounts/{account_id}",
            get(handlers::get_account)
                .put(handlers::put_account)
                .patch(handlers::patch_account),
        )
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route(
            "/v2/accounts/{account_id}/recordings",
            get(handlers::list_recordings).delete(erasure::delete_call),
        )
        .route(
            "/v2/accounts/{account_id}/recordings/{id}",
            get(handlers::get_recording)
                .patch(control::patch_recording)
                .delete(erasure::delete_recording),
        )
        .route(
            "/v2/accounts/{account_id}/channels",
            get(control::list_channels),
        )
        .route("/v2/accounts", get(console::list_accounts))
        .route("/v2/accounts/{account_id}/calls", get(console::list_calls))
        .route(
            "/v2/accounts/{account_id}/calls/{call_id}/decision",
            get(console::get_decision),
        )
        .route(
            "/v2/accounts/{account_id}/recordings/{id}/retry",
            post(console::retry_recording),
        )
        .route(
            "/v2/accounts/{account_id}/recordings/{id}/waveform",
            get(console::waveform),
        )
        .route(
            "/v2/accounts/{account_id}/recordings/{id}/link",
            post(links::make_link),
        )
        .route(
            "/v2/accounts/{account_id}/recordings/{id}/audio",
            get(links::audio),
        )
        .route(
            "/v2/accounts/{account_id}/{collection}/{id}/effective_record_call",
            get(console::effective_record_call),
        )
        .merge(ui::router())
        .route(
            "/v2/accounts/{account_id}/{collection}",
            get(handlers::list_docs).post(handlers::create_doc),
        )
        .route(
            "/v2/accounts/{account_id}/{collection}/{id}",
            get(handlers::get_doc)
                .put(handlers::put_doc)
                .patch(handlers::patch_doc)
                .delete(handlers::delete_doc),
        )
        .fallback(handlers::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            envelope::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(envelope::with_request_id))
        .with_state(state)
}

/// Serves the API on `listener` until `stop` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState, stop: CancellationToken) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = %addr.map_or("-".to_string(), |a| a.to_string()), "HTTP API listening");
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "HTTP API stopped");
    }
}
