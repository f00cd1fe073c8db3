//! Virtual time, FreeSWITCH's date formats, and ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the epoch, now.
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn civil(days: i64) -> (i64, u32, u32) {
    // Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// `Event-Date-Local` (the simulated switch runs in UTC): `2026-11-23 18:52:41`.
pub fn date_local(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// `Event-Date-GMT`: `Mon, 23 Nov 2026 18:52:41 GMT`.
pub fn date_gmt(us: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = (us / 1_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil(days);
    let t = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random-looking v4 UUID (unique within the process; not cryptographic).
pub fn uuid_v4() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x =
        wall_us() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (std::process::id() as u64) << 32;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_captures() {
        // Event-Date-Timestamp 1795459961594251 was logged as these two strings.
        assert_eq!(date_local(1_795_459_961_594_251), "2026-11-23 18:52:41");
        assert_eq!(
            date_gmt(1_795_459_961_594_251),
            "Mon, 23 Nov 2026 18:52:41 GMT"
        );
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_ne!(u, uuid_v4());
    }
}
