//! The decision: which recordings a call gets, from the documents of the parties involved.
//! A pure function of its inputs; the precedence table of docs/rules.md is tested row by row here.
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

use super::documents::{
    self, AccountSettings, DeviceSettings, Direction, EndpointSettings, Network, Settings,
};
use super::model::{Params, RecordCall};
use super::PlannedRecording;
use crate::store::Doc;

/// A document the planner found, with its typed settings. `settings` is `None` when the stored
/// document no longer parses (it was logged when loaded): a plan that would read it records
/// nothing rather than guess.
#[derive(Debug, Clone)]
pub struct Found<T> {
    pub id: String,
    pub settings: Option<T>,
}

impl<T> Found<T> {
    fn from_doc(doc: &Doc, pick: impl FnOnce(Settings) -> Option<T>) -> Found<T> {
        let settings = match documents::parse(doc.kind, &doc.body) {
            Ok(s) => pick(s),
            Err(e) => {
                warn_unparsable(doc, &e);
                None
            }
        };
        Found {
            id: doc.id.clone(),
            settings,
        }
    }
}

impl Found<AccountSettings> {
    pub fn account(doc: &Doc) -> Self {
        Found::from_doc(doc, |s| match s {
            Settings::Account(a) => Some(*a),
            _ => None,
        })
    }
}

impl Found<EndpointSettings> {
    pub fn user(doc: &Doc) -> Self {
        Found::from_doc(doc, |s| match s {
            Settings::User(u) => Some(u),
            _ => None,
        })
    }
}

impl Found<DeviceSettings> {
    pub fn device(doc: &Doc) -> Self {
        Found::from_doc(doc, |s| match s {
            Settings::Device(d) => Some(d),
            _ => None,
        })
    }
}

/// Says that a stored document no longer parses (so its settings are not applied).
pub(super) fn warn_unparsable(doc: &Doc, e: &documents::FieldError) {
    tracing::warn!(
        account_id = %doc.account_id,
        kind = doc.kind.as_str(),
        id = %doc.id,
        field = %e.path,
        error = %e.message,
        "stored document does not parse; its recording settings are not applied until it is saved again"
    );
}

/// A party's documents, as far as they are known.
#[derive(Debug, Clone, Default)]
pub struct Party {
    pub device: Option<Found<DeviceSettings>>,
    pub user: Option<Found<EndpointSettings>>,
}

impl Party {
    fn known(&self) -> bool {
        self.device.is_some()
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone, Default)]
pub struct Parties {
    /// The account the call belongs to, when known (its document may still be absent).
    pub account_id: Option<String>,
    pub account: Option<Found<AccountSettings>>,
    pub caller: Party,
    pub callee: Party,
    /// A `record_call` from callrec's configuration, applied like an account-wide rule.
    pub global: Option<RecordCall>,
    /// The callflow the destination matched, if any.
    pub callflow: Option<super::CallflowPlan>,
    /// How the account and the parties were found (for the decision record).
    pub how: super::decision::Identification,
}

/// One user's or device's contribution: its cell, and whether it is a legacy `record_call`
/// (whose `enabled` defaults to true).
fn endpoint_layer(
    s: &EndpointSettings,
    dir: Direction,
    net: Network,
) -> Option<(Params, String, bool)> {
    if let Some((p, where_)) = s.call_recording.as_ref().and_then(|c| c.cell(dir, net)) {
        return Some((p.clone(), format!("call_recording {where_}"), false));
    }
    s.record_call
        .as_ref()
        .map(|p| (p.clone(), "record_call".to_string(), true))
}

/// One rule the decision looked at, and what came of it (kept in the call's decision record).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Considered {
    /// Which rule: `config record_call`, `account acc-1 account-wide`, `caller endpoint`,
    /// `callee endpoint`.
    pub rule: String,
    pub matched: bool,
    /// Why it matched (the reason a recording carries) or why not.
    pub why: String,
}

impl Considered {
    fn new(rule: impl Into<String>, matched: bool, why: impl Into<String>) -> Considered {
        Considered {
            rule: rule.into(),
            matched,
            why: why.into(),
        }
    }
}

