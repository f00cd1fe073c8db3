//! Where recording files go: `<data_dir>/recordings/<account>/<YYYY>/<MM>/<DD>/<recording_id>.<ext>`.
//!
//! Invariant: no component comes raw from caller-controlled data. Ids are reduced to
//! `[A-Za-z0-9_-]` (at most 64 characters), so `../../etc` cannot leave the recordings tree and
//! no path holds a space (FreeSWITCH splits `uuid_record` arguments on spaces).

use std::path::{Path, PathBuf};

/// A safe single path component built from untrusted text.
pub fn sanitize_component(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// The directory for an account's recordings of one day.
pub fn recording_dir(data_dir: &Path, account_id: Option<&str>, started_us: u64) -> PathBuf {
    let account = account_id
        .map(sanitize_component)
        .unwrap_or_else(|| "unknown".into());
    let (y, m, d) = ymd(started_us);
    data_dir
        .join("recordings")
        .join(account)
        .join(format!("{y:04}"))
        .join(format!("{m:02}"))
        .join(format!("{d:02}"))
}

/// UTC calendar date of a µs timestamp (falls back to today when it is 0 or out of range).
pub fn ymd(us: u64) -> (i32, u8, u8) {
    let t = if us == 0 {
        time::OffsetDateTime::now_utc()
    } else {
        time::OffsetDateTime::from_unix_timestamp((us / 1_000_000) as i64)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
    };
    (t.year(), t.month() as u8, t.day())
}

/// Characters that would break a `uuid_record` argument list.
pub fn unsafe_for_fs_args(p: &Path) -> bool {
    p.to_string_lossy()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_stay_inside() {
        for raw in [
            "../../etc",
            "a/b",
            "..",
            "",
            "x y\nz",
            "caf\u{e9}",
            "%2e%2e",
        ] {
            let c = sanitize_component(raw);
            assert!(!c.is_empty());
            assert!(c
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
            assert_ne!(c, "..");
        }
        assert_eq!(sanitize_component("acc-1"), "acc-1");
        assert_eq!(sanitize_component(&"x".repeat(200)).len(), 64);
    }

    #[test]
    fn layout() {
        // 2026-11-23 18:52:41 UTC
        let d = recording_dir(Path::new("/data"), Some("../../etc"), 1_795_459_961_594_251);
        assert_eq!(d, Path::new("/data/recordings/______etc/2026/11/23"));
        let d = recording_dir(Path::new("/data"), None, 1_795_459_961_594_251);
        assert_eq!(d, Path::new("/data/recordings/unknown/2026/11/23"));
        assert!(unsafe_for_fs_args(Path::new("/a b")));
        assert!(!unsafe_for_fs_args(Path::new("/a/b-c_d.wav")));
    }
}
