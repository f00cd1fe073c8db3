//! The upload service: takes due deliveries from the spool, runs at most `concurrency` attempts
//! at once, records each outcome, and removes a delivered file unless it is to be kept.
//! [`SpoolDelivery`] is the [`Delivery`] sessions hand recordings to.
//!
//! Invariants: a delivery is claimed (marked `uploading`) before its attempt starts and settled
//! after it ends, so a crash in between leaves it to be retried at start-up; deliveries are
//! claimed `concurrency` at a time and wait for a slot claimed (at most `concurrency` of them);
//! on shutdown no new attempt starts and unsent deliveries stay in the spool (claimed ones are
//! put back to `pending` at the next start); while every slot is busy the loop
//! waits for one to free instead of polling the spool (a deep backlog costs no idle work).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::telemetry::printable;
use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::http::Http;
use super::journal::JournalEntry;
use super::spool::{self, Claim, Outcome};
use super::url;
use super::{Delivery, DeliveryError, FinishedRecording, LocalStore};
use crate::settings::webhook::HookEvent;
use crate::store::{RecordingState, Store};

/// The longest the loop sleeps without looking at the spool: other processes make deliveries
/// due without waking it (`recordings retry` and `reassign` from the CLI, and with a shared
/// database another instance's API). One indexed query per period.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Hands recordings to the spool and wakes the uploader; watches a recording judged final
/// from a quiet file until FreeSWITCH can no longer write it ([`super::tail`]).
pub struct SpoolDelivery {
    pub store: Store,
    pub wake: Arc<Notify>,
    pub tail: super::tail::TailSettings,
    /// Ends the tail watches on shutdown (their files stay on disk).
    pub stop: CancellationToken,
    /// Where webhook notices go (`None`: nobody is told).
    pub notices: Option<crate::hooks::Notifier>,
}

impl Delivery for SpoolDelivery {
    fn accept(&self, rec: FinishedRecording) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            let mut rec = rec;
            // An account with a public key gets the encrypted file only.
            let plain = self.encrypt_if_wanted(&mut rec).await?;
            // The spool is the record of truth: it goes first.
            let state = spool::enqueue(&self.store, &rec)
                .await
                .map_err(|e| DeliveryError::Spool(e.to_string()))?;
            if let Some(plain) = plain {
                // The spool names the encrypted file now: the plain one goes.
                for p in [plain.clone(), LocalStore::sidecar_path(&plain)] {
                    if let Err(e) = tokio::fs::remove_file(&p).await {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            warn!(recording_id = %rec.recording_id, path = %p, error = %e, "cannot remove the plain file of an encrypted recording");
                        }
                    }
                }
            }
            // The metadata file beside the recording lets an operator (or `adopt`) trace it;
            // failing to write it (a full disk) does not lose the recording.
            if let Err(e) = LocalStore::write_sidecar(&rec).await {
                warn!(recording_id = %rec.recording_id, error = %e, "cannot write the metadata file");
            }
            self.notify(HookEvent::Completed, &rec, None);
            if state == RecordingState::Stored {
                info!(recording_id = %rec.recording_id, path = %rec.file_path, "recording stored locally (no url)");
                self.notify(HookEvent::Delivered, &rec, Some("stored locally"));
            } else {
                let to: Vec<String> = rec
                    .destinations
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {}",
                            d.method.as_str().to_uppercase(),
                            url::redact(&d.url)
                        )
                    })
                    .collect();
                info!(recording_id = %rec.recording_id, destinations = %to.join(", "), "recording queued for upload");
                self.wake.notify_one();
            }
            if let Some(until) = rec.may_grow_until_us {
                warn!(
                    recording_id = %rec.recording_id,
                    may_grow_until_us = until,
                    "recording judged final from a file that stopped growing: its local copy is kept and watched until FreeSWITCH can no longer write it"
                );
                tokio::spawn(super::tail::watch(
                    self.store.clone(),
                    self.wake.clone(),
                    rec,
                    self.tail,
                    self.stop.clone(),
                ));
            }
            Ok(())
        })
    }

    fn journal(&self, entry: JournalEntry) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            super::journal::record(&self.store, &entry)
                .await
                .map_err(|e| DeliveryError::Spool(e.to_string()))
        })
    }

    fn notify(&self, event: HookEvent, rec: &FinishedRecording, reason: Option<&str>) {
        if let Some(n) = &self.notices {
            if let Some(notice) = super::notice::notice(event, rec, self.store.node(), reason, None)
            {
                n.notify(notice);
            }
        }
    }

    fn forget(&self, recording_id: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.forget_recording(&recording_id).await {
                warn!(error = %e, "cannot remove a journaled recording");
            }
        })
    }
}

