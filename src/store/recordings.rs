//! Recordings and their deliveries: the durable spool's tables.
//!
//! A recording is stored with its metadata (`M`, any serde type: the store does not interpret
//! it) and one delivery per destination (URL × method). States of a delivery:
//! `pending` → `uploading` → `delivered` | `failed`; a recording's state follows from its
//! deliveries: `uploading` if any is, else `pending` if any is, else `failed` if any is, else
//! `delivered`; without deliveries it is `stored` (kept locally, final).
//!
//! Before that, while FreeSWITCH records, a recording is **journaled**: a row in state
//! `recording` (no deliveries) written before `uuid_record` is sent, replaced by the kept
//! recording when it ends, removed when it is discarded. A crash therefore leaves a row, never
//! an anonymous file.
//!
//! Invariants: a delivery changes state only in a transaction that also recomputes its
//! recording's state; `recover` returns every `uploading` delivery to `pending` (a crash
//! between claim and settle is retried, so delivery is at least once, never zero times).

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{now_us, Store, StoreError};
use crate::values::{Destination, UploadMethod};

/// The state of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Uploading,
    Delivered,
    Failed,
}

/// The state of a recording, derived from its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Journaled: FreeSWITCH is (or was, before a crash) recording it.
    Recording,
    Pending,
    Uploading,
    Delivered,
    Failed,
    Stored,
}

text_enum!(DeliveryState { Pending => "pending", Uploading => "uploading", Delivered => "delivered", Failed => "failed" });
text_enum!(RecordingState { Recording => "recording", Pending => "pending", Uploading => "uploading", Delivered => "delivered", Failed => "failed", Stored => "stored" });

impl RecordingState {
    /// FreeSWITCH may still write it, or a worker is uploading it: nothing may take it away.
    pub fn held(self) -> bool {
        matches!(self, RecordingState::Recording | RecordingState::Uploading)
    }

    /// The state of a kept recording with `total` deliveries, of which `pending`, `uploading`
    /// and `failed` are in those states: the rule the module's note states. SQLite's backend
    /// applies it as written; PostgreSQL's runs the same rule as one `CASE` in the statement
    /// that writes it (one round trip).
    pub fn of_deliveries(total: i64, pending: i64, uploading: i64, failed: i64) -> RecordingState {
        if total == 0 {
            RecordingState::Stored
        } else if uploading > 0 {
            RecordingState::Uploading
        } else if pending > 0 {
            RecordingState::Pending
        } else if failed > 0 {
            RecordingState::Failed
        } else {
            RecordingState::Delivered
        }
    }
}

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} {v:?}"))
}

/// A recording to add.
#[derive(Debug, Clone)]
pub struct NewRecording<'a, M> {
    pub id: &'a str,
    pub account_id: Option<&'a str>,
    pub call_id: &'a str,
    pub file_path: &'a str,
    pub destinations: &'a [Destination],
    pub meta: &'a M,
}

/// One delivery as stored. `url` is the real one (it may hold a password): redact before
/// showing it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub url: String,
    pub method: UploadMethod,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_us: u64,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub delivered_us: Option<u64>,
}

/// A stored recording with its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRow<M> {
    /// The node whose disk holds the file (and whose callrec delivers it).
    pub node: String,
    pub state: RecordingState,
    pub created_us: u64,
    pub updated_us: u64,
    pub meta: M,
    pub deliveries: Vec<DeliveryRow>,
}

/// A delivery taken for an attempt.
#[derive(Debug, Clone)]
pub struct Claim<M> {
    pub meta: M,
    /// The real URL (with credentials); never log it raw.
    pub url: String,
    pub method: UploadMethod,
    pub attempts: u32,
    pub since_us: u64,
}

pub use super::listing::Filter;

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    Retry {
        next_us: u64,
        error: String,
        status: Option<u16>,
    },
    Failed {
        error: String,
        status: Option<u16>,
    },
}

pub(super) fn meta_of<M: DeserializeOwned>(text: &str) -> Result<M, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("recording metadata: {e}")))
}