/// One document's contribution to an endpoint's merged settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Where: `account acc-1 endpoint outbound any`, `user u-1 record_call`, …
    pub source: String,
    pub params: Params,
    /// A legacy `record_call` (its `enabled` defaults to true).
    pub legacy: bool,
}

/// The layers of one party's endpoint settings for `dir`/`net`, least specific first, or why
/// none can apply (a document that no longer parses records nothing).
pub fn endpoint_layers(
    account: Option<&Found<AccountSettings>>,
    party: &Party,
    dir: Direction,
    net: Network,
) -> Result<Vec<Layer>, String> {
    let unparsable =
        |what: &str, id: &str| format!("{what} {id} does not parse: nothing of it applies");
    let mut layers = Vec::new();
    if let Some(a) = account {
        let Some(settings) = a.settings.as_ref() else {
            return Err(unparsable("account", &a.id));
        };
        let endpoint = settings
            .call_recording
            .as_ref()
            .and_then(|c| c.endpoint.as_ref());
        if let Some((p, w)) = endpoint.and_then(|c| c.cell(dir, net)) {
            layers.push(Layer {
                source: format!("account {} endpoint {w}", a.id),
                params: p.clone(),
                legacy: false,
            });
        }
    }
    let user = match &party.user {
        Some(u) => match &u.settings {
            Some(s) => Some((&u.id, s.clone())),
            None => return Err(unparsable("user", &u.id)),
        },
        None => None,
    };
    let device = match &party.device {
        Some(d) => match &d.settings {
            Some(s) => Some((&d.id, s.endpoint())),
            None => return Err(unparsable("device", &d.id)),
        },
        None => None,
    };
    for (what, layer) in [("user", user), ("device", device)] {
        let Some((id, s)) = layer else { continue };
        if let Some((p, w, legacy)) = endpoint_layer(&s, dir, net) {
            layers.push(Layer {
                source: format!("{what} {id} {w}"),
                params: p,
                legacy,
            });
        }
    }
    Ok(layers)
}

/// The endpoint plan for one party: layers merged field by field, most specific last; or why
/// there is none.
fn endpoint_plan(
    account: Option<&Found<AccountSettings>>,
    party: &Party,
    dir: Direction,
    net: Network,
) -> Result<PlannedRecording, String> {
    let layers = endpoint_layers(account, party, dir, net)?;
    let Some(last) = layers.last() else {
        return Err(format!(
            "no record_call or call_recording cell for {} {} on the account's endpoint defaults, the user or the device",
            dir.as_str(),
            net.as_str()
        ));
    };
    let why = last.source.clone();
    let mut merged = Params::default();
    let mut legacy = false;
    for l in &layers {
        merged.overlay(&l.params);
        legacy |= l.legacy;
    }
    match merged.resolve(legacy) {
        Some(settings) => Ok(PlannedRecording::new(
            settings,
            format!("{why}: {} {} enabled", dir.as_str(), net.as_str()),
        )),
        None => Err(format!(
            "merged settings are not enabled for {} {} (last set by {why})",
            dir.as_str(),
            net.as_str()
        )),
    }
}

fn account_plan(
    account: &Found<AccountSettings>,
    dir: Direction,
    net: Network,
) -> Result<PlannedRecording, String> {
    let Some(s) = account.settings.as_ref() else {
        return Err(format!(
            "account {} does not parse: nothing of it applies",
            account.id
        ));
    };
    let wide = s.call_recording.as_ref().and_then(|c| c.account.as_ref());
    if let Some((p, w)) = wide.and_then(|c| c.cell(dir, net)) {
        return match p.resolve(false) {
            Some(settings) => Ok(PlannedRecording::new(
                settings,
                format!(
                    "account {} call_recording.account {w}: {} {} enabled",
                    account.id,
                    dir.as_str(),
                    net.as_str()
                ),
            )),
            None => Err(format!("call_recording.account {w} is not enabled")),
        };
    }
    match &s.record_call {
        Some(rc) => match rc.resolve(true) {
            Some(settings) => Ok(PlannedRecording::new(
                settings,
                format!("account {} record_call: all calls", account.id),
            )),
            None => Err("record_call is not enabled".into()),
        },
        None => Err(format!(
            "no call_recording.account cell for {} {} and no record_call",
            dir.as_str(),
            net.as_str()
        )),
    }
}

