//! Room for recordings: whether the recordings directory is writable and how much space is
//! free, checked on demand (`GET /readyz`) and watched in the background.
//!
//! Invariants: a check never panics and never blocks the runtime (callers run it on the blocking
//! pool); the watcher logs a low-space episode once when it starts and once when it ends, and
//! keeps the `disk_low` gauge and `disk_low_total` counter in step with those lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::telemetry::metrics::{self, METRICS};

/// One look at the recordings directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// A small file could be written and removed.
    pub writable: bool,
    /// Bytes available to unprivileged writers; `None` when the filesystem cannot say.
    pub free: Option<u64>,
}

impl Space {
    /// Room for recordings: writable, with at least `min_free` bytes free.
    pub fn enough(&self, min_free: u64) -> bool {
        self.writable && self.free.is_some_and(|f| f >= min_free)
    }
}

/// Looks at `dir` now (blocking: file system calls).
pub fn check(dir: &Path) -> Space {
    let probe = dir.join(".callrec-ready-probe");
    let wrote = std::fs::write(&probe, b"ok").is_ok();
    // Removed even when the write failed: a full disk can leave it created but empty.
    let removed = std::fs::remove_file(&probe).is_ok();
    let writable = wrote && removed;
    let free = rustix::fs::statvfs(dir)
        .ok()
        .map(|v| v.f_bavail.saturating_mul(v.f_frsize));
    Space { writable, free }
}

/// Watches `dir` every `every` for ever, logging when space runs low and when it returns.
pub async fn watch(dir: PathBuf, min_free: u64, every: Duration) {
    let mut low = false;
    loop {
        let d = dir.clone();
        let space = tokio::task::spawn_blocking(move || check(&d))
            .await
            .unwrap_or(Space {
                writable: false,
                free: None,
            });
        let now_low = !space.enough(min_free);
        if now_low && !low {
            warn!(
                dir = %dir.display(),
                free_bytes = space.free.unwrap_or(0),
                min_free_bytes = min_free,
                writable = space.writable,
                "recordings directory is out of space (or not writable): FreeSWITCH cannot write recordings; calls go on, /readyz is false"
            );
            metrics::set(&METRICS.disk_low, 1);
            metrics::inc(&METRICS.disk_low_total);
        } else if !now_low && low {
            info!(
                dir = %dir.display(),
                free_bytes = space.free.unwrap_or(0),
                "recordings directory has room again"
            );
            metrics::set(&METRICS.disk_low, 0);
        }
        low = now_low;
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_has_room_and_a_missing_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = check(dir.path());
        assert!(s.writable && s.free.is_some());
        assert!(s.enough(1));
        assert!(!s.enough(u64::MAX), "more than any disk has");
        let gone = check(&dir.path().join("missing"));
        assert!(!gone.writable && gone.free.is_none() && !gone.enough(0));
    }
}
