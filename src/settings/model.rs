//! Recording settings, typed: the seed's `record_call` object (and each Kazoo 4
//! `call_recording` cell) is parsed once into [`Params`], whose field types only hold values
//! FreeSWITCH accepts; layers of `Params` merge field by field and resolve into a
//! [`RecordCall`], what one recording is made with.
//!
//! Invariants: a value that parses here is a value that applies at call time: there is no
//! second validation anywhere (the API, the config file and the call-time planner all parse
//! with these types). Every bound is checked on the full JSON number before it is narrowed,
//! so `4294975296` is refused rather than wrapped to 8000.

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

pub use crate::values::{AudioFormat, Destination, UploadMethod};

/// Sample rates FreeSWITCH's recorder accepts.
pub const SAMPLE_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

/// Default and bounds of `time_limit`, in seconds.
pub const DEFAULT_TIME_LIMIT: u32 = 3600;
pub const TIME_LIMIT_RANGE: (u32, u32) = (5, 10800);
/// Bounds of `record_min_sec`: no recording is longer than the longest time limit.
pub const MIN_SEC_RANGE: (u32, u32) = (0, TIME_LIMIT_RANGE.1);

/// A whole number of seconds in `lo..=hi`, checked before narrowing.
fn bounded<'de, D: Deserializer<'de>>(d: D, lo: u32, hi: u32) -> Result<u32, D::Error> {
    let msg = || format!("must be a whole number of seconds from {lo} to {hi}");
    let v = u64::deserialize(d).map_err(|_: D::Error| D::Error::custom(msg()))?;
    if v < lo as u64 || v > hi as u64 {
        return Err(D::Error::custom(msg()));
    }
    Ok(v as u32)
}

/// `record_sample_rate`: one of [`SAMPLE_RATES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SampleRate(u32);

impl SampleRate {
    pub fn get(self) -> u32 {
        self.0
    }

    pub fn new(hz: u32) -> Option<SampleRate> {
        SAMPLE_RATES.contains(&hz).then_some(SampleRate(hz))
    }
}

impl<'de> Deserialize<'de> for SampleRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let msg = || format!("must be one of {SAMPLE_RATES:?}");
        let v = u64::deserialize(d).map_err(|_: D::Error| D::Error::custom(msg()))?;
        u32::try_from(v)
            .ok()
            .and_then(SampleRate::new)
            .ok_or_else(|| D::Error::custom(msg()))
    }
}

/// `time_limit`: seconds within [`TIME_LIMIT_RANGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TimeLimit(u32);

impl TimeLimit {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for TimeLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded(d, TIME_LIMIT_RANGE.0, TIME_LIMIT_RANGE.1).map(TimeLimit)
    }
}

/// `record_min_sec`: seconds within [`MIN_SEC_RANGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MinSec(u32);

impl MinSec {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for MinSec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded(d, MIN_SEC_RANGE.0, MIN_SEC_RANGE.1).map(MinSec)
    }
}

/// `recording_retention_days` (and the config's `retention_days`): whole days, 1 to 36,500.
pub const RETENTION_DAYS_RANGE: (u32, u32) = (1, 36_500);

/// How long an account's kept recordings are kept: days within [`RETENTION_DAYS_RANGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RetentionDays(u32);

impl RetentionDays {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for RetentionDays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded(d, RETENTION_DAYS_RANGE.0, RETENTION_DAYS_RANGE.1).map(RetentionDays)
    }
}

/// `recording_public_key`: an age X25519 recipient (`age1…`), checked by the age library.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AgeRecipient(String);

