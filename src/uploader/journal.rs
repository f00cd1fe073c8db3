//! The recording journal's entries.
//!
//! A session journals each recording before it sends `uuid_record` (or runs `record`): the
//! recording's metadata as it will be delivered, plus what finishing it needs (`record_min_sec`,
//! `time_limit`). When the recording ends the row is replaced by the kept recording (the spool)
//! or removed (discarded). Rows still journaled at start-up are taken up by
//! [`crate::supervisor`].

use serde::{Deserialize, Serialize};

use super::FinishedRecording;
use crate::store::recordings::NewRecording;
use crate::store::{Store, StoreError};

/// A recording FreeSWITCH is recording: what it will be delivered as, and how to finish it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    #[serde(flatten)]
    pub rec: FinishedRecording,
    /// Shorter recordings are discarded.
    pub record_min_sec: u32,
    /// The longest it can run, seconds (bounds how long a restart watches its file).
    pub time_limit: u32,
    /// The write buffer FreeSWITCH writes it through, bytes per channel (what callrec pinned on
    /// `uuid_record`; rows from before it was pinned: FreeSWITCH's default).
    #[serde(default = "default_write_buffer")]
    pub write_buffer: u64,
}

fn default_write_buffer() -> u64 {
    crate::recorder::DEFAULT_WRITE_BUFFER
}

/// Writes the journal row.
pub async fn record(store: &Store, e: &JournalEntry) -> Result<(), StoreError> {
    store
        .journal_recording(&NewRecording {
            id: &e.rec.recording_id,
            account_id: e.rec.call.account_id.as_deref(),
            call_id: &e.rec.call.call_id,
            file_path: &e.rec.file_path,
            destinations: &[],
            meta: e,
        })
        .await
}
