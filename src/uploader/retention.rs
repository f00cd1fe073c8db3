//! Retention and erasure: taking a recording out of callrec entirely (its file, its `.json`
//! metadata file, its row and deliveries) because its time is up, or because someone asked.
//!
//! - [`erase`]: one recording, on request (the API's `DELETE`, `callrec recordings delete`);
//! - [`pass`]: one retention pass: every kept recording of this node older than its account's
//!   limit (`recording_retention_days` on the account, else `retention_days`), in batches of
//!   [`RetentionConfig::batch`] with [`RetentionConfig::pause`] between them (serving keeps
//!   the store), one log line per batch; then the bytes left on disk per account;
//! - [`run`]: passes every [`RetentionConfig::every`] until shutdown.
//!
//! Invariants: rows go first (in the store, which refuses recordings still recording or
//! uploading, and other nodes' recordings), files after, so no upload can start on a file being
//! removed; a file already gone is not an error; only `stored` and `delivered` recordings are
//! ever taken by retention (failed ones wait for an operator); nothing here logs caller data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::LocalStore;
use crate::settings::documents::{parse, Settings};
use crate::store::retention::{Cutoffs, Erasure, Removed};
use crate::store::{now_us, Kind, Store, StoreError};
use crate::telemetry::metrics::{self, METRICS};

const DAY_US: u64 = 86_400_000_000;

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// `retention_days`: `None` keeps recordings of accounts without their own limit.
    pub default_days: Option<u32>,
    /// Recordings taken out per store transaction.
    pub batch: usize,
    /// Rest between batches, so calls, uploads and the API get the store in between.
    pub pause: Duration,
    /// Between passes.
    pub every: Duration,
    /// `<data_dir>/recordings`: where the per-account bytes are counted.
    pub recordings_dir: PathBuf,
    /// `decision_retention_days`: calls' decision records older than this go.
    pub decision_days: u32,
    /// `decision_max_rows`: and beyond this many, the oldest go.
    pub decision_max_rows: u64,
}

/// The files of one recording removed: how many and how many bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilesRemoved {
    pub files: usize,
    pub bytes: u64,
}

/// Removes a recording's audio file and its `.json` beside it (either may be gone already).
pub fn remove_files(r: &Removed) -> FilesRemoved {
    let mut out = FilesRemoved::default();
    for p in [r.file_path.clone(), LocalStore::sidecar_path(&r.file_path)] {
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                out.files += 1;
                out.bytes += size;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(recording_id = %r.id, path = %p, error = %e, "cannot remove an erased recording's file")
            }
        }
    }
    out
}

/// [`remove_files`] on the blocking pool.
async fn remove_files_of(r: Removed) -> FilesRemoved {
    tokio::task::spawn_blocking(move || remove_files(&r))
        .await
        .unwrap_or_default()
}

/// Erases recording `id` (of `account`, when given): its row, deliveries, file and metadata
/// file.
pub async fn erase(
    store: &Store,
    id: &str,
    account: Option<&str>,
) -> Result<(Erasure, FilesRemoved), StoreError> {
    let e = store.erase_recording(id, account).await?;
    let files = match &e {
        Erasure::Removed(r) => remove_files_of(r.clone()).await,
        _ => FilesRemoved::default(),
    };
    if matches!(e, Erasure::Removed(_)) {
        metrics::inc(&METRICS.recordings_erased_on_request_total);
    }
    Ok((e, files))
}

/// Which kept recordings are past their time at `now_us`.
pub async fn cutoffs(
    store: &Store,
    default_days: Option<u32>,
    now_us: u64,
) -> Result<Cutoffs, StoreError> {
    let before = |days: u32| now_us.saturating_sub(u64::from(days) * DAY_US);
    let accounts = store
        .documents_of_kind(Kind::Account)
        .await?
        .into_iter()
        .filter_map(|d| match parse(Kind::Account, &d.body) {
            Ok(Settings::Account(a)) => a
                .recording_retention_days
                .map(|days| (d.account_id.clone(), before(days.get()))),
            _ => None,
        })
        .collect();
    Ok(Cutoffs {
        default_before_us: default_days.filter(|d| *d > 0).map(before),
        accounts,
    })
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub erased: usize,
    pub bytes: u64,
    pub batches: usize,
    /// Decision records removed.
    pub decisions: usize,
}