/// A recording's metadata as stored.
pub(super) fn meta_text<M: Serialize>(meta: &M) -> Result<String, StoreError> {
    serde_json::to_string(meta).map_err(|e| StoreError::Corrupt(format!("recording metadata: {e}")))
}

/// A delivery's columns as read, typed by [`RawDelivery::typed`] (both backends).
pub(super) struct RawDelivery {
    pub url: String,
    pub method: String,
    pub state: String,
    pub attempts: i64,
    pub next: i64,
    pub last_error: Option<String>,
    pub last_status: Option<i64>,
    pub delivered: Option<i64>,
}

impl RawDelivery {
    pub(super) fn typed(self) -> Result<DeliveryRow, StoreError> {
        Ok(DeliveryRow {
            method: UploadMethod::parse(&self.method)
                .ok_or_else(|| corrupt("method", &self.method))?,
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| corrupt("state", &self.state))?,
            url: self.url,
            attempts: self.attempts as u32,
            next_attempt_us: self.next as u64,
            last_error: self.last_error,
            last_status: self.last_status.map(|s| s as u16),
            delivered_us: self.delivered.map(|d| d as u64),
        })
    }
}

/// A recording's columns as read, with its deliveries.
pub(super) struct RawRecording {
    pub node: String,
    pub state: String,
    pub created: i64,
    pub updated: i64,
    pub meta: String,
    pub deliveries: Vec<RawDelivery>,
}

