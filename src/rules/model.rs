//! Recording settings: the seed's `record_call` object, validated field by field.
//!
//! Invariant: a `RecordCall` that passed [`RecordCall::validate`] only holds values FreeSWITCH
//! accepts (a known format and sample rate, a bounded time limit, an absolute http(s) URL).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Disk format of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    #[default]
    Mp3,
    Wav,
}

impl AudioFormat {
    pub fn ext(self) -> &'static str {
        match self {
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Wav => "wav",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Wav => "audio/wav",
        }
    }
}

/// HTTP method used to deliver a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UploadMethod {
    #[default]
    Put,
    Post,
}

/// Sample rates FreeSWITCH's recorder accepts.
pub const SAMPLE_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

/// Default and bounds of `time_limit`, in seconds.
pub const DEFAULT_TIME_LIMIT: u32 = 3600;
pub const TIME_LIMIT_RANGE: (u32, u32) = (5, 10800);

fn yes() -> bool {
    true
}

fn default_time_limit() -> u32 {
    DEFAULT_TIME_LIMIT
}

/// `record_call`: "record all calls to/from" the document's owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordCall {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub format: AudioFormat,
    /// Recordings shorter than this many seconds are discarded.
    #[serde(default)]
    pub record_min_sec: u32,
    /// Start only when the call is answered.
    #[serde(default)]
    pub record_on_answer: bool,
    /// Start only when the call is bridged to another leg.
    #[serde(default)]
    pub record_on_bridge: bool,
    /// Sampling rate of the file; the channel's own rate when absent.
    #[serde(default)]
    pub record_sample_rate: Option<u32>,
    /// Two channels: left what the caller said, right what they heard (callrec extension).
    #[serde(default)]
    pub record_stereo: bool,
    /// Longest recording, in seconds.
    #[serde(default = "default_time_limit")]
    pub time_limit: u32,
    /// Where to deliver the file; kept in local storage when absent.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub method: UploadMethod,
}

impl Default for RecordCall {
    fn default() -> Self {
        RecordCall {
            enabled: true,
            format: AudioFormat::default(),
            record_min_sec: 0,
            record_on_answer: false,
            record_on_bridge: false,
            record_sample_rate: None,
            record_stereo: false,
            time_limit: DEFAULT_TIME_LIMIT,
            url: None,
            method: UploadMethod::default(),
        }
    }
}

/// Field-level validation errors, keyed by field name.
pub type FieldErrors = BTreeMap<String, String>;

impl RecordCall {
    /// Checks every field; `prefix` names the object in error keys (`record_call.format`).
    pub fn validate(&self, prefix: &str) -> Result<(), FieldErrors> {
        let mut errs = FieldErrors::new();
        let key = |f: &str| format!("{prefix}.{f}");
        if let Some(rate) = self.record_sample_rate {
            if !SAMPLE_RATES.contains(&rate) {
                errs.insert(
                    key("record_sample_rate"),
                    format!("must be one of {SAMPLE_RATES:?}"),
                );
            }
        }
        if !(TIME_LIMIT_RANGE.0..=TIME_LIMIT_RANGE.1).contains(&self.time_limit) {
            errs.insert(
                key("time_limit"),
                format!(
                    "must be between {} and {} seconds",
                    TIME_LIMIT_RANGE.0, TIME_LIMIT_RANGE.1
                ),
            );
        }
        if let Some(url) = &self.url {
            if let Err(why) = check_url(url) {
                errs.insert(key("url"), why);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// True when both would make the same recording (they may still go to different URLs).
    pub fn same_recording(&self, other: &RecordCall) -> bool {
        let strip = |r: &RecordCall| RecordCall {
            url: None,
            ..r.clone()
        };
        strip(self) == strip(other)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Immediately,
    OnAnswer,
    OnBridge,
}

/// An absolute `http://` or `https://` URL with a host and no whitespace.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| "must be an absolute http:// or https:// URL".to_string())?;
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

    #[test]
    fn defaults_and_parsing() {
        let r: RecordCall = serde_json::from_str("{}").unwrap();
        assert_eq!(r, RecordCall::default());
        assert_eq!(r.trigger(), Trigger::Immediately);
        let r: RecordCall =
            serde_json::from_str(r#"{"format":"wav","record_on_answer":true,"url":"http://h/x"}"#)
                .unwrap();
        assert_eq!(r.format, AudioFormat::Wav);
        assert_eq!(r.trigger(), Trigger::OnAnswer);
        assert!(serde_json::from_str::<RecordCall>(r#"{"format":"ogg"}"#).is_err());
        assert!(serde_json::from_str::<RecordCall>(r#"{"colour":"red"}"#).is_err());
    }

    #[test]
    fn validation_names_fields() {
        let r = RecordCall {
            record_sample_rate: Some(9000),
            time_limit: 2,
            url: Some("ftp://x".into()),
            ..RecordCall::default()
        };
        let e = r.validate("record_call").unwrap_err();
        assert_eq!(
            e.keys().collect::<Vec<_>>(),
            [
                "record_call.record_sample_rate",
                "record_call.time_limit",
                "record_call.url"
            ]
        );
        for bad in ["http://", "https://:80/x", "http://h/a b", "/relative"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        for good in ["http://h", "https://user:pw@h:8443/x?y=1"] {
            assert!(check_url(good).is_ok(), "{good}");
        }
    }
}
