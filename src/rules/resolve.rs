//! The decision: which recordings a call gets, from the documents of the parties involved.
//! A pure function of its inputs; the README's precedence table is tested row by row here.
//!
//! Semantics:
//! - **Endpoint settings** (for the caller's device, outbound; for the callee's device,
//!   inbound) merge, field by field, `account.call_recording.endpoint` ⊕ user ⊕ device: the
//!   device wins, then the user, then the account's endpoint defaults.
//! - In each document the cell for the call is the most specific of
//!   `call_recording.<direction>.<network>`, `<direction>.any`, `any.<network>`, `any.any`;
//!   a user's or device's legacy `record_call` stands for `any.any` when `call_recording` has no
//!   matching cell. `enabled` defaults to true in `record_call` (the seed: "add record_call …
//!   all calls to/from … will be recorded") and to false in `call_recording` cells (Kazoo 4).
//! - **Account-wide** settings are evaluated on their own: `call_recording.account.<dir>.<net>`
//!   (direction relative to the account: outbound when the caller is one of its devices), or
//!   the account's legacy `record_call` ("all calls to/from this account").
//! - **Never the same leg twice**: plans with identical settings (URL aside) collapse into one
//!   recording delivered to every URL they name; reasons are joined.
//! - Network: onnet when both ends are known devices of the account, else offnet.

use serde_json::{Map, Value};

use super::model::RecordCall;
use super::PlannedRecording;
use crate::store::Doc;

/// A party's documents, as far as they are known.
#[derive(Debug, Clone, Default)]
pub struct Party {
    pub device: Option<Doc>,
    pub user: Option<Doc>,
}

impl Party {
    fn known(&self) -> bool {
        self.device.is_some()
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone, Default)]
pub struct Parties {
    pub account: Option<Doc>,
    pub caller: Party,
    pub callee: Party,
    /// A `record_call` from callrec's configuration, applied like an account-wide rule.
    pub global: Option<RecordCall>,
}

const DIRS: [&str; 2] = ["inbound", "outbound"];

/// The cell of `cr` (a direction map) for `dir`/`net`, most specific first.
fn cell<'a>(cr: &'a Value, dir: &str, net: &str) -> Option<(&'a Map<String, Value>, String)> {
    for (d, n) in [(dir, net), (dir, "any"), ("any", net), ("any", "any")] {
        if let Some(m) = cr.get(d).and_then(|x| x.get(n)).and_then(|x| x.as_object()) {
            return Some((m, format!("{d} {n}")));
        }
    }
    None
}

fn with_default_enabled(m: &Map<String, Value>, enabled: bool) -> Map<String, Value> {
    let mut m = m.clone();
    m.entry("enabled").or_insert(Value::Bool(enabled));
    m
}

/// One document's contribution to an endpoint's settings: its cell, and whether it is a
/// legacy `record_call` (whose `enabled` defaults to true).
fn endpoint_layer(doc: &Doc, dir: &str, net: &str) -> Option<(Map<String, Value>, String, bool)> {
    let b = &doc.body;
    if let Some(cr) = b.get("call_recording") {
        if let Some((m, where_)) = cell(cr, dir, net) {
            return Some((m.clone(), format!("call_recording {where_}"), false));
        }
    }
    b.get("record_call")
        .and_then(|v| v.as_object())
        .map(|m| (m.clone(), "record_call".to_string(), true))
}

fn to_settings(m: Map<String, Value>) -> Option<RecordCall> {
    // Documents are validated on write; a stored one that no longer parses records nothing,
    // loudly, rather than with guessed settings.
    match serde_json::from_value::<RecordCall>(Value::Object(m)) {
        Ok(rc) => rc.enabled.then_some(rc),
        Err(e) => {
            tracing::warn!(error = %e, "stored recording settings are invalid; ignored");
            None
        }
    }
}

/// The endpoint plan for one party, if any: layers merged field by field, most specific last.
fn endpoint_plan(
    account: Option<&Doc>,
    party: &Party,
    dir: &str,
    net: &str,
) -> Option<PlannedRecording> {
    let mut merged = Map::new();
    let mut decided_by = None;
    let mut legacy = false;
    if let Some(a) = account {
        if let Some(cr) = a.body.get("call_recording").and_then(|c| c.get("endpoint")) {
            if let Some((m, w)) = cell(cr, dir, net) {
                merged.extend(m.clone());
                decided_by = Some(format!("account {} endpoint {w}", a.id));
            }
        }
    }
    for (what, doc) in [("user", &party.user), ("device", &party.device)] {
        if let Some(d) = doc {
            if let Some((m, w, is_legacy)) = endpoint_layer(d, dir, net) {
                merged.extend(m);
                legacy |= is_legacy;
                decided_by = Some(format!("{what} {} {w}", d.id));
            }
        }
    }
    let why = decided_by?;
    merged.entry("enabled").or_insert(Value::Bool(legacy));
    let settings = to_settings(merged)?;
    Some(PlannedRecording::new(
        settings,
        format!("{why}: {dir} {net} enabled"),
    ))
}