impl RawRecording {
    fn typed<M: DeserializeOwned>(self) -> Result<RecordingRow<M>, StoreError> {
        Ok(RecordingRow {
            state: RecordingState::parse(&self.state)
                .ok_or_else(|| corrupt("state", &self.state))?,
            node: self.node,
            created_us: self.created as u64,
            updated_us: self.updated as u64,
            meta: meta_of(&self.meta)?,
            deliveries: self
                .deliveries
                .into_iter()
                .map(RawDelivery::typed)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A claimed delivery as read.
pub(super) struct RawClaim {
    pub url: String,
    pub method: String,
    pub attempts: i64,
    pub since: i64,
    pub meta: String,
}

impl RawClaim {
    fn typed<M: DeserializeOwned>(self) -> Result<Claim<M>, StoreError> {
        Ok(Claim {
            meta: meta_of(&self.meta)?,
            method: UploadMethod::parse(&self.method)
                .ok_or_else(|| corrupt("method", &self.method))?,
            url: self.url,
            attempts: self.attempts as u32,
            since_us: self.since as u64,
        })
    }
}

/// A recording to add, its metadata already text (what the backends take; owned, so a
/// backend can hand it to another task).
#[derive(Clone)]
pub(super) struct RawNew {
    pub id: String,
    pub account_id: Option<String>,
    pub call_id: String,
    pub file_path: String,
    pub destinations: Vec<Destination>,
    pub meta: String,
}

impl<M: Serialize> NewRecording<'_, M> {
    fn raw(&self) -> Result<RawNew, StoreError> {
        Ok(RawNew {
            id: self.id.to_string(),
            account_id: self.account_id.map(str::to_string),
            call_id: self.call_id.to_string(),
            file_path: self.file_path.to_string(),
            destinations: self.destinations.to_vec(),
            meta: meta_text(self.meta)?,
        })
    }
}

/// What a backend does with recordings and deliveries: statements only, each naming the node
/// whose rows it claims, recovers or journals. Metadata is text here (the domain above types
/// it); a recording's state is set by [`RecordingState::of_deliveries`] in the transaction that
/// changes a delivery.
#[async_trait::async_trait]
pub(super) trait RecordingRows {
    /// Writes (or replaces) `rec` as `node`'s, with a pending delivery per destination.
    async fn add_recording(
        &self,
        node: &str,
        rec: &RawNew,
        now: i64,
    ) -> Result<RecordingState, StoreError>;
    /// Writes (or replaces) `rec` as `node`'s, in state `recording`, without deliveries.
    async fn journal_recording(&self, node: &str, rec: &RawNew, now: i64)
        -> Result<(), StoreError>;
    /// Removes recording `id` if it is still `recording`.
    async fn forget_recording(&self, id: &str) -> Result<bool, StoreError>;
    /// `node`'s journaled recordings `(id, metadata)`, oldest first.
    async fn journaled(&self, node: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// `node`'s recordings created since `since_us` whose metadata holds `needle`.
    async fn mentioning_since(
        &self,
        node: &str,
        since_us: i64,
        needle: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    async fn recover_deliveries(&self, node: &str) -> Result<usize, StoreError>;
    async fn claim_due(
        &self,
        node: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RawClaim>, StoreError>;
    async fn next_due(&self, node: &str) -> Result<Option<u64>, StoreError>;
    async fn settle(
        &self,
        id: &str,
        dest: &Destination,
        outcome: &Outcome,
    ) -> Result<RecordingState, StoreError>;
    async fn recording(&self, id: &str) -> Result<Option<RawRecording>, StoreError>;
    async fn recordings(&self, f: &Filter) -> Result<Vec<RawRecording>, StoreError>;
    async fn retry_failed(&self, id: Option<&str>, now: i64) -> Result<usize, StoreError>;
    async fn reassign(&self, from: &str, to: &str, id: Option<&str>) -> Result<usize, StoreError>;
    async fn has_recording_path(&self, node: &str, path: &str) -> Result<bool, StoreError>;
    /// `node`'s file paths from `prefix` (inclusive) to `end` (exclusive) with no `/` after
    /// `prefix`.
    async fn recording_paths_in(
        &self,
        node: &str,
        prefix: &str,
        end: &str,
    ) -> Result<HashSet<String>, StoreError>;
}

impl Store {
    /// Adds a kept recording of this node with a pending delivery per destination; returns its
    /// state (`pending`, or `stored` without destinations).
    pub async fn add_recording<M: Serialize>(
        &self,
        rec: &NewRecording<'_, M>,
    ) -> Result<RecordingState, StoreError> {
        let rec = rec.raw()?;
        let now = now_us() as i64;
        if let Some(pg) = &self.pg {
            let written = pg.add_recording(&self.node, &rec, now).await;
            if let Some(state) = self.shared_took(&rec.id, written).await? {
                return Ok(state);
            }
        }
        self.sqlite.add_recording(&self.node, &rec, now).await
    }

    /// Journals a recording FreeSWITCH is about to record on this node (state `recording`, no
    /// deliveries).
    pub async fn journal_recording<M: Serialize>(
        &self,
        rec: &NewRecording<'_, M>,
    ) -> Result<(), StoreError> {
        let rec = rec.raw()?;
        let now = now_us() as i64;
        if let Some(pg) = &self.pg {
            let written = pg.journal_recording(&self.node, &rec, now).await;
            if self.shared_took(&rec.id, written).await?.is_some() {
                return Ok(());
            }
        }
        self.sqlite.journal_recording(&self.node, &rec, now).await
    }

    /// Removes a journaled recording that ended without being kept (discarded, failed).
    pub async fn forget_recording(&self, id: &str) -> Result<bool, StoreError> {
        match &self.pg {
            Some(pg) => {
                let held_locally = self.has_local() && self.sqlite.forget_recording(id).await?;
                Ok(pg.forget_recording(id).await? || held_locally)
            }
            None => self.sqlite.forget_recording(id).await,
        }
    }

    /// Every journaled recording of this node (what a restart takes up again).
    pub async fn journaled<M: DeserializeOwned>(&self) -> Result<Vec<(String, M)>, StoreError> {
        let rows: Vec<(String, String)> = match &self.pg {
            Some(pg) => {
                // The local journal's rows (this host's, whatever node they were written as)
                // are newer than the database's of the same id.
                let mine = if self.has_local() {
                    self.sqlite.journaled_of(None).await?
                } else {
                    Vec::new()
                };
                let ids: HashSet<&str> = mine.iter().map(|(id, _)| id.as_str()).collect();
                let mut rows: Vec<(String, String)> = pg
                    .journaled(&self.node)
                    .await?
                    .into_iter()
                    .filter(|(id, _)| !ids.contains(id.as_str()))
                    .collect();
                rows.extend(mine);
                rows
            }
            None => self.sqlite.journaled(&self.node).await?,
        };
        rows.into_iter()
            .map(|(id, meta)| Ok((id, meta_of(&meta)?)))
            .collect()
    }

    /// This node's recordings created since `since_us` whose metadata has the key `field`
    /// (found as `"field":` in the stored JSON, where a quote inside a value is escaped; the
    /// store does not read metadata), oldest first.
    pub async fn mentioning_since<M: DeserializeOwned>(
        &self,
        since_us: u64,
        field: &str,
    ) -> Result<Vec<(String, M)>, StoreError> {
        let needle = format!("\"{field}\":");
        self.db()
            .mentioning_since(&self.node, since_us as i64, &needle)
            .await?
            .into_iter()
            .map(|(id, meta)| Ok((id, meta_of(&meta)?)))
            .collect()
    }

    /// This node's deliveries left `uploading` by a crash go back to `pending`. Returns how
    /// many.
    pub async fn recover_deliveries(&self) -> Result<usize, StoreError> {
        self.db().recover_deliveries(&self.node).await
    }

    /// Takes up to `limit` of this node's deliveries due at `now` and marks them `uploading`.
    pub async fn claim_due<M: DeserializeOwned>(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<Claim<M>>, StoreError> {
        self.db()
            .claim_due(&self.node, now as i64, limit as i64)
            .await?
            .into_iter()
            .map(RawClaim::typed)
            .collect()
    }

    /// When this node's next pending delivery is due.
    pub async fn next_due(&self) -> Result<Option<u64>, StoreError> {
        self.db().next_due(&self.node).await
    }

    /// Records an attempt's outcome; returns the recording's new state.
    pub async fn settle(
        &self,
        id: &str,
        dest: &Destination,
        outcome: &Outcome,
    ) -> Result<RecordingState, StoreError> {
        self.db().settle(id, dest, outcome).await
    }

    /// One recording, whichever node it is on.
    pub async fn recording<M: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<Option<RecordingRow<M>>, StoreError> {
        self.db()
            .recording(id)
            .await?
            .map(RawRecording::typed)
            .transpose()
    }

    /// Recordings of every node matching `f`, newest first.
    pub async fn recordings<M: DeserializeOwned>(
        &self,
        f: &Filter,
    ) -> Result<Vec<RecordingRow<M>>, StoreError> {
        self.db()
            .recordings(f)
            .await?
            .into_iter()
            .map(RawRecording::typed)
            .collect()
    }

    /// Puts failed deliveries of one recording (or of all, with `None`) back in the queue,
    /// with a fresh give-up clock. Returns how many.
    pub async fn retry_failed(&self, id: Option<&str>) -> Result<usize, StoreError> {
        self.db().retry_failed(id, now_us() as i64).await
    }

    /// Hands the recordings of node `from` (or only recording `id` of it) to node `to`, for a
    /// node gone for good whose files were moved to `to`: its deliveries left `uploading` go
    /// back to `pending`, its journaled ones are taken up at `to`'s next start. Returns how
    /// many recordings moved.
    pub async fn reassign(
        &self,
        from: &str,
        to: &str,
        id: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.db().reassign(from, to, id).await
    }

    /// Whether a recording of this node with this file path is known.
    pub async fn has_recording_path(&self, path: &str) -> Result<bool, StoreError> {
        self.db().has_recording_path(&self.node, path).await
    }

    /// This node's known file paths directly in directory `dir` (no trailing `/`): a range over
    /// the path index, so finding orphans costs memory in proportion to one directory, not to
    /// the whole spool.
    pub async fn recording_paths_in(&self, dir: &str) -> Result<HashSet<String>, StoreError> {
        let prefix = format!("{dir}/");
        // Every path under `dir/` sorts before `dir0` ('0' follows '/').
        let end = format!("{dir}0");
        self.db()
            .recording_paths_in(&self.node, &prefix, &end)
            .await
    }
}