/// One retention pass at `now_us` (files are removed on the blocking pool).
pub async fn pass(
    store: &Store,
    cfg: &RetentionConfig,
    now_us: u64,
) -> Result<PassReport, StoreError> {
    let cut = cutoffs(store, cfg.default_days, now_us).await?;
    let mut report = PassReport::default();
    if cut.default_before_us.is_some() || !cut.accounts.is_empty() {
        loop {
            let taken = store.take_expired(&cut, cfg.batch.max(1)).await?;
            if taken.is_empty() {
                break;
            }
            let n = taken.len();
            let mut bytes = 0;
            let mut accounts: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &taken {
                bytes += remove_files_of(r.clone()).await.bytes;
                *accounts
                    .entry(r.account_id.as_deref().unwrap_or("-"))
                    .or_default() += 1;
            }
            let per_account: Vec<String> =
                accounts.iter().map(|(a, n)| format!("{a}:{n}")).collect();
            info!(
                erased = n,
                bytes,
                accounts = %crate::telemetry::printable(&per_account.join(",")),
                "retention: recordings kept past their limit erased"
            );
            for _ in 0..n {
                metrics::inc(&METRICS.recordings_erased_total);
            }
            if let Err(e) = store.checkpoint_log().await {
                warn!(error = %e, "retention: checkpointing the store's log failed");
            }
            report.erased += n;
            report.bytes += bytes;
            report.batches += 1;
            if n < cfg.batch.max(1) {
                break;
            }
            tokio::time::sleep(cfg.pause).await;
        }
    }
    let dir = cfg.recordings_dir.clone();
    if let Ok(bytes) = tokio::task::spawn_blocking(move || local_bytes(&dir)).await {
        metrics::set_local_bytes(bytes);
    }
    report.decisions = prune_decisions(store, cfg, now_us).await?;
    Ok(report)
}

/// Removes decision records past `decision_days` or beyond `decision_max_rows`, in batches of
/// 500 with the pass's pause between them, one log line per pass that removed any.
async fn prune_decisions(
    store: &Store,
    cfg: &RetentionConfig,
    now_us: u64,
) -> Result<usize, StoreError> {
    let before = now_us.saturating_sub(u64::from(cfg.decision_days) * DAY_US);
    let mut total = 0;
    loop {
        let n = store
            .prune_decisions(before, cfg.decision_max_rows, 500)
            .await?;
        total += n;
        for _ in 0..n {
            metrics::inc(&METRICS.decisions_pruned_total);
        }
        if n < 500 {
            break;
        }
        tokio::time::sleep(cfg.pause).await;
    }
    if total > 0 {
        info!(
            removed = total,
            days = cfg.decision_days,
            max_rows = cfg.decision_max_rows,
            "retention: decision records past their time or beyond the row bound removed"
        );
    }
    Ok(total)
}

/// Bytes of files under each account directory of `dir`.
pub fn local_bytes(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(accounts) = std::fs::read_dir(dir) else {
        return out;
    };
    for a in accounts.flatten() {
        if !a.path().is_dir() {
            continue;
        }
        let mut total = 0u64;
        let mut stack = vec![a.path()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                match e.metadata() {
                    Ok(m) if m.is_dir() => stack.push(e.path()),
                    Ok(m) => total += m.len(),
                    Err(_) => {}
                }
            }
        }
        out.insert(a.file_name().to_string_lossy().into_owned(), total);
    }
    out
}

/// Runs a pass a minute after start, then every `cfg.every`, until `stop`.
pub async fn run(store: Store, cfg: RetentionConfig, stop: CancellationToken) {
    let mut wait = Duration::from_secs(60).min(cfg.every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = cfg.every;
        if let Err(e) = pass(&store, &cfg, now_us()).await {
            warn!(error = %e, "retention pass failed; the next one tries again");
        }
    }
}
