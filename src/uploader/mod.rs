//! Delivery of finished recordings.
//!
//! The session hands every kept recording, with its metadata, to a [`Delivery`]. Until the
//! durable spool and HTTP uploader land, [`LocalStore`] keeps the file where FreeSWITCH wrote it
//! and writes its metadata beside it (`<recording_id>.json`), so nothing is left unaccounted for.

pub mod http;
pub mod local;
pub mod retry;
pub mod spool;
pub mod url;
pub mod worker;

use futures::future::BoxFuture;
use serde::Serialize;

pub use local::LocalStore;

use crate::rules::{AudioFormat, UploadMethod};

/// Everything known about a kept recording.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FinishedRecording {
    pub recording_id: String,
    pub call_id: String,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub callee_number: String,
    /// The callee's name when FreeSWITCH knows it (`Caller-Callee-ID-Name`).
    #[serde(default)]
    pub callee_name: String,
    pub direction: String,
    /// Kazoo's interaction id (channel variable `interaction_id`), when set.
    #[serde(default)]
    pub interaction_id: Option<String>,
    /// µs since the epoch.
    pub start_us: u64,
    pub duration_ms: u64,
    pub format: AudioFormat,
    pub sample_rate: Option<u32>,
    pub stereo: bool,
    pub file_path: String,
    pub size: u64,
    /// Where to deliver it; empty means local storage only.
    pub urls: Vec<String>,
    /// Keep the file locally even after delivery.
    pub keep_local: bool,
    pub method: UploadMethod,
    /// Which rule made it.
    pub origin: String,
    /// FreeSWITCH's `Record-Completion-Cause`, or how callrec finished it.
    pub completion_cause: String,
    /// 0 for a call's first recording, then 1, 2…: keeps upload file names apart.
    #[serde(default)]
    pub sequence: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("spool unavailable: {0}")]
    Spool(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Takes over a kept recording. Must be quick: it is awaited by the call's session.
pub trait Delivery: Send + Sync + 'static {
    fn accept(&self, rec: FinishedRecording) -> BoxFuture<'_, Result<(), DeliveryError>>;
}

/// Audio files under `dir` that the spool does not know.
pub fn orphans(
    store: &crate::store::Store,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, crate::store::StoreError> {
    let known = spool::known_paths(store)?;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|x| x.to_str()), Some("wav" | "mp3"))
                && !known.contains(p.to_string_lossy().as_ref())
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
