//! When a recording's file may be taken as finished without FreeSWITCH saying so. FreeSWITCH
//! writes a recording through a buffer, so a file it still writes stays unchanged for seconds
//! and then jumps (measured on 1.10.12: 44 bytes for 4 s, then 65,580, then 131,116): a file is
//! quiet only once it has not grown for twice the buffer's interval plus a margin, and even
//! then FreeSWITCH may write it until the recording's time limit has passed.
//!
//! Invariant: a missing file is never quiet.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// FreeSWITCH's default write buffer (`SWITCH_DEFAULT_FILE_BUFFER_LEN`), bytes per channel:
/// a recording's audio reaches its file only in bursts of this size.
pub const DEFAULT_WRITE_BUFFER: u64 = 65_536;

/// The lowest rate a recording can have (and so the slowest its file can grow): assumed when
/// the rate is the channel's own.
const SLOWEST_RATE: u64 = 8_000;

/// A 20 ms frame at the slowest rate: with buffering off FreeSWITCH writes every frame.
const ONE_FRAME: u64 = 320;

/// Beyond twice the write interval, for media jitter and FreeSWITCH's scheduling.
const QUIET_MARGIN: Duration = Duration::from_secs(1);

/// After the time limit, how long a file may still change (the limit is checked on whole
/// seconds, then the rest of the buffer and the header are written).
const AFTER_LIMIT: Duration = Duration::from_secs(60);

/// How long a file FreeSWITCH is still writing can stay the same size: its write buffer fills
/// every `buffer / (2 × rate)` seconds whatever the channels (65,536 bytes: 4.096 s at 8 kHz,
/// 2.048 s at 16 kHz), and the file grows only then. A file judged from disk is final only
/// once it has not grown for twice that, plus a margin. `buffer` is what the recording was
/// started with ([`Recording::write_buffer`]); `rate` `None` is the channel's own rate, taken
/// as the slowest.
pub fn quiet_window(buffer: u64, rate: Option<u32>) -> Duration {
    let rate = rate.map_or(SLOWEST_RATE, |r| (r as u64).max(SLOWEST_RATE));
    let interval_us = buffer.max(ONE_FRAME) * 1_000_000 / (2 * rate);
    Duration::from_micros(2 * interval_us) + QUIET_MARGIN
}

/// Until when (µs since the epoch) FreeSWITCH may still write a recording that started at
/// `start_us` with a time limit of `time_limit` seconds: it stops every recording at its limit.
pub fn may_grow_until_us(start_us: u64, time_limit: u32) -> u64 {
    start_us + (time_limit as u64 * 1_000_000) + AFTER_LIMIT.as_micros() as u64
}

/// Looks, `poll` apart, that span `quiet` (at least one).
pub fn looks(quiet: Duration, poll: Duration) -> u32 {
    (quiet.as_millis() as u64)
        .div_ceil(poll.as_millis().max(1) as u64)
        .max(1) as u32
}

/// Looks at `path` every `poll` until it has not grown for `quiet`, `deadline` passes or `stop`
/// is cancelled; its size at the last look (`None` when it was missing then).
pub async fn until_quiet(
    path: &Path,
    quiet: Duration,
    poll: Duration,
    deadline: tokio::time::Instant,
    stop: &CancellationToken,
) -> Option<u64> {
    let size = |p: &Path| {
        let p = p.to_path_buf();
        async move { tokio::fs::metadata(p).await.ok().map(|m| m.len()) }
    };
    let (need, mut still) = (looks(quiet, poll), 0);
    let mut last = size(path).await;
    while still < need && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
        }
        let now = size(path).await;
        if now.is_some() && now == last {
            still += 1;
        } else {
            (last, still) = (now, 0);
        }
    }
    last
}