fn account_plan(account: &Doc, dir: &str, net: &str) -> Option<PlannedRecording> {
    let b = &account.body;
    if let Some(cr) = b.get("call_recording").and_then(|c| c.get("account")) {
        if let Some((m, w)) = cell(cr, dir, net) {
            let settings = to_settings(with_default_enabled(m, false))?;
            return Some(PlannedRecording::new(
                settings,
                format!(
                    "account {} call_recording.account {w}: {dir} {net} enabled",
                    account.id
                ),
            ));
        }
    }
    let m = b.get("record_call")?.as_object()?;
    let settings = to_settings(with_default_enabled(m, true))?;
    Some(PlannedRecording::new(
        settings,
        format!("account {} record_call: all calls", account.id),
    ))
}

/// The planned recordings of a call: collapsed, each with its reason.
pub fn plan(p: &Parties) -> Vec<PlannedRecording> {
    let net = if p.caller.known() && p.callee.known() {
        "onnet"
    } else {
        "offnet"
    };
    let mut plans = Vec::new();
    if let Some(g) = &p.global {
        if g.enabled {
            plans.push(PlannedRecording::new(
                g.clone(),
                "config record_call: all calls",
            ));
        }
    }
    if let Some(a) = &p.account {
        let dir = if p.caller.known() { DIRS[1] } else { DIRS[0] };
        plans.extend(account_plan(a, dir, net));
    }
    if p.caller.device.is_some() || p.caller.user.is_some() {
        plans.extend(endpoint_plan(
            p.account.as_ref(),
            &p.caller,
            "outbound",
            net,
        ));
    }
    if p.callee.device.is_some() || p.callee.user.is_some() {
        plans.extend(endpoint_plan(p.account.as_ref(), &p.callee, "inbound", net));
    }
    collapse(plans)
}