impl SpoolDelivery {
    /// Encrypts `rec`'s file to `rec.encrypt_to` (the account's `recording_public_key` when
    /// the call was planned) unless it is encrypted already, pointing `rec` at the encrypted
    /// file; returns the plain file's path, to remove once the spool holds the encrypted one.
    async fn encrypt_if_wanted(
        &self,
        rec: &mut FinishedRecording,
    ) -> Result<Option<String>, DeliveryError> {
        let Some(key) = rec.encrypt_to.clone().filter(|_| rec.encryption.is_none()) else {
            return Ok(None);
        };
        let plain = rec.file_path.clone();
        if !std::path::Path::new(&plain).exists() {
            return Ok(None); // nothing to encrypt: the file rule reports it missing
        }
        let (p, k) = (plain.clone(), key.clone());
        let done = tokio::task::spawn_blocking(move || {
            super::encrypt::encrypt_file(std::path::Path::new(&p), &k)
        })
        .await
        .map_err(|e| DeliveryError::Spool(e.to_string()))?;
        let (path, size) = done.map_err(|source| {
            error!(recording_id = %rec.recording_id, error = %source, "cannot encrypt the recording; it stays journaled and is offered again");
            DeliveryError::Io {
                path: plain.clone(),
                source,
            }
        })?;
        if rec.may_grow_until_us.is_some() {
            warn!(recording_id = %rec.recording_id, "recording judged final from a quiet file was encrypted as judged: audio FreeSWITCH writes to it later is not delivered");
            rec.may_grow_until_us = None;
        }
        rec.file_path = path.to_string_lossy().into_owned();
        rec.size = size;
        rec.encryption = Some(super::Encryption {
            scheme: "age".into(),
            recipient: key,
        });
        info!(recording_id = %rec.recording_id, bytes = size, "recording encrypted to the account's public key");
        Ok(Some(plain))
    }

    /// Takes up the watches of files FreeSWITCH may still write that a previous run left.
    pub async fn resume_watches(&self) -> usize {
        super::tail::resume(
            self.store.clone(),
            self.wake.clone(),
            self.tail,
            self.stop.clone(),
        )
        .await
    }
}

#[derive(Debug, Clone, Default)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// Keep the local file after every delivery succeeded.
    pub keep_local_after_upload: bool,
    /// Told when a recording is delivered everywhere or has failed (`None`: nobody).
    pub notices: Option<crate::hooks::Notifier>,
}

