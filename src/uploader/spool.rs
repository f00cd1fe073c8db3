//! The durable spool, typed: every kept recording with its [`FinishedRecording`] metadata and
//! one delivery per destination, kept in the store's recordings tables (the store owns the
//! SQL and the state machine; see [`crate::store::recordings`]).
//!
//! Invariant: everything this module hands out for showing (API, CLI) has passwords in URLs
//! redacted; only [`claim_due`] returns real URLs, for the upload itself.

use serde::Serialize;

use super::FinishedRecording;
use crate::store::recordings::{self, DeliveryRow, NewRecording};
use crate::store::{RecordingState, Store, StoreError};
use crate::values::Destination;

pub use crate::store::now_us;
pub use crate::store::recordings::{Filter, Outcome};

/// A delivery taken for an attempt (real URL: never log it, use `url::redact`).
pub type Claim = recordings::Claim<FinishedRecording>;

/// A spooled recording as shown to operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// The node whose disk holds the file.
    pub node: String,
    pub state: RecordingState,
    pub created_us: u64,
    pub updated_us: u64,
    #[serde(flatten)]
    pub meta: FinishedRecording,
    pub deliveries: Vec<DeliveryRow>,
}

fn shown(row: recordings::RecordingRow<FinishedRecording>) -> Item {
    Item {
        node: row.node,
        state: row.state,
        created_us: row.created_us,
        updated_us: row.updated_us,
        meta: row.meta.redacted(),
        deliveries: row
            .deliveries
            .into_iter()
            .map(|mut d| {
                d.url = super::url::redact(&d.url);
                d
            })
            .collect(),
    }
}

/// Adds a kept recording; returns its state (`pending` or `stored`).
pub async fn enqueue(store: &Store, rec: &FinishedRecording) -> Result<RecordingState, StoreError> {
    store
        .add_recording(&NewRecording {
            id: &rec.recording_id,
            account_id: rec.call.account_id.as_deref(),
            call_id: &rec.call.call_id,
            file_path: &rec.file_path,
            destinations: &rec.destinations,
            meta: rec,
        })
        .await
}

/// Takes up to `limit` due deliveries and marks them `uploading`.
pub async fn claim_due(store: &Store, now: u64, limit: usize) -> Result<Vec<Claim>, StoreError> {
    store.claim_due(now, limit).await
}

/// Records an attempt's outcome; returns the recording's new state.
pub async fn settle(
    store: &Store,
    claim: &Claim,
    outcome: &Outcome,
) -> Result<RecordingState, StoreError> {
    let dest = Destination {
        url: claim.url.clone(),
        method: claim.method,
        by_account: false, // the delivery is keyed by URL and method
    };
    store.settle(&claim.meta.recording_id, &dest, outcome).await
}

/// One recording, with credentials redacted.
pub async fn get(store: &Store, id: &str) -> Result<Option<Item>, StoreError> {
    Ok(store.recording(id).await?.map(shown))
}

/// Recordings matching `f`, newest first, with credentials redacted.
pub async fn list(store: &Store, f: &Filter) -> Result<Vec<Item>, StoreError> {
    Ok(store.recordings(f).await?.into_iter().map(shown).collect())
}