/// The decision, explained: the planned recordings (collapsed) and every rule looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub recordings: Vec<PlannedRecording>,
    pub considered: Vec<Considered>,
    pub network: Network,
}

/// The planned recordings of a call: collapsed, each with its reason.
pub fn plan(p: &Parties) -> Vec<PlannedRecording> {
    explain(p).recordings
}

/// [`plan`], with why each rule matched or not.
pub fn explain(p: &Parties) -> Explained {
    let net = if p.caller.known() && p.callee.known() {
        Network::Onnet
    } else {
        Network::Offnet
    };
    let mut plans = Vec::new();
    let mut considered = Vec::new();
    let mut take = |rule: String, r: Result<PlannedRecording, String>| match r {
        Ok(plan) => {
            considered.push(Considered::new(rule, true, plan.reason.clone()));
            plans.push(plan);
        }
        Err(why) => considered.push(Considered::new(rule, false, why)),
    };
    take(
        "config record_call".into(),
        match &p.global {
            Some(g) => Ok(PlannedRecording::new(
                g.clone(),
                "config record_call: all calls",
            )),
            None => Err("no record_call in callrec's configuration".into()),
        },
    );
    match &p.account {
        Some(a) => {
            let dir = if p.caller.known() {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            take(
                format!("account {} account-wide", a.id),
                account_plan(a, dir, net),
            );
        }
        None => take(
            "account-wide".into(),
            Err(match &p.account_id {
                Some(id) => format!("account {id} has no document"),
                None => "no account identified".into(),
            }),
        ),
    }
    for (rule, party, dir) in [
        ("caller endpoint", &p.caller, Direction::Outbound),
        ("callee endpoint", &p.callee, Direction::Inbound),
    ] {
        take(
            rule.into(),
            if party.device.is_some() || party.user.is_some() {
                endpoint_plan(p.account.as_ref(), party, dir, net)
            } else {
                Err("not identified as a device or user of the account".into())
            },
        );
    }
    Explained {
        recordings: collapse(plans),
        considered,
        network: net,
    }
}

/// Plans that make the same recording (where it goes aside) become one recording delivered
/// to every destination they name, each with its own method.
pub fn collapse(plans: Vec<PlannedRecording>) -> Vec<PlannedRecording> {
    let mut out: Vec<PlannedRecording> = Vec::new();
    for p in plans {
        match out
            .iter_mut()
            .find(|o| o.settings.same_recording(&p.settings))
        {
            Some(o) => {
                for d in p.destinations {
                    if !o.destinations.contains(&d) {
                        o.destinations.push(d);
                    }
                }
                o.keep_local |= p.keep_local;
                o.reason = format!("{}; {}", o.reason, p.reason);
            }
            None => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! One test per row of the precedence table in docs/rules.md.
    use super::*;
    use crate::rules::effective::effective;
    use crate::rules::{AudioFormat, UploadMethod};
    use crate::store::{Kind, Revision};
    use serde_json::{json, Value};

    fn doc(kind: Kind, id: &str, body: Value) -> Doc {
        Doc {
            kind,
            id: id.into(),
            account_id: "acc".into(),
            rev: Revision(1),
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
        fn parties(self) -> Parties {
            let mut dev = self.alice_device;
            crate::rules::documents::merge_patch(
                &mut dev,
                &json!({"owner_id": "u-alice", "sip": {"username": "alice"}}),
            );
            Parties {
                account_id: Some("acc".into()),
                account: Some(Found::account(&doc(Kind::Account, "acc", self.account))),
                caller: Party {
                    device: Some(Found::device(&doc(Kind::Device, "d-alice", dev))),
                    user: Some(Found::user(&doc(Kind::User, "u-alice", self.alice_user))),
                },
                callee: Party {
                    device: self
                        .bob_device
                        .map(|b| Found::device(&doc(Kind::Device, "d-bob", b))),
                    user: None,
                },
                global: None,
                how: Default::default(),
                callflow: None,
            }
        }

        fn plan(self) -> Vec<PlannedRecording> {
            plan(&self.parties())
        }
    }

    #[test]
    fn row01_nothing_configured_records_nothing() {
        assert!(Case::default().plan().is_empty());
    }

    #[test]
    fn every_rule_looked_at_says_why_it_matched_or_not() {
        let e = explain(
            &Case {
                alice_user: json!({"record_call": {"format": "wav"}}),
                alice_device: json!({"owner_id": "u-alice", "sip": {"username": "alice"}, "record_call": {"enabled": false}}),
                ..Case::default()
            }
            .parties(),
        );
        let why: Vec<(&str, bool, &str)> = e
            .considered
            .iter()
            .map(|c| (c.rule.as_str(), c.matched, c.why.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                ("config record_call", false, "no record_call in callrec's configuration"),
                ("account acc account-wide", false, "no call_recording.account cell for outbound offnet and no record_call"),
                ("caller endpoint", false, "merged settings are not enabled for outbound offnet (last set by device d-alice record_call)"),
                ("callee endpoint", false, "not identified as a device or user of the account"),
            ]
        );
        assert!(e.recordings.is_empty());
        let e = explain(
            &Case {
                account: json!({"record_call": {}}),
                ..Case::default()
            }
            .parties(),
        );
        assert_eq!(
            (e.considered[1].matched, e.considered[1].why.as_str()),
            (true, "account acc record_call: all calls")
        );
    }

    #[test]
    fn effective_settings_name_the_document_of_each_field() {
        let p = Case {
            account: json!({"call_recording": {"endpoint": {"any": {"any": {"enabled": true, "format": "wav", "time_limit": 600}}}}}),
            alice_user: json!({"call_recording": {"outbound": {"any": {"time_limit": 300}}}}),
            ..Case::default()
        }
        .parties();
        let e = effective(
            p.account.as_ref(),
            &p.caller,
            Direction::Outbound,
            Network::Offnet,
        );
        assert!(e.records);
        let field = |n: &str| {
            let f = e.fields.iter().find(|f| f.field == n).unwrap();
            (f.value.clone(), f.source.clone())
        };
        assert_eq!(
            field("format"),
            (json!("wav"), "account acc endpoint any any".into())
        );
        assert_eq!(
            field("time_limit"),
            (
                json!(300),
                "user u-alice call_recording outbound any".into()
            )
        );
        assert_eq!(field("record_min_sec"), (json!(0), "default".into()));
        // The same merge the plan makes.
        let planned = plan(&p);
        assert_eq!(planned[0].settings.time_limit, 300);
        let e = effective(
            p.account.as_ref(),
            &p.caller,
            Direction::Inbound,
            Network::Onnet,
        );
        assert_eq!(e.layers, ["account acc endpoint any any"]);
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
            account: Some(Found::account(&doc(Kind::Account, "acc", account))),
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
        let urls: Vec<&str> = p[0].destinations.iter().map(|d| d.url.as_str()).collect();
        assert_eq!(urls, ["https://a.example/rec/", "https://b.example/rec/"]);
        assert!(!p[0].keep_local);
    }

    #[test]
    fn row17_settings_differing_only_in_method_record_once_deliver_each_way() {
        let p = Case {
            account: json!({"record_call": {"url": "https://a.example/rec/"}}),
            alice_user: json!({"record_call": {"url": "https://a.example/rec/", "method": "post"}}),
            ..Case::default()
        }
        .plan();
        assert_eq!(p.len(), 1, "one uuid_record on the leg");
        let dests: Vec<(&str, UploadMethod)> = p[0]
            .destinations
            .iter()
            .map(|d| (d.url.as_str(), d.method))
            .collect();
        assert_eq!(
            dests,
            [
                ("https://a.example/rec/", UploadMethod::Put),
                ("https://a.example/rec/", UploadMethod::Post),
            ]
        );
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
