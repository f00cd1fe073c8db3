//! A call's decision record: who callrec found on the call and how, every rule it looked at and
//! why it matched or not, the callflow it ran, and what it planned to record. Kept for every
//! call the planner decided on, recorded or not, so an operator can ask "why (not)?" later.
//!
//! Invariants: built from the same [`resolve::explain`](super::resolve::explain) the call's
//! plan comes from (the record cannot disagree with what the call got); destinations appear
//! with their credentials redacted; a record is handed to a [`DecisionSink`] that never waits
//! (the call is never held up by its record).

use serde::{Deserialize, Serialize};

use super::resolve::{Considered, Explained};
use super::{CallInfo, PlannedRecording};
use crate::callflow::{Flow, Module};

/// A party as callrec identified it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyRecord {
    pub number: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// How (`channel variable`, `device sip.username = sip_auth_username`, …) or why not.
    pub how: String,
}

/// How the planner identified the account and the parties (filled in as it looks them up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identification {
    pub account: String,
    pub caller: String,
    pub callee: String,
}

/// One recording the decision planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRecord {
    pub reason: String,
    pub format: String,
    pub stereo: bool,
    pub record_on_answer: bool,
    pub record_on_bridge: bool,
    pub time_limit: u32,
    /// Where it goes (credentials redacted); empty: kept locally.
    pub destinations: Vec<String>,
}

impl From<&PlannedRecording> for PlannedRecord {
    fn from(p: &PlannedRecording) -> PlannedRecord {
        let s = &p.settings;
        PlannedRecord {
            reason: p.reason.clone(),
            format: serde_json::to_value(s.format)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            stereo: s.record_stereo,
            record_on_answer: s.record_on_answer,
            record_on_bridge: s.record_on_bridge,
            time_limit: s.time_limit,
            destinations: p
                .destinations
                .iter()
                .map(|d| crate::net::userinfo::redact(&d.url))
                .collect(),
        }
    }
}

/// The callflow the destination matched, as the steps its default path takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallflowRecord {
    pub id: String,
    pub steps: Vec<String>,
}

/// One call's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub call_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// When the decision was made, µs since the epoch.
    pub at_us: u64,
    /// FreeSWITCH's `Call-Direction` of the leg callrec saw.
    pub direction: String,
    /// `onnet` (both ends devices of the account) or `offnet`.
    pub network: String,
    /// How the account was found, or why not.
    pub account_how: String,
    pub caller: PartyRecord,
    pub callee: PartyRecord,
    /// Every rule looked at, in the order the planner looks.
    pub rules: Vec<Considered>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callflow: Option<CallflowRecord>,
    /// What the rules planned (a callflow's `record_call` adds its own as it runs).
    pub planned: Vec<PlannedRecord>,
}

/// The steps of a flow's default path (`record_call start`, `device d-1`, …), at most 32.
fn steps(flow: &Flow) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = Some(flow);
    while let Some(f) = at {
        if out.len() >= crate::callflow::MAX_DEPTH {
            break;
        }
        out.push(match &f.module {
            Module::RecordCall { action, .. } => format!("record_call {action:?}").to_lowercase(),
            Module::Device { id } => format!("device {id}"),
            Module::User { id } => format!("user {id}"),
            Module::Dialplan { context, .. } => match context {
                Some(c) => format!("dialplan {c}"),
                None => "dialplan".into(),
            },
            Module::Hangup { cause } => match cause {
                Some(c) => format!("hangup {c}"),
                None => "hangup".into(),
            },
            m => m.name().to_string(),
        });
        at = f.next();
    }
    out
}

/// The record of one decision.
pub fn record(
    call: &CallInfo,
    parties: &super::resolve::Parties,
    explained: &Explained,
    at_us: u64,
) -> Decision {
    let how = &parties.how;
    let party = |p: &super::resolve::Party, number: &str, name: &str, how: &str| PartyRecord {
        number: number.to_string(),
        name: name.to_string(),
        device_id: p.device.as_ref().map(|d| d.id.clone()),
        user_id: p.user.as_ref().map(|u| u.id.clone()),
        how: how.to_string(),
    };
    Decision {
        call_id: call.call.call_id.clone(),
        account_id: parties.account_id.clone(),
        at_us,
        direction: call.call.direction.clone(),
        network: explained.network.as_str().to_string(),
        account_how: how.account.clone(),
        caller: party(
            &parties.caller,
            &call.call.caller_id_number,
            &call.call.caller_id_name,
            &how.caller,
        ),
        callee: party(
            &parties.callee,
            &call.call.callee_number,
            &call.call.callee_name,
            &how.callee,
        ),
        rules: explained.considered.clone(),
        callflow: parties.callflow.as_ref().map(|c| CallflowRecord {
            id: c.id.clone(),
            steps: steps(&c.flow),
        }),
        planned: explained
            .recordings
            .iter()
            .map(PlannedRecord::from)
            .collect(),
    }
}

/// Where decision records go. `keep` never waits.
pub trait DecisionSink: Send + Sync + 'static {
    fn keep(&self, d: Decision);
}