/// Identical settings (URL aside) become one recording with every URL.
pub fn collapse(plans: Vec<PlannedRecording>) -> Vec<PlannedRecording> {
    let mut out: Vec<PlannedRecording> = Vec::new();
    for p in plans {
        match out
            .iter_mut()
            .find(|o| o.settings.same_recording(&p.settings))
        {
            Some(o) => {
                if let Some(u) = &p.settings.url {
                    if !o.urls().contains(u) {
                        o.extra_urls.push(u.clone());
                    }
                } else {
                    o.keep_local = true;
                }
                o.reason = format!("{}; {}", o.reason, p.reason);
            }
            None => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! One test per row of the README's precedence table.
    use super::*;
    use crate::rules::AudioFormat;
    use crate::store::Kind;
    use serde_json::json;

    fn doc(kind: Kind, id: &str, body: Value) -> Doc {
        Doc {
            kind,
            id: id.into(),
            account_id: "acc".into(),
            rev: 1,
            body,
        }
    }

    /// Alice (device d-alice, user u-alice) calls out (offnet), or calls Bob (onnet).
    struct Case {
        account: Value,
        alice_user: Value,
        alice_device: Value,
        bob_device: Option<Value>,
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                account: json!({}),
                alice_user: json!({}),
                alice_device: json!({"owner_id": "u-alice", "sip": {"username": "alice"}}),
                bob_device: None,
            }
        }
    }

    impl Case {
        fn plan(self) -> Vec<PlannedRecording> {
            let mut dev = self.alice_device;
            crate::rules::documents::merge_patch(
                &mut dev,
                &json!({"owner_id": "u-alice", "sip": {"username": "alice"}}),
            );
            let p = Parties {
                account: Some(doc(Kind::Account, "acc", self.account)),
                caller: Party {
                    device: Some(doc(Kind::Device, "d-alice", dev)),
                    user: Some(doc(Kind::User, "u-alice", self.alice_user)),
                },
                callee: Party {
                    device: self.bob_device.map(|b| doc(Kind::Device, "d-bob", b)),
                    user: None,
                },
                global: None,
            };
            plan(&p)
        }
    }

    #[test]
    fn row01_nothing_configured_records_nothing() {
        assert!(Case::default().plan().is_empty());
    }

    #[test]
    fn row02_account_record_call_records_every_call() {
        let p = Case {
            account: json!({"record_call": {}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].reason, "account acc record_call: all calls");
        assert_eq!(p[0].settings.format, AudioFormat::Mp3);
    }

    #[test]
    fn row03_user_record_call_records_calls_from_their_devices() {
        let p = Case {
            alice_user: json!({"record_call": {"format": "wav"}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].reason,
            "user u-alice record_call: outbound offnet enabled"
        );
        assert_eq!(p[0].settings.format, AudioFormat::Wav);
    }

    #[test]
    fn row04_device_disabled_overrides_user_enabled() {
        let p = Case {
            alice_user: json!({"record_call": {"format": "wav"}}),
            alice_device: json!({"record_call": {"enabled": false}}),
            ..Case::default()
        }
        .plan();
        assert!(p.is_empty());
    }

    #[test]
    fn row05_fields_merge_account_endpoint_user_device() {
        let p = Case {
            account: json!({"call_recording": {"endpoint": {"any": {"any": {"enabled": true, "format": "wav", "time_limit": 600}}}}}),
            alice_user: json!({"call_recording": {"outbound": {"any": {"time_limit": 300}}}}),
            alice_device: json!({"call_recording": {"outbound": {"offnet": {"record_min_sec": 5}}}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        let s = &p[0].settings;
        assert_eq!(
            (s.format, s.time_limit, s.record_min_sec),
            (AudioFormat::Wav, 300, 5)
        );
        assert_eq!(
            p[0].reason,
            "device d-alice call_recording outbound offnet: outbound offnet enabled"
        );
    }

    #[test]
    fn row06_call_recording_cells_default_to_disabled() {
        let p = Case {
            alice_device: json!({"call_recording": {"any": {"any": {"format": "wav"}}}}),
            ..Case::default()
        }
        .plan();
        assert!(p.is_empty());
    }

    #[test]
    fn row07_most_specific_cell_wins_per_document() {
        let bob = json!({"call_recording": {"any": {"any": {"enabled": true}}, "inbound": {"onnet": {"enabled": false}}}});
        // Alice calls Bob: onnet, Bob's side is inbound → the inbound.onnet cell disables.
        let p = Case {
            bob_device: Some(bob.clone()),
            ..Case::default()
        }
        .plan();
        assert!(p.is_empty());
        // The same document for Alice's outgoing call: any.any applies.
        let p = Case {
            alice_device: bob,
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        assert!(p[0].reason.contains("call_recording any any"));
    }

    #[test]
    fn row08_account_wide_direction_is_relative_to_the_account() {
        let account =
            json!({"call_recording": {"account": {"inbound": {"offnet": {"enabled": true}}}}});
        // Alice (a device of the account) calls out: outbound for the account → not recorded.
        assert!(Case {
            account: account.clone(),
            ..Case::default()
        }
        .plan()
        .is_empty());
        // An outside caller reaching the account: inbound offnet → recorded.
        let p = plan(&Parties {
            account: Some(doc(Kind::Account, "acc", account)),
            ..Parties::default()
        });
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].reason,
            "account acc call_recording.account inbound offnet: inbound offnet enabled"
        );
    }

    #[test]
    fn row09_same_settings_collapse_into_one_recording() {
        // Account-wide and Alice's user both say "record, mp3": one recording.
        let p = Case {
            account: json!({"record_call": {}}),
            alice_user: json!({"record_call": {}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        assert!(p[0].reason.contains("account acc") && p[0].reason.contains("user u-alice"));
    }

    #[test]
    fn row10_settings_differing_only_in_url_deliver_to_each_url() {
        let p = Case {
            account: json!({"record_call": {"url": "https://a.example/rec/"}}),
            alice_user: json!({"record_call": {"url": "https://b.example/rec/"}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].urls(),
            ["https://a.example/rec/", "https://b.example/rec/"]
        );
        assert!(!p[0].keep_local);
    }

    #[test]
    fn row11_different_settings_make_separate_recordings() {
        let p = Case {
            account: json!({"record_call": {"format": "mp3"}}),
            alice_user: json!({"record_call": {"format": "wav"}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn row12_both_ends_of_an_onnet_call_record_the_leg_once() {
        let p = Case {
            alice_device: json!({"record_call": {}}),
            bob_device: Some(json!({"record_call": {}})),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        assert!(p[0].reason.contains("outbound onnet") && p[0].reason.contains("inbound onnet"));
    }

    #[test]
    fn row13_call_recording_beats_legacy_record_call_in_the_same_document() {
        let p = Case {
            alice_device: json!({
                "record_call": {"format": "wav"},
                "call_recording": {"outbound": {"offnet": {"enabled": false}}}
            }),
            ..Case::default()
        }
        .plan();
        assert!(p.is_empty());
    }

    #[test]
    fn row14_disabled_account_endpoint_default_can_be_enabled_per_device() {
        let p = Case {
            account: json!({"call_recording": {"endpoint": {"any": {"any": {"enabled": false, "format": "wav"}}}}}),
            alice_device: json!({"call_recording": {"outbound": {"any": {"enabled": true}}}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].settings.format,
            AudioFormat::Wav,
            "format inherited from the account"
        );
    }

    #[test]
    fn row15_global_config_rule_joins_like_an_account_rule() {
        let p = plan(&Parties {
            global: Some(RecordCall::default()),
            ..Parties::default()
        });
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].reason, "config record_call: all calls");
        assert!(p[0].keep_local);
    }

    #[test]
    fn row16_invalid_stored_settings_record_nothing_rather_than_guess() {
        let p = Case {
            alice_user: json!({"record_call": {"format": "ogg"}}),
            ..Case::default()
        }
        .plan();
        assert!(p.is_empty());
    }
}