impl AgeRecipient {
    pub fn parse(s: &str) -> Result<AgeRecipient, String> {
        s.parse::<age::x25519::Recipient>()
            .map(|_| AgeRecipient(s.to_string()))
            .map_err(|_| {
                "must be an age X25519 recipient (age1…), as `age-keygen -y` prints".into()
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AgeRecipient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_: D::Error| D::Error::custom("must be a string (age1…)"))?;
        AgeRecipient::parse(s.trim()).map_err(D::Error::custom)
    }
}

/// An absolute `http://` or `https://` URL with a host and no whitespace, and whether a token
/// of one account wrote it (then every connection to it is held to the account row of the
/// destination policy, not only the save: [`super::policy`]). Written as the bare string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    text: String,
    by_account: bool,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        check_url(s).map(|()| Url {
            text: s.to_string(),
            by_account: false,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Written through an account token (set by `documents::parse` from `pvt_writer`).
    pub fn by_account(&self) -> bool {
        self.by_account
    }

    pub fn mark_by_account(&mut self) {
        self.by_account = true;
    }
}

impl Serialize for Url {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Url {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_: D::Error| D::Error::custom("must be a URL string"))?;
        Url::parse(&s).map_err(D::Error::custom)
    }
}

/// One `record_call` object or `call_recording` cell as written: every field optional, so
/// layers (account endpoint defaults, user, device) merge field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// Recordings shorter than this many seconds are discarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_min_sec: Option<MinSec>,
    /// Start only when the call is answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_on_answer: Option<bool>,
    /// Start only when the call is bridged to another leg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_on_bridge: Option<bool>,
    /// Sampling rate of the file; the channel's own rate when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_sample_rate: Option<SampleRate>,
    /// Two channels: left what the caller said, right what they heard (callrec extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_stereo: Option<bool>,
    /// Longest recording, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<TimeLimit>,
    /// Where to deliver the file; kept in local storage when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<UploadMethod>,
}

impl Params {
    /// Fields set in `over` replace this layer's.
    pub fn overlay(&mut self, over: &Params) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        take!(
            enabled,
            format,
            record_min_sec,
            record_on_answer,
            record_on_bridge,
            record_sample_rate,
            record_stereo,
            time_limit,
            url,
            method
        );
    }

    /// The recording these settings make, or `None` when they are disabled. `enabled`
    /// defaults to `default_enabled` (true for `record_call`, false for Kazoo 4 cells).
    pub fn resolve(&self, default_enabled: bool) -> Option<RecordCall> {
        if !self.enabled.unwrap_or(default_enabled) {
            return None;
        }
        Some(RecordCall {
            format: self.format.unwrap_or_default(),
            record_min_sec: self.record_min_sec.map_or(0, MinSec::get),
            record_on_answer: self.record_on_answer.unwrap_or(false),
            record_on_bridge: self.record_on_bridge.unwrap_or(false),
            record_sample_rate: self.record_sample_rate.map(SampleRate::get),
            record_stereo: self.record_stereo.unwrap_or(false),
            time_limit: self.time_limit.map_or(DEFAULT_TIME_LIMIT, TimeLimit::get),
            url: self.url.as_ref().map(|u| u.as_str().to_string()),
            url_by_account: self.url.as_ref().is_some_and(Url::by_account),
            method: self.method.unwrap_or_default(),
        })
    }

    /// Each field's value when no layer sets it, in field order (what [`Params::resolve`]
    /// fills in; `url` null is local storage, `record_sample_rate` null the channel's rate).
    pub fn defaults(default_enabled: bool) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("enabled", default_enabled.into()),
            (
                "format",
                serde_json::to_value(AudioFormat::default()).unwrap_or_default(),
            ),
            ("record_min_sec", 0.into()),
            ("record_on_answer", false.into()),
            ("record_on_bridge", false.into()),
            ("record_sample_rate", serde_json::Value::Null),
            ("record_stereo", false.into()),
            ("time_limit", DEFAULT_TIME_LIMIT.into()),
            ("url", serde_json::Value::Null),
            (
                "method",
                serde_json::to_value(UploadMethod::default()).unwrap_or_default(),
            ),
        ]
    }

    /// Every URL of this layer (to mark who wrote them).
    pub fn urls_mut(&mut self) -> impl Iterator<Item = &mut Url> {
        self.url.iter_mut()
    }
}

/// What one recording is made with (resolved from [`Params`]; only valid values).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordCall {
    pub format: AudioFormat,
    pub record_min_sec: u32,
    pub record_on_answer: bool,
    pub record_on_bridge: bool,
    pub record_sample_rate: Option<u32>,
    pub record_stereo: bool,
    pub time_limit: u32,
    pub url: Option<String>,
    /// `url` was written through an account token (see [`Url`]).
    pub url_by_account: bool,
    pub method: UploadMethod,
}

impl Default for RecordCall {
    fn default() -> Self {
        RecordCall {
            format: AudioFormat::default(),
            record_min_sec: 0,
            record_on_answer: false,
            record_on_bridge: false,
            record_sample_rate: None,
            record_stereo: false,
            time_limit: DEFAULT_TIME_LIMIT,
            url: None,
            url_by_account: false,
            method: UploadMethod::default(),
        }
    }
}

