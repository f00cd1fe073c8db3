//! Which recordings a call gets.
//!
//! - [`model`], [`documents`]: the typed settings and documents, from [`crate::settings`];
//! - [`resolve`]: the precedence of settings (a pure function);
//! - [`CallInfo`]: who is on the call, read from FreeSWITCH's channel data;
//! - [`Planner`]: the decision, channel data → planned recordings, each with the reason it was
//!   made ([`planner::DocumentPlanner`] reads the documents from the store);
//! - [`decision`], [`decision_log`]: each call's decision record ("why (not) recorded") and
//!   the writer that keeps it in the store, off the call's path.

pub use crate::settings::{documents, model};
pub mod decision;
pub mod decision_log;
pub mod effective;
pub mod lookups;
pub mod planner;
pub mod resolve;

use std::borrow::Cow;

use futures::future::BoxFuture;

use crate::event::Event;
pub use crate::values::CallMeta;
pub use model::{AudioFormat, Destination, RecordCall, Trigger, UploadMethod};

/// Channel variables that name the parties (set by the dialplan), configurable.
#[derive(Debug, Clone)]
pub struct PartyVariables {
    pub account: String,
    pub user: String,
    pub device: String,
}

impl Default for PartyVariables {
    fn default() -> Self {
        PartyVariables {
            account: "callrec_account_id".into(),
            user: "callrec_user_id".into(),
            device: "callrec_device_id".into(),
        }
    }
}

/// What callrec knows about a call when it decides: the call's record ([`CallMeta`], carried
/// unchanged into every recording of it) and what only the decision reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    pub call: CallMeta,
    pub context: String,
    pub sip_from_user: Option<String>,
    pub sip_auth_username: Option<String>,
    /// `Answer-State` at connect time.
    pub answered: bool,
    /// Event-Date-Timestamp of the channel data, µs since the epoch.
    pub started_us: u64,
    /// The drop-in extension (`dialplans/callrec.xml`) handed the call over: its guard variable
    /// [`IN_PLACE_VARIABLE`] is true, `socket_resume` is preset, and the call goes back to the
    /// dialplan where it was rather than to `continue_context`.
    pub in_place: bool,
}

/// The drop-in extension's guard: set before `socket`, so a leg passes callrec once however
/// often its dialplan is hunted again (transfers, `execute_extension`).
pub const IN_PLACE_VARIABLE: &str = "callrec_passed";

/// FreeSWITCH's `switch_true`: "true", "yes", "on", "enabled", "active", "allow" or a non-zero
/// number.
pub fn fs_true(v: &str) -> bool {
    let v = v.trim();
    ["true", "yes", "on", "enabled", "active", "allow"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
        || v.parse::<i64>().is_ok_and(|n| n != 0)
}

/// Longest value taken from the channel data, in bytes. Caller-controlled strings end up in
/// paths, URLs, metadata and log lines; a SIP caller id or a UUID is far shorter, so a longer
/// value is hostile or broken and is cut (at a character boundary).
pub const MAX_CHANNEL_VALUE: usize = 256;

fn bounded(v: Option<Cow<'_, str>>) -> String {
    let v = v.unwrap_or_default();
    let mut end = v.len().min(MAX_CHANNEL_VALUE);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_string()
}

fn non_empty(v: Option<Cow<'_, str>>) -> Option<String> {
    let s = bounded(v);
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl CallInfo {
    /// Reads the channel data once; every value bounded to [`MAX_CHANNEL_VALUE`] bytes.
    pub fn from_channel_data(data: &Event, vars: &PartyVariables) -> CallInfo {
        CallInfo {
            call: CallMeta {
                call_id: bounded(data.unique_id()),
                account_id: non_empty(data.variable(&vars.account)),
                user_id: non_empty(data.variable(&vars.user)),
                device_id: non_empty(data.variable(&vars.device)),
                caller_id_name: bounded(data.caller_id_name()),
                caller_id_number: bounded(data.caller_id_number()),
                callee_number: bounded(data.destination_number()),
                callee_name: bounded(data.caller("Callee-ID-Name")),
                direction: bounded(data.call_direction()),
                interaction_id: non_empty(data.variable("interaction_id")),
            },
            context: bounded(data.caller("Context")),
            sip_from_user: non_empty(data.variable("sip_from_user")),
            sip_auth_username: non_empty(data.variable("sip_auth_username")),
            answered: data.answer_state().as_deref() == Some("answered"),
            started_us: data.timestamp_us().unwrap_or(0),
            in_place: data
                .variable(IN_PLACE_VARIABLE)
                .is_some_and(|v| fs_true(&v)),
        }
    }
}

/// One recording the call should get.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlannedRecording {
    /// What is recorded. Its `url`/`method` are the first rule's; `destinations` is where the
    /// recording goes.
    pub settings: RecordCall,
    /// Why: logged when the session starts (e.g. "device dev-1 record_call: outbound offnet").
    pub reason: String,
    /// Every destination, each with its method (rules that differed only in where the
    /// recording goes share one recording).
    pub destinations: Vec<Destination>,
    /// Also keep it in local storage (a rule without `url` asked for it).
    pub keep_local: bool,
}

impl PlannedRecording {
    pub fn new(settings: RecordCall, reason: impl Into<String>) -> PlannedRecording {
        PlannedRecording {
            keep_local: settings.url.is_none(),
            destinations: settings.destination().into_iter().collect(),
            settings,
            reason: reason.into(),
        }
    }
}

/// The callflow a call's destination matched.
#[derive(Debug, Clone, PartialEq)]
pub struct CallflowPlan {
    /// The callflow document's id (named in logs and recording reasons).
    pub id: String,
    pub flow: crate::callflow::Flow,
    /// The devices its `device`/`user` modules ring, by `device:<id>` / `user:<id>`; a key
    /// that is missing names no callable device.
    pub endpoints: std::collections::BTreeMap<String, Vec<crate::callflow::Endpoint>>,
}

/// The decision for one call, and who the rules found on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub recordings: Vec<PlannedRecording>,
    /// The callflow to run instead of handing the call straight back.
    pub callflow: Option<CallflowPlan>,
    /// Identified from the documents when the channel variables did not say.
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    /// No rule could record a callee the call is bridged to (no document has recording
    /// settings, no global rule): with nothing planned either, the call need not be followed.
    pub callee_never_records: bool,
    /// The account's `recording_public_key`: its recordings are encrypted to it before they
    /// are kept (read with the other documents, so also while the database is unreachable).
    pub encrypt_to: Option<String>,
}

impl From<Vec<PlannedRecording>> for Plan {
    fn from(recordings: Vec<PlannedRecording>) -> Plan {
        Plan {
            recordings,
            ..Plan::default()
        }
    }
}

/// Why no decision could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("settings store unavailable: {0}")]
    Store(String),
}

/// The decision: channel data → planned recordings.
pub trait Planner: Send + Sync + 'static {
    fn plan<'a>(&'a self, call: &'a CallInfo) -> BoxFuture<'a, Result<Plan, PlanError>>;
}
