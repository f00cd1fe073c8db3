//! Delivery of finished recordings.
//!
//! The session hands every kept recording, with its metadata, to a [`Delivery`]:
//! [`worker::SpoolDelivery`] puts it in the durable spool ([`spool`], the store's recordings
//! tables) and the upload worker delivers it to each destination; [`LocalStore`] only keeps
//! the file and writes its metadata beside it (`<recording_id>.json`).

pub mod encrypt;
pub mod http;
pub mod journal;
pub mod local;
pub mod notice;
pub mod retention;

pub mod s3;
pub mod spool;
pub mod tail;
pub mod url;
pub mod worker;

use futures::future::BoxFuture;
use serde::Serialize;

pub use local::LocalStore;

impl FinishedRecording {
    /// The same metadata with every password in a URL replaced by `REDACTED`: what logs, the
    /// API, the CLI and metadata files show.
    pub fn redacted(&self) -> FinishedRecording {
        let mut shown = self.clone();
        for d in &mut shown.destinations {
            d.url = url::redact(&d.url);
        }
        shown
    }

    /// Reads metadata written by any version: the first release wrote `urls` and one `method`
    /// instead of `destinations`.
    pub fn from_json(mut v: serde_json::Value) -> Result<FinishedRecording, serde_json::Error> {
        if let Some(obj) = v.as_object_mut() {
            if !obj.contains_key("destinations") {
                let method = obj.remove("method").unwrap_or(serde_json::Value::Null);
                let urls = obj.remove("urls").unwrap_or_default();
                let dests: Vec<serde_json::Value> = urls
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| serde_json::json!({"url": u, "method": method.as_str().unwrap_or("put")}))
                    .collect();
                obj.insert("destinations".into(), dests.into());
            }
        }
        serde_json::from_value(v)
    }
}

use crate::values::{AudioFormat, Destination};
pub use crate::values::{CallMeta, RecordingKind};

/// Everything known about a kept recording: the call's metadata and the recording's own.
/// (Serialized flat: the call's fields sit beside the recording's, as in the first release.)
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FinishedRecording {
    #[serde(flatten)]
    pub call: CallMeta,
    pub recording_id: String,
    /// µs since the epoch.
    pub start_us: u64,
    pub duration_ms: u64,
    pub format: AudioFormat,
    pub sample_rate: Option<u32>,
    pub stereo: bool,
    pub file_path: String,
    pub size: u64,
    /// Where to deliver it, each with its method; empty means local storage only.
    pub destinations: Vec<Destination>,
    /// Keep the file locally even after delivery.
    pub keep_local: bool,
    /// Which rule made it.
    pub origin: String,
    /// FreeSWITCH's `Record-Completion-Cause`, or how callrec finished it.
    pub completion_cause: String,
    /// 0 for a call's first recording, then 1, 2…: keeps upload file names apart.
    #[serde(default)]
    pub sequence: u32,
    /// A recording of the call, or of the caller alone (its own URL form).
    #[serde(default)]
    pub kind: RecordingKind,
    /// Judged final from a file that stopped growing (the call could not be followed to its
    /// end): FreeSWITCH may still write it until then (µs since the epoch). Its local copy is
    /// kept until then and watched; if it grows it is delivered again, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_grow_until_us: Option<u64>,
    /// Pauses asked for through the control API, in order (offsets on the call's clock from
    /// the recording's start; an `end_ms` of `null`: in force until the recording ended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<crate::values::Pause>,
    /// The file is encrypted (age, to the account's `recording_public_key`): its bytes, its
    /// name (`….wav.age`) and its uploads are the encrypted ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// The age recipient (`age1…`, the account's `recording_public_key` when the call was
    /// planned) the file is to be encrypted to before it is kept; `encryption` once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_to: Option<String>,
}

/// How a recording's file is encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Encryption {
    /// `age`.
    pub scheme: String,
    /// The recipient it is encrypted to (`age1…`).
    pub recipient: String,
}

impl FinishedRecording {
    /// The file name extension: the format's, plus `.age` when encrypted.
    pub fn ext(&self) -> String {
        match self.encryption {
            Some(_) => format!("{}.age", self.format.ext()),
            None => self.format.ext().to_string(),
        }
    }

    /// The file's media type: the format's, or `application/age` when encrypted.
    pub fn mime(&self) -> &'static str {
        match self.encryption {
            Some(_) => "application/age",
            None => self.format.mime(),
        }
    }
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

    /// Journals a recording about to start (a durable delivery keeps it; the default keeps
    /// nothing).
    fn journal(&self, _entry: journal::JournalEntry) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async { Ok(()) })
    }

    /// A journaled recording ended without being kept.
    fn forget(&self, _recording_id: String) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Something happened to a recording that webhooks may want to hear (`reason`: why it
    /// failed, was discarded, or which control it got). Never waits; the default tells nobody.
    fn notify(
        &self,
        _event: crate::settings::webhook::HookEvent,
        _rec: &FinishedRecording,
        _reason: Option<&str>,
    ) {
    }
}

/// Offers a kept recording that delivery could not take (the store full or unreachable) again
/// and again, 1 s apart doubling to 60 s, until it is taken or `stop` is cancelled (shutdown:
/// its journal row covers the restart).
pub async fn offer_until_taken(
    delivery: std::sync::Arc<dyn Delivery>,
    rec: FinishedRecording,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if delivery.accept(rec.clone()).await.is_ok() {
            tracing::info!(
                call_id = %crate::telemetry::printable(&rec.call.call_id),
                recording_id = %rec.recording_id,
                "recording kept: delivery took it on a later attempt"
            );
            return;
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(60));
    }
}

/// A directory's subdirectories and audio files (none when it cannot be read), read on the
/// blocking pool.
async fn audio_in(d: std::path::PathBuf) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    tokio::task::spawn_blocking(move || {
        let (mut dirs, mut audio) = (Vec::new(), Vec::new());
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if matches!(p.extension().and_then(|x| x.to_str()), Some("wav" | "mp3")) {
                    audio.push(p);
                }
            }
        }
        (dirs, audio)
    })
    .await
    .unwrap_or_default()
}

/// Audio files under `dir` that the spool does not know.
pub async fn orphans(
    store: &crate::store::Store,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, crate::store::StoreError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let (dirs, audio) = audio_in(d.clone()).await;
        stack.extend(dirs);
        // One directory's known paths at a time: memory bounded by a day's recordings of one
        // account, whatever the spool holds.
        if !audio.is_empty() {
            let known = store.recording_paths_in(&d.to_string_lossy()).await?;
            for p in audio {
                if known.contains(p.to_string_lossy().as_ref()) {
                    continue;
                }
                if encrypt::plain_left_over(&p, &known) {
                    // A crash between the spool taking the encrypted twin and this removal.
                    match tokio::fs::remove_file(&p).await {
                        Ok(()) => {
                            tracing::info!(path = %p.display(), "plain file of an encrypted recording removed (left by a crash)")
                        }
                        Err(e) => {
                            tracing::warn!(path = %p.display(), error = %e, "cannot remove the plain file of an encrypted recording")
                        }
                    }
                    continue;
                }
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
