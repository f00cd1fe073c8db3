//! Taking recordings out of the store: erasure on request (one recording, or every recording of a
//! call) and retention (kept recordings older than their account's limit). The store removes
//! rows; the caller removes files, after the rows are gone (so no worker can claim a recording
//! whose file is being removed).
//!
//! Invariants: a recording `recording` (FreeSWITCH may still write it) or `uploading` (a worker
//! holds it) is never removed; a recording is removed only by the node whose disk holds its file
//! (the files are that node's to remove); its deliveries go with it, in the same transaction;
//! retention takes only `stored` and `delivered` recordings, in batches.

use super::{Store, StoreError};
use crate::store::RecordingState;

/// A recording taken out of the store: what its files are, for the caller to remove.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    pub id: String,
    pub account_id: Option<String>,
    pub call_id: String,
    pub file_path: String,
    pub state: RecordingState,
}

/// What became of an erasure request for one recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Erasure {
    /// No such recording (in this account).
    Unknown,
    /// Still recording, or being uploaded now: nothing removed.
    Busy(RecordingState),
    /// Its file is on another node: that node must erase it.
    Elsewhere(String),
    Removed(Removed),
}

/// Which kept recordings are past their time (µs since the epoch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cutoffs {
    /// Every account without its own limit (and recordings without an account); `None`: kept.
    pub default_before_us: Option<u64>,
    /// Accounts with their own limit.
    pub accounts: Vec<(String, u64)>,
}

/// States a request may not remove.
fn busy(state: &str) -> bool {
    RecordingState::parse(state).is_some_and(RecordingState::held)
}

/// The rule of erasure on request, applied by each backend to the row it holds locked: `None`
/// when `node` may remove it now; else what the request gets (not this account's: unknown;
/// recording or uploading: busy; another node's file: that node's to erase).
pub(super) fn refusal(
    owner: &str,
    account_id: Option<&str>,
    state: &str,
    account: Option<&str>,
    node: &str,
) -> Result<Option<Erasure>, StoreError> {
    if account.is_some_and(|a| account_id != Some(a)) {
        return Ok(Some(Erasure::Unknown));
    }
    if busy(state) {
        return Ok(Some(Erasure::Busy(state_of(state)?)));
    }
    if owner != node {
        return Ok(Some(Erasure::Elsewhere(owner.to_string())));
    }
    Ok(None)
}

pub(super) fn state_of(s: &str) -> Result<RecordingState, StoreError> {
    RecordingState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown state {s:?}")))
}

/// What a backend does to take recordings out: statements only, each backend holding the rows
/// it checks locked until they are removed.
#[async_trait::async_trait]
pub(super) trait RemovalRows {
    /// Removes recording `id` with its deliveries unless [`refusal`] says otherwise.
    async fn erase_recording(
        &self,
        node: &str,
        id: &str,
        account: Option<&str>,
    ) -> Result<Erasure, StoreError>;
    async fn recordings_of_call(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// SQLite: a passive checkpoint of the write-ahead log; PostgreSQL: nothing.
    async fn checkpoint_log(&self) -> Result<(), StoreError>;
    /// Removes up to `limit` of `node`'s kept recordings past `cutoffs`; returns them.
    async fn take_expired(
        &self,
        node: &str,
        cutoffs: &Cutoffs,
        limit: i64,
    ) -> Result<Vec<Removed>, StoreError>;
}

impl Store {
    /// Removes recording `id` (of `account`, when given) with its deliveries, unless it is busy
    /// or on another node.
    pub async fn erase_recording(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<Erasure, StoreError> {
        self.db().erase_recording(&self.node, id, account).await
    }

    /// The ids of a call's recordings (of `account`), oldest first.
    pub async fn recordings_of_call(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.db().recordings_of_call(account, call_id).await
    }

    /// After a batch of erasures, copies the write-ahead log back into the database on this
    /// (the retention pass's) connection, so the log's checkpoint, and its sync, does not fall
    /// to whichever serving write crosses SQLite's auto-checkpoint size next (SQLite
    /// `wal_checkpoint(PASSIVE)`: takes no lock readers or writers wait for; nothing on
    /// PostgreSQL).
    pub async fn checkpoint_log(&self) -> Result<(), StoreError> {
        self.db().checkpoint_log().await
    }

    /// Removes up to `limit` of this node's kept recordings (`stored`, `delivered`) older than
    /// their cutoff, with their deliveries; returns them, for their files to be removed.
    pub async fn take_expired(
        &self,
        cutoffs: &Cutoffs,
        limit: usize,
    ) -> Result<Vec<Removed>, StoreError> {
        self.db()
            .take_expired(&self.node, cutoffs, limit as i64)
            .await
    }
}
