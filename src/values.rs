//! Small value types that every layer speaks: the disk format of a recording, the HTTP method
//! of a delivery, a destination (URL + method), and the call's record ([`CallMeta`]).
//!
//! Invariant: this module imports nothing from the crate, so the store, the rules, the recorder
//! and the uploader can all use it without importing each other.

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

impl UploadMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadMethod::Put => "put",
            UploadMethod::Post => "post",
        }
    }

    pub fn parse(s: &str) -> Option<UploadMethod> {
        match s {
            "put" => Some(UploadMethod::Put),
            "post" => Some(UploadMethod::Post),
            _ => None,
        }
    }
}

/// Where one recording goes: a URL (it may carry `user:pass@`; never log it raw) and the
/// method to deliver it with. A recording may have several.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Destination {
    pub url: String,
    #[serde(default)]
    pub method: UploadMethod,
    /// Written through an account token: every connection to it is held to the account row of
    /// the destination policy (`settings::policy`), not only the save.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_account: bool,
}

/// What a recording is of: the call (`record_call`, rules or callflow) or the caller alone
/// (`record_caller`: voicemail greetings, IVR prompts), which Kazoo delivers to
/// `<url>/<call_id>.<ext>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecordingKind {
    #[default]
    Call,
    Caller,
}

/// How a paused recording leaves out what was said (Twilio's `PauseBehavior`): `silence` puts
/// silence in its place, so the file keeps the call's length (`uuid_record mask`); `skip` leaves
/// it out, so the file is shorter (`uuid_record pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseBehavior {
    #[default]
    Silence,
    Skip,
}

impl PauseBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseBehavior::Silence => "silence",
            PauseBehavior::Skip => "skip",
        }
    }

    pub fn parse(s: &str) -> Option<PauseBehavior> {
        match s {
            "silence" => Some(PauseBehavior::Silence),
            "skip" => Some(PauseBehavior::Skip),
            _ => None,
        }
    }
}

/// One pause of a recording, for auditors: from `start_ms` to `end_ms` (ms since the recording
/// started, on the call's clock; `None` while in force), how, and who asked (the API token's id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub behavior: PauseBehavior,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The pause in force in `pauses` (the last one, while it has no end).
pub fn pause_in_force(pauses: &[Pause]) -> Option<PauseBehavior> {
    pauses
        .last()
        .filter(|p| p.end_ms.is_none())
        .map(|p| p.behavior)
}

/// The call, as every record of it carries it: the planner's view (`rules::CallInfo` embeds
/// it), each journal entry and kept recording, each upload's metadata. One shape, made once
/// from the channel data and never copied field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMeta {
    pub call_id: String,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub callee_number: String,
    /// The callee's name when FreeSWITCH knows it (`Caller-Callee-ID-Name`).
    #[serde(default)]
    pub callee_name: String,
    pub direction: String,
    /// Kazoo's interaction id (channel variable `interaction_id`), when set.
    #[serde(default)]
    pub interaction_id: Option<String>,
}
