//! Upload URLs, compatible with Kazoo so existing receivers keep working, and the redaction of
//! credentials for logs and API responses.
//!
//! - A URL without a query string: `<url without trailing '/'>/<file name>?<metadata>`.
//! - A URL with one: the file name goes into the query — a last parameter without a value
//!   (`?foo` or `?x=`) takes it (`?foo=<file name>`), otherwise `&recording=<file name>` is
//!   added — followed by the same metadata parameters.
//! - `record_caller` recordings: `<url without trailing '/'>/<call_id>.<ext>`, no query.
//! - A recording paused through the control API also gets `pauses=<start_ms>-<end_ms>:<behavior>,…`
//!   after Kazoo's parameters (absent when it was never paused).
//!
//! Invariant: every value is percent-encoded, so a hostile caller name cannot add parameters or
//! path segments.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use crate::net::userinfo::{redact, split_userinfo};

use super::FinishedRecording;

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`) is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Query-component encoding: everything but unreserved characters is escaped.
pub fn encode(v: &str) -> String {
    utf8_percent_encode(v, COMPONENT).to_string()
}

/// The metadata parameters, in Kazoo's order (missing values empty).
pub fn metadata_query(r: &FinishedRecording) -> String {
    let start_s = r.start_us / 1_000_000;
    let fields: [(&str, String); 12] = [
        ("from", r.call.caller_id_number.clone()),
        ("to", r.call.callee_number.clone()),
        ("caller_id_name", r.call.caller_id_name.clone()),
        ("caller_id_number", r.call.caller_id_number.clone()),
        ("call_id", r.call.call_id.clone()),
        ("cdr_id", r.call.call_id.clone()),
        (
            "interaction_id",
            r.call.interaction_id.clone().unwrap_or_default(),
        ),
        ("owner_id", r.call.user_id.clone().unwrap_or_default()),
        ("account_id", r.call.account_id.clone().unwrap_or_default()),
        ("start", start_s.to_string()),
        ("duration_ms", r.duration_ms.to_string()),
        ("recording_id", r.recording_id.clone()),
    ];
    let mut q = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    // Only when there were pauses, so receivers of recordings without any see Kazoo's exact
    // parameters.
    if !r.pauses.is_empty() {
        q.push_str("&pauses=");
        q.push_str(&encode(&pauses_param(&r.pauses)));
    }
    q
}

/// `<start_ms>-<end_ms>:<behavior>` per pause, comma-separated (an empty end: in force until
/// the recording ended).
pub fn pauses_param(pauses: &[crate::values::Pause]) -> String {
    pauses
        .iter()
        .map(|p| {
            let end = p.end_ms.map(|e| e.to_string()).unwrap_or_default();
            format!("{}-{end}:{}", p.start_ms, p.behavior.as_str())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `call_recording_<call_id>.<ext>`; further recordings of the same call add their id.
pub fn file_name(r: &FinishedRecording) -> String {
    let ext = r.ext();
    match r.sequence {
        0 => format!("call_recording_{}.{ext}", r.call.call_id),
        _ => format!("call_recording_{}_{}.{ext}", r.call.call_id, r.recording_id),
    }
}

/// The URL a `record_call` recording is sent to.
pub fn upload_url(base: &str, r: &FinishedRecording) -> String {
    let name = file_name(r);
    let meta = metadata_query(r);
    match base.split_once('?') {
        None => format!("{}/{}?{meta}", base.trim_end_matches('/'), encode(&name)),
        Some((head, query)) => {
            let last = query.rsplit('&').next().unwrap_or("");
            let q = if query.is_empty() {
                format!("recording={}", encode(&name))
            } else if !last.contains('=') || last.ends_with('=') {
                let sep = if last.ends_with('=') { "" } else { "=" };
                format!("{query}{sep}{}", encode(&name))
            } else {
                format!("{query}&recording={}", encode(&name))
            };
            format!("{head}?{q}&{meta}")
        }
    }
}

/// The URL a `record_caller` recording is sent to.
pub fn caller_url(base: &str, call_id: &str, ext: &str) -> String {
    format!("{}/{}.{ext}", base.trim_end_matches('/'), encode(call_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uploader::CallMeta;
    use crate::values::AudioFormat;

    fn rec() -> FinishedRecording {
        FinishedRecording {
            call: CallMeta {
                call_id: "call-1".into(),
                account_id: Some("acc-1".into()),
                user_id: Some("user-1".into()),
                device_id: None,
                caller_id_name: "Alice & Bob=?/#x".into(),
                caller_id_number: "+15551234567".into(),
                callee_number: "1000".into(),
                callee_name: String::new(),
                direction: "inbound".into(),
                interaction_id: None,
            },
            recording_id: "rec-1".into(),
            start_us: 1_795_459_961_594_251,
            duration_ms: 5010,
            format: AudioFormat::Mp3,
            sample_rate: None,
            stereo: false,
            file_path: "/x/rec-1.mp3".into(),
            size: 10,
            destinations: vec![],
            keep_local: false,
            origin: "test".into(),
            completion_cause: "success-silence".into(),
            sequence: 0,
            kind: Default::default(),
            may_grow_until_us: None,
            pauses: Vec::new(),
            encryption: None,
            encrypt_to: None,
        }
    }

    const META: &str = "from=%2B15551234567&to=1000&caller_id_name=Alice%20%26%20Bob%3D%3F%2F%23x&caller_id_number=%2B15551234567&call_id=call-1&cdr_id=call-1&interaction_id=&owner_id=user-1&account_id=acc-1&start=1795459961&duration_ms=5010&recording_id=rec-1";

    #[test]
    fn url_without_query() {
        for base in ["http://h/rec", "http://h/rec/"] {
            assert_eq!(
                upload_url(base, &rec()),
                format!("http://h/rec/call_recording_call-1.mp3?{META}")
            );
        }
    }

    #[test]
    fn url_with_query() {
        let r = rec();
        assert_eq!(
            upload_url("http://h/up?foo", &r),
            format!("http://h/up?foo=call_recording_call-1.mp3&{META}")
        );
        assert_eq!(
            upload_url("http://h/up?x=", &r),
            format!("http://h/up?x=call_recording_call-1.mp3&{META}")
        );
        assert_eq!(
            upload_url("http://h/up?a=b", &r),
            format!("http://h/up?a=b&recording=call_recording_call-1.mp3&{META}")
        );
        assert_eq!(
            upload_url("http://h/up?a=b&c", &r),
            format!("http://h/up?a=b&c=call_recording_call-1.mp3&{META}")
        );
    }

    #[test]
    fn second_recording_of_a_call_has_its_own_name() {
        let mut r = rec();
        r.sequence = 1;
        assert!(
            upload_url("http://h/r", &r).starts_with("http://h/r/call_recording_call-1_rec-1.mp3?")
        );
        assert_eq!(
            caller_url("http://h/vm/", "call-1", "wav"),
            "http://h/vm/call-1.wav"
        );
    }

    #[test]
    fn hostile_values_cannot_add_parameters() {
        let mut r = rec();
        r.call.caller_id_name = "x&account_id=evil".into();
        let u = upload_url("http://h/r", &r);
        assert_eq!(u.matches("account_id=").count(), 1);
        r.call.call_id = "../../etc/passwd".into();
        let u = upload_url("http://h/r", &r);
        assert!(u.starts_with("http://h/r/call_recording_..%2F..%2Fetc%2Fpasswd.mp3?"));
    }

    #[test]
    fn credentials_are_split_and_redacted() {
        let (u, c) = split_userinfo("https://bob:s%40cret@h:8443/up?x=1");
        assert_eq!(u, "https://h:8443/up?x=1");
        assert_eq!(c, Some(("bob".into(), Some("s@cret".into()))));
        assert_eq!(split_userinfo("https://h/x").1, None);
        assert_eq!(
            redact("https://bob:secret@h/up"),
            "https://bob:REDACTED@h/up"
        );
        assert_eq!(redact("https://h/up?a=b@c"), "https://h/up?a=b@c");
    }

    #[test]
    fn pauses_ride_after_kazoos_parameters_only_when_there_were_some() {
        use crate::values::{Pause, PauseBehavior};
        let mut r = rec();
        assert!(!metadata_query(&r).contains("pauses"));
        r.pauses = vec![
            Pause {
                start_ms: 2000,
                end_ms: Some(5000),
                behavior: PauseBehavior::Silence,
                by: Some("t".into()),
            },
            Pause {
                start_ms: 7000,
                end_ms: None,
                behavior: PauseBehavior::Skip,
                by: None,
            },
        ];
        assert!(metadata_query(&r)
            .ends_with("&recording_id=rec-1&pauses=2000-5000%3Asilence%2C7000-%3Askip"));
    }
}
