//! `callrec recordings …`: operators' view of the spool ("where is the recording of call X?").

use std::io::Write;
use std::path::Path;

use crate::recorder;
use crate::rules::AudioFormat;
use crate::store::Store;
use crate::uploader::spool::{self, Filter};
use crate::uploader::{CallMeta, FinishedRecording, LocalStore};

/// RFC 3339 of µs since the epoch (`-` when out of range).
pub(crate) fn when(us: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((us / 1_000_000) as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

pub async fn list(store: &Store, f: &Filter, out: &mut impl Write) -> anyhow::Result<usize> {
    let items = spool::list(store, f).await?;
    writeln!(
        out,
        "{:<36}  {:<9}  {:<12}  {:<16}  {:<36}  {:<20}  {:>9}  file",
        "recording", "state", "node", "account", "call", "start", "ms"
    )?;
    for i in &items {
        let m = &i.meta;
        writeln!(
            out,
            "{:<36}  {:<9}  {:<12}  {:<16}  {:<36}  {:<20}  {:>9}  {}",
            m.recording_id,
            i.state.as_str(),
            i.node,
            m.call.account_id.as_deref().unwrap_or("-"),
            m.call.call_id,
            when(m.start_us),
            m.duration_ms,
            m.file_path
        )?;
        for d in &i.deliveries {
            if d.state != crate::store::DeliveryState::Delivered {
                writeln!(
                    out,
                    "    {} {} {} attempts {}{}",
                    d.state,
                    d.method.as_str().to_uppercase(),
                    d.url,
                    d.attempts,
                    d.last_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )?;
            }
        }
    }
    Ok(items.len())
}

pub async fn show(store: &Store, id: &str, out: &mut impl Write) -> anyhow::Result<bool> {
    match spool::get(store, id).await? {
        Some(item) => {
            serde_json::to_writer_pretty(&mut *out, &item)?;
            writeln!(out)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Adopts an orphaned file; returns its spool state.
pub async fn adopt(
    store: &Store,
    path: &Path,
    url: Option<String>,
) -> anyhow::Result<(String, crate::store::RecordingState)> {
    let path = std::fs::canonicalize(path)?;
    let file_path = path.to_string_lossy().into_owned();
    if store.has_recording_path(&file_path).await? {
        anyhow::bail!("{file_path} is already in the spool");
    }
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("wav") => AudioFormat::Wav,
        Some("mp3") => AudioFormat::Mp3,
        _ => anyhow::bail!("{file_path}: not a .wav or .mp3 recording"),
    };
    let sidecar = LocalStore::sidecar_path(&file_path);
    let mut rec: FinishedRecording = match std::fs::read(&sidecar) {
        Ok(b) => serde_json::from_slice(&b)
            .and_then(FinishedRecording::from_json)
            .map_err(|e| anyhow::anyhow!("{sidecar}: unreadable metadata: {e}"))?,
        Err(_) => {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("adopted")
                .to_string();
            // <data>/recordings/<account>/YYYY/MM/DD/<file>
            let account = path
                .ancestors()
                .nth(4)
                .and_then(|a| a.file_name())
                .and_then(|a| a.to_str())
                .filter(|a| *a != "unknown")
                .map(str::to_string);
            let mtime = std::fs::metadata(&path)?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            FinishedRecording {
                call: CallMeta {
                    call_id: "unknown".into(),
                    account_id: account,
                    user_id: None,
                    device_id: None,
                    caller_id_name: String::new(),
                    caller_id_number: String::new(),
                    callee_number: String::new(),
                    callee_name: String::new(),
                    direction: String::new(),
                    interaction_id: None,
                },
                recording_id: stem,
                start_us: mtime,
                duration_ms: recorder::measure_file(&path, format).unwrap_or(0),
                format,
                sample_rate: None,
                stereo: false,
                file_path: file_path.clone(),
                size: 0,
                destinations: vec![],
                keep_local: true,
                origin: "adopted".into(),
                completion_cause: "adopted from disk".into(),
                sequence: 0,
                kind: Default::default(),
                may_grow_until_us: None,
                pauses: Vec::new(),
                encryption: None,
                encrypt_to: None,
            }
        }
    };
    rec.file_path = file_path;
    rec.size = std::fs::metadata(&path)?.len();
    if let Some(u) = url {
        crate::rules::model::check_url(&u).map_err(|e| anyhow::anyhow!("--url {e}"))?;
        let method = rec
            .destinations
            .first()
            .map(|d| d.method)
            .unwrap_or_default();
        rec.destinations = vec![crate::values::Destination {
            url: u,
            method,
            by_account: false,
        }];
        rec.keep_local = false;
    } else if rec.destinations.iter().any(|d| d.url.contains("REDACTED")) {
        anyhow::bail!(
            "the metadata names a URL with a redacted password; give it again with --url"
        );
    }
    let state = spool::enqueue(store, &rec).await?;
    Ok((rec.recording_id, state))
}