impl RecordCall {
    /// True when both make the same recording on the leg (format, rate, stereo, time limit,
    /// trigger, minimum length): where it is delivered (`url`, `method`) does not count.
    pub fn same_recording(&self, other: &RecordCall) -> bool {
        let what = |r: &RecordCall| {
            (
                r.format,
                r.record_sample_rate,
                r.record_stereo,
                r.time_limit,
                r.trigger(),
                r.record_min_sec,
            )
        };
        what(self) == what(other)
    }

    /// Where this rule delivers, if anywhere.
    pub fn destination(&self) -> Option<Destination> {
        self.url.as_ref().map(|u| Destination {
            url: u.clone(),
            method: self.method,
            by_account: self.url_by_account,
        })
    }

    /// When the recording starts.
    pub fn trigger(&self) -> Trigger {
        if self.record_on_bridge {
            Trigger::OnBridge
        } else if self.record_on_answer {
            Trigger::OnAnswer
        } else {
            Trigger::Immediately
        }
    }
}

/// When a planned recording starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    Immediately,
    OnAnswer,
    OnBridge,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Immediately => "immediately",
            Trigger::OnAnswer => "on answer",
            Trigger::OnBridge => "on bridge",
        }
    }
}

/// Why an absolute `http://` or `https://` URL is not acceptable, if it is not.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("s3://") {
        if url.split('/').nth(2).is_some_and(|b| b.contains('@')) {
            return Err("must not carry credentials (object storage credentials come from callrec's configuration)".into());
        }
        return super::destination::parse_s3(url)
            .map(|_| ())
            .ok_or_else(|| {
                "must be s3://bucket/prefix/ with a valid bucket name (3-63 of a-z 0-9 . -)".into()
            });
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| "must be an absolute http://, https:// or s3:// URL".to_string())?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("must name a host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> Result<Params, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_parsing() {
        let r = params("{}").unwrap().resolve(true).unwrap();
        assert_eq!(r, RecordCall::default());
        assert_eq!(r.trigger(), Trigger::Immediately);
        let r = params(r#"{"format":"wav","record_on_answer":true,"url":"http://h/x"}"#)
            .unwrap()
            .resolve(true)
            .unwrap();
        assert_eq!(r.format, AudioFormat::Wav);
        assert_eq!(r.trigger(), Trigger::OnAnswer);
        assert!(params(r#"{"format":"ogg"}"#).is_err());
        assert!(params(r#"{"colour":"red"}"#).is_err());
        assert!(params("{}").unwrap().resolve(false).is_none());
    }

    #[test]
    fn bounds_are_checked_before_narrowing() {
        for bad in [
            r#"{"record_sample_rate": 4294975296}"#,
            r#"{"record_sample_rate": 9000}"#,
            r#"{"record_sample_rate": 8000.0}"#,
            r#"{"time_limit": 4}"#,
            r#"{"time_limit": 10801}"#,
            r#"{"time_limit": 4294970896}"#,
            r#"{"record_min_sec": -1}"#,
            r#"{"record_min_sec": 10801}"#,
            r#"{"url": "ftp://x"}"#,
            r#"{"url": 5}"#,
        ] {
            assert!(params(bad).is_err(), "{bad}");
        }
        let p =
            params(r#"{"record_sample_rate": 16000, "time_limit": 5, "record_min_sec": 10800}"#)
                .unwrap();
        let r = p.resolve(true).unwrap();
        assert_eq!(
            (r.record_sample_rate, r.time_limit, r.record_min_sec),
            (Some(16000), 5, 10800)
        );
        for bad in ["http://", "https://:80/x", "http://h/a b", "/relative"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        for good in ["http://h", "https://user:pw@h:8443/x?y=1"] {
            assert!(check_url(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn layers_overlay_field_by_field() {
        let mut p = params(r#"{"enabled": true, "format": "wav", "time_limit": 600}"#).unwrap();
        p.overlay(&params(r#"{"time_limit": 300}"#).unwrap());
        let r = p.resolve(false).unwrap();
        assert_eq!((r.format, r.time_limit), (AudioFormat::Wav, 300));
    }

    #[test]
    fn where_it_goes_is_not_what_is_recorded() {
        let a = RecordCall::default();
        let b = RecordCall {
            url: Some("http://b/".into()),
            method: UploadMethod::Post,
            ..RecordCall::default()
        };
        assert!(a.same_recording(&b));
        for c in [
            RecordCall {
                record_min_sec: 1,
                ..RecordCall::default()
            },
            RecordCall {
                record_on_answer: true,
                ..RecordCall::default()
            },
            RecordCall {
                record_stereo: true,
                ..RecordCall::default()
            },
        ] {
            assert!(!a.same_recording(&c));
        }
    }
}