/// Runs the upload loop until `stop` is cancelled.
pub async fn run(
    store: Store,
    http: Arc<Http>,
    cfg: WorkerConfig,
    wake: Arc<Notify>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    // Claimed (marked `uploading`) and waiting for a slot: one claim transaction serves up to
    // `concurrency` uploads. Left claimed on shutdown, they are put back at the next start.
    let mut claimed: VecDeque<Claim> = VecDeque::new();
    loop {
        if stop.is_cancelled() {
            break;
        }
        let free = slots.available_permits();
        if free == 0 {
            // Every slot is busy: nothing to do until one frees (its upload wakes us). Polling
            // the spool meanwhile would spin whenever the backlog is deeper than the slots.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = wake.notified() => continue,
            }
        }
        if claimed.is_empty() {
            let batch = cfg.concurrency.max(1);
            match spool::claim_due(&store, spool::now_us(), batch).await {
                Ok(c) => claimed.extend(c),
                Err(e) => error!(error = %e, "spool unavailable"),
            }
        }
        let mut started = 0;
        while started < free {
            let Some(claim) = claimed.pop_front() else {
                break;
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (store, http, cfg, wake) = (store.clone(), http.clone(), cfg.clone(), wake.clone());
            tracker.spawn(async move {
                one(&store, &http, &cfg, claim).await;
                drop(permit);
                wake.notify_one();
            });
            started += 1;
        }
        if !claimed.is_empty() || started == free {
            // More is due (claimed, or possibly still in the spool): the next turn waits for a
            // slot.
            continue;
        }
        let next = store.next_due().await.ok().flatten();
        let wait = match next {
            Some(t) => Duration::from_micros(t.saturating_sub(spool::now_us())).min(IDLE_POLL),
            None => IDLE_POLL,
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn one(store: &Store, http: &Http, cfg: &WorkerConfig, claim: Claim) {
    let m = &claim.meta;
    let shown = url::redact(&Http::target(&claim));
    info!(
        recording_id = %m.recording_id,
        call_id = %printable(&m.call.call_id),
        account_id = %printable(m.call.account_id.as_deref().unwrap_or("-")),
        url = %shown,
        attempt = claim.attempts + 1,
        "upload attempt"
    );
    let outcome = http.attempt(&claim).await;
    use crate::telemetry::metrics::{inc, METRICS};
    inc(match &outcome {
        Outcome::Delivered { .. } => &METRICS.uploads_delivered_total,
        Outcome::Retry { .. } => &METRICS.uploads_retried_total,
        Outcome::Failed { .. } => &METRICS.uploads_failed_total,
    });
    match &outcome {
        Outcome::Delivered { status } => {
            info!(recording_id = %m.recording_id, call_id = %printable(&m.call.call_id), url = %shown, status, "upload delivered")
        }
        Outcome::Retry {
            next_us,
            error,
            status,
        } => warn!(
            recording_id = %m.recording_id, call_id = %printable(&m.call.call_id), url = %shown, status = %status.map_or("-".to_string(), |s| s.to_string()),
            error = %error, retry_in_ms = next_us.saturating_sub(spool::now_us()) / 1000,
            "upload failed; will retry"
        ),
        Outcome::Failed { error, status } => error!(
            recording_id = %m.recording_id, call_id = %printable(&m.call.call_id), url = %shown, status = %status.map_or("-".to_string(), |s| s.to_string()),
            error = %error, "upload failed for good (dead letter)"
        ),
    }
    // A file FreeSWITCH may still write stays until it cannot ([`super::tail`] removes it then).
    let may_grow = m.may_grow_until_us.is_some_and(|t| t > spool::now_us());
    let drop_local = !m.keep_local && !cfg.keep_local_after_upload && !may_grow;
    // Settled, then, once delivered everywhere, removed. A shared database that cannot be
    // reached is waited for (the outcome is known; redoing the upload later would only repeat
    // it); shutdown leaves the delivery to the next start.
    let mut wait = Duration::from_millis(250);
    let mut warned = false;
    let (state, removed) = loop {
        match spool::settle(store, &claim, &outcome).await {
            Ok(state) => {
                let mut removed = Vec::new();
                if state == RecordingState::Delivered && drop_local {
                    let path = claim.meta.file_path.clone();
                    for p in [path.clone(), LocalStore::sidecar_path(&path)] {
                        let r = tokio::fs::remove_file(&p).await;
                        removed.push((p, r));
                    }
                }
                break (state, removed);
            }
            Err(crate::store::StoreError::Unreachable(e)) => {
                if !warned {
                    warn!(recording_id = %m.recording_id, error = %e, "database unreachable: the upload outcome is recorded when it returns");
                    warned = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                error!(recording_id = %m.recording_id, error = %e, "cannot record the upload outcome; it will be retried");
                return;
            }
        }
    };
    for (p, r) in &removed {
        if let Err(e) = r {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(recording_id = %m.recording_id, path = %p, error = %e, "cannot remove delivered file");
            }
        }
    }
    if state == RecordingState::Delivered && !removed.is_empty() {
        info!(recording_id = %m.recording_id, "recording delivered; local copy removed");
    }
    if let Some(n) = &cfg.notices {
        let event = match state {
            RecordingState::Delivered => HookEvent::Delivered,
            RecordingState::Failed => HookEvent::Failed,
            _ => return,
        };
        // The destinations' states as they are now (one read; if it fails, as claimed).
        let deliveries = spool::get(store, &m.recording_id)
            .await
            .ok()
            .flatten()
            .map(|item| item.deliveries);
        let reason = match &outcome {
            Outcome::Failed { error, .. } => Some(error.as_str()),
            _ => None,
        };
        if let Some(notice) =
            super::notice::notice(event, m, store.node(), reason, deliveries.as_deref())
        {
            n.notify(notice);
        }
    }
}
