//! Retry policy: which failures are worth another attempt, and when.
//!
//! Retried: connection errors, timeouts, 408, 429 (after `Retry-After` when given, up to an
//! hour, even beyond the backoff cap), 5xx, with
//! exponential backoff (base × 2^attempts, capped) and ±20 % jitter so a recovering receiver is
//! not hit by every client at once. Given up (→ failed) once the delivery is older than the
//! configured age. Any other 4xx fails at once.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub base: Duration,
    pub cap: Duration,
    pub give_up_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(600),
            give_up_after: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Policy {
    /// Delay before attempt number `attempts + 1` (after `attempts` failures, ≥ 1).
    pub fn delay(&self, attempts: u32, jitter_unit: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp.min(20));
        let capped = raw.min(self.cap);
        // jitter_unit in [0, 1): ±20 %.
        let factor = 0.8 + 0.4 * jitter_unit.clamp(0.0, 1.0);
        capped.mul_f64(factor).min(self.cap)
    }
}

/// Status codes worth retrying.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now_unix: i64) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let fmt = time::format_description::well_known::Rfc2822;
    let when = time::OffsetDateTime::parse(&v.replace("GMT", "+0000"), &fmt).ok()?;
    let delta = when.unix_timestamp() - now_unix;
    Some(Duration::from_secs(delta.max(0) as u64))
}

/// A cheap jitter source (not cryptographic).
pub fn jitter() -> f64 {
    let b = uuid::Uuid::new_v4();
    (b.as_bytes()[0] as f64) / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = Policy::default();
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(10));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(20));
        assert_eq!(p.delay(20, 0.5), Duration::from_secs(600));
        assert!(p.delay(1, 0.0) >= Duration::from_secs(4));
        assert!(p.delay(1, 0.999) <= Duration::from_secs(6));
        assert!(p.delay(u32::MAX, 0.999) <= p.cap);
    }

    #[test]
    fn statuses_and_retry_after() {
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(retryable_status(s));
        }
        for s in [400, 401, 403, 404, 409, 413] {
            assert!(!retryable_status(s));
        }
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 - 30),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
