//! Documents as the rules see them: the typed parts of account, user, device and callflow
//! documents, parsed by one function, [`parse`], that the API runs on every write and the
//! planner runs on every document it reads.
//!
//! Documents are open JSON objects (names and other fields are kept as given), but the parts
//! callrec acts on are strict: `record_call`, `call_recording` (Kazoo 4 shape), a device's
//! `owner_id` and `sip.username`, a callflow's `numbers`. Unknown fields inside them are
//! errors; a problem is reported with its field path (`call_recording.inbound.offnet.time_limit`).
//!
//! Invariant: the API stores only documents that [`parse`] accepts, and the planner applies a
//! document only through what [`parse`] returned, so what was accepted is what applies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::model::Params;

/// Document kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Account,
    User,
    Device,
    Callflow,
    /// Where an account's recording notifications go ([`super::webhook`]).
    Webhook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::User => "user",
            Kind::Device => "device",
            Kind::Callflow => "callflow",
            Kind::Webhook => "webhook",
        }
    }

    /// The kind named `s` (as [`as_str`](Self::as_str) writes it).
    pub fn from_name(s: &str) -> Option<Kind> {
        Some(match s {
            "account" => Kind::Account,
            "user" => Kind::User,
            "device" => Kind::Device,
            "callflow" => Kind::Callflow,
            "webhook" => Kind::Webhook,
            _ => return None,
        })
    }
}

/// A problem in a document, with the path of the field (`.`-separated; `data` for the whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// `{inbound|outbound|any}.{onnet|offnet|any}` → recording parameters (Kazoo 4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cells {
    pub inbound: Option<Networks>,
    pub outbound: Option<Networks>,
    pub any: Option<Networks>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Networks {
    pub onnet: Option<Params>,
    pub offnet: Option<Params>,
    pub any: Option<Params>,
}

/// Direction of a call relative to a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Whether both ends of the call are devices of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Onnet,
    Offnet,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Onnet => "onnet",
            Network::Offnet => "offnet",
        }
    }
}

impl Networks {
    fn get(&self, net: Option<Network>) -> Option<&Params> {
        match net {
            Some(Network::Onnet) => self.onnet.as_ref(),
            Some(Network::Offnet) => self.offnet.as_ref(),
            None => self.any.as_ref(),
        }
    }
}

impl Cells {
    fn get(&self, dir: Option<Direction>) -> Option<&Networks> {
        match dir {
            Some(Direction::Inbound) => self.inbound.as_ref(),
            Some(Direction::Outbound) => self.outbound.as_ref(),
            None => self.any.as_ref(),
        }
    }

    /// The cell for `dir`/`net`, most specific first: `dir.net`, `dir.any`, `any.net`,
    /// `any.any`; with where it was found (`"outbound any"`).
    pub fn cell(&self, dir: Direction, net: Network) -> Option<(&Params, String)> {
        let name = |d: Option<Direction>, n: Option<Network>| {
            format!(
                "{} {}",
                d.map_or("any", Direction::as_str),
                n.map_or("any", Network::as_str)
            )
        };
        [
            (Some(dir), Some(net)),
            (Some(dir), None),
            (None, Some(net)),
            (None, None),
        ]
        .into_iter()
        .find_map(|(d, n)| self.get(d).and_then(|x| x.get(n)).map(|p| (p, name(d, n))))
    }
}

/// An account's `call_recording`: `account` (account-wide) and `endpoint` (defaults for every
/// user and device of the account).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCallRecording {
    pub account: Option<Cells>,
    pub endpoint: Option<Cells>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AccountSettings {
    /// The account's SIP domain (`user/<username>@<realm>` for its devices).
    pub realm: Option<DialPart>,
    pub record_call: Option<Params>,
    pub call_recording: Option<AccountCallRecording>,
    /// Kept recordings of this account are erased this many days after they were kept
    /// (overrides the configuration's `retention_days`).
    pub recording_retention_days: Option<super::model::RetentionDays>,
    /// Every kept recording of this account is encrypted to this age recipient before it
    /// enters the spool (callrec never holds the private key).
    pub recording_public_key: Option<super::model::AgeRecipient>,
}

/// A user's or device's recording settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EndpointSettings {
    pub record_call: Option<Params>,
    pub call_recording: Option<Cells>,
}

/// A non-empty string (`sip.username`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct NonEmpty(String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match String::deserialize(d) {
            Ok(s) if !s.is_empty() => Ok(NonEmpty(s)),
            _ => Err(D::Error::custom("must be a non-empty string")),
        }
    }
}

impl NonEmpty {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Sip {
    pub username: Option<NonEmpty>,
    /// How callflows bridge to the device: `username` (default) or `route`.
    pub invite_format: Option<super::flow::InviteFormat>,
    /// The SIP URI used with `invite_format: route` (`sip:1000@10.0.0.5:5060`).
    pub route: Option<DialPart>,
    /// The domain the device registers in (`user/<username>@<realm>`).
    pub realm: Option<DialPart>,
}

/// A piece of a `bridge` dial string: no spaces, commas, braces or line breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DialPart(String);

impl DialPart {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DialPart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 256
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+*#._@:;=-".contains(c));
        if ok {
            Ok(DialPart(s))
        } else {
            Err(D::Error::custom(
                "must be 1-256 characters of [A-Za-z0-9+*#._@:;=-]",
            ))
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeviceSettings {
    pub record_call: Option<Params>,
    pub call_recording: Option<Cells>,
    /// The user who owns the device.
    pub owner_id: Option<String>,
    pub sip: Option<Sip>,
}

impl DeviceSettings {
    pub fn endpoint(&self) -> EndpointSettings {
        EndpointSettings {
            record_call: self.record_call.clone(),
            call_recording: self.call_recording.clone(),
        }
    }
}

/// A callflow: the numbers (exact) and patterns (regular expressions) it answers, and its flow.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallflowSettings {
    pub numbers: Option<Vec<String>>,
    pub patterns: Option<Vec<Pattern>>,
    /// Parsed by [`super::flow::parse_flow`] (with its own field paths).
    #[serde(skip)]
    pub flow: Option<super::flow::Flow>,
}

impl PartialEq for CallflowSettings {
    fn eq(&self, other: &Self) -> bool {
        self.numbers == other.numbers && self.patterns == other.patterns && self.flow == other.flow
    }
}

/// A callflow pattern: a regular expression matched against the whole destination number.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn matches(&self, number: &str) -> bool {
        self.0.is_match(number)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        if s.len() > 256 {
            return Err(D::Error::custom("a pattern is at most 256 characters"));
        }
        // Kazoo patterns are written for the whole number (`^\+?1?(\d{10})$`); anchoring is
        // the writer's choice, as there.
        regex::RegexBuilder::new(&s)
            .size_limit(1 << 16)
            .build()
            .map(Pattern)
            .map_err(|e| D::Error::custom(format!("not a regular expression: {e}")))
    }
}

/// The typed parts of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    Account(Box<AccountSettings>),
    User(EndpointSettings),
    Device(DeviceSettings),
    Callflow(CallflowSettings),
    Webhook(Box<super::webhook::WebhookSettings>),
}

fn typed<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(body).map_err(|e| {
        let path = e.path().to_string();
        FieldError {
            path: if path == "." { "data".into() } else { path },
            message: e.inner().to_string(),
        }
    })
}

/// Parses the typed parts of a document of `kind`: the one check every document passes, on
/// write (the API) and on use (the planner).
pub fn parse(kind: Kind, body: &Value) -> Result<Settings, FieldError> {
    let Some(obj) = body.as_object() else {
        return Err(FieldError {
            path: "data".into(),
            message: "must be a JSON object".into(),
        });
    };
    if obj.get("id").is_some_and(|id| !id.is_string()) {
        return Err(FieldError {
            path: "id".into(),
            message: "must be a string".into(),
        });
    }
    let mut settings = match kind {
        Kind::Account => Settings::Account(Box::new(typed(body)?)),
        Kind::User => Settings::User(typed(body)?),
        Kind::Device => Settings::Device(typed(body)?),
        Kind::Callflow => {
            let mut cf: CallflowSettings = typed(body)?;
            if let Some(f) = obj.get("flow") {
                cf.flow = Some(super::flow::parse_flow(f, "flow")?);
            }
            Settings::Callflow(cf)
        }
        Kind::Webhook => Settings::Webhook(Box::new(super::webhook::parse(body)?)),
    };
    if obj
        .get(super::webhook::WRITER_FIELD)
        .and_then(Value::as_str)
        == Some("account")
    {
        settings.mark_urls_by_account();
    }
    Ok(settings)
}

impl Settings {
    /// Marks every recording URL of the document as written through an account token.
    fn mark_urls_by_account(&mut self) {
        fn params(p: &mut Params) {
            p.urls_mut().for_each(super::model::Url::mark_by_account);
        }
        fn cells(c: &mut Cells) {
            for n in [&mut c.inbound, &mut c.outbound, &mut c.any]
                .into_iter()
                .flatten()
            {
                for p in [&mut n.onnet, &mut n.offnet, &mut n.any]
                    .into_iter()
                    .flatten()
                {
                    params(p);
                }
            }
        }
        fn endpoint(rc: &mut Option<Params>, cr: &mut Option<Cells>) {
            rc.iter_mut().for_each(params);
            cr.iter_mut().for_each(cells);
        }
        fn flow(f: &mut super::flow::Flow) {
            match &mut f.module {
                super::flow::Module::RecordCall { params: p, .. } => params(p),
                super::flow::Module::RecordCaller(rc) => rc
                    .url
                    .iter_mut()
                    .for_each(super::model::Url::mark_by_account),
                _ => {}
            }
            f.children.values_mut().for_each(flow);
        }
        match self {
            Settings::Account(a) => {
                a.record_call.iter_mut().for_each(params);
                if let Some(cr) = &mut a.call_recording {
                    cr.account.iter_mut().for_each(cells);
                    cr.endpoint.iter_mut().for_each(cells);
                }
            }
            Settings::User(u) => endpoint(&mut u.record_call, &mut u.call_recording),
            Settings::Device(d) => endpoint(&mut d.record_call, &mut d.call_recording),
            Settings::Callflow(cf) => cf.flow.iter_mut().for_each(flow),
            // A webhook's `uri` carries its writer in the document itself.
            Settings::Webhook(_) => {}
        }
    }
}

/// Numbers and patterns of `new` (callflow `id`) that another callflow of the same account
/// already holds: `(field path, message)` for each. A number or pattern belongs to at most one
/// callflow per account.
pub fn callflow_conflicts(
    id: &str,
    new: &CallflowSettings,
    others: &[(String, CallflowSettings)],
) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (other_id, other) in others.iter().filter(|(o, _)| o != id) {
        for (i, n) in new.numbers.iter().flatten().enumerate() {
            if other.numbers.iter().flatten().any(|m| m == n) {
                out.push(FieldError {
                    path: format!("numbers[{i}]"),
                    message: format!("{n} already belongs to callflow {other_id}"),
                });
            }
        }
        for (i, p) in new.patterns.iter().flatten().enumerate() {
            if other.patterns.iter().flatten().any(|q| q == p) {
                out.push(FieldError {
                    path: format!("patterns[{i}]"),
                    message: format!("{} already belongs to callflow {other_id}", p.as_str()),
                });
            }
        }
    }
    out
}

/// JSON merge patch (RFC 7396): objects merge recursively, `null` deletes a key.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {

    /// Every recording URL of an account-written document carries its writer to the
    /// destination a recording gets: `record_call`, Kazoo 4 cells, callflow modules.
    #[test]
    fn an_account_written_documents_urls_reach_their_destinations_marked() {
        let body = serde_json::json!({
            "pvt_writer": "account",
            "record_call": {"url": "https://a.example/x/"},
            "call_recording": {"any": {"any": {"url": "https://b.example/x/"}}},
        });
        let Ok(Settings::User(u)) = parse(Kind::User, &body) else {
            panic!("parses")
        };
        let rc = u.record_call.unwrap().resolve(true).unwrap();
        assert!(rc.destination().unwrap().by_account);
        let cell = u.call_recording.unwrap().any.unwrap().any.unwrap();
        assert!(
            cell.resolve(true)
                .unwrap()
                .destination()
                .unwrap()
                .by_account
        );
        let flow = serde_json::json!({"pvt_writer": "account", "numbers": ["1"],
            "flow": {"module": "record_call", "data": {"action": "start", "url": "https://c.example/"}}});
        let Ok(Settings::Callflow(cf)) = parse(Kind::Callflow, &flow) else {
            panic!("parses")
        };
        let Some(super::super::flow::Module::RecordCall { params, .. }) = cf.flow.map(|f| f.module)
        else {
            panic!("a record_call module")
        };
        assert!(params.url.unwrap().by_account());
        // Without the stamp (an admin's, or written before writers were recorded): unmarked.
        let Ok(Settings::User(u)) = parse(
            Kind::User,
            &serde_json::json!({"record_call": {"url": "https://a.example/x/"}}),
        ) else {
            panic!("parses")
        };
        assert!(!u.record_call.unwrap().url.unwrap().by_account());
    }

    use super::*;
    use serde_json::json;

    fn err(kind: Kind, doc: Value) -> String {
        parse(kind, &doc).unwrap_err().path
    }

    #[test]
    fn errors_name_the_field_path() {
        assert_eq!(
            err(Kind::User, json!({"record_call": {"format": "ogg"}})),
            "record_call.format"
        );
        assert_eq!(
            err(
                Kind::User,
                json!({"call_recording": {"inbound": {"offnet": {"time_limit": 99999}}}})
            ),
            "call_recording.inbound.offnet.time_limit"
        );
        assert_eq!(
            err(
                Kind::User,
                json!({"call_recording": {"inbound": {"local": {}}}})
            ),
            "call_recording.inbound.local"
        );
        assert_eq!(
            err(Kind::User, json!({"record_call": {"colour": 1}})),
            "record_call.colour"
        );
        assert_eq!(
            err(Kind::Account, json!({"call_recording": {"inbound": {}}})),
            "call_recording.inbound"
        );
        assert_eq!(
            err(Kind::Device, json!({"sip": {"username": ""}})),
            "sip.username"
        );
        assert_eq!(err(Kind::Device, json!({"owner_id": 5})), "owner_id");
        assert_eq!(err(Kind::Callflow, json!({"numbers": [1]})), "numbers[0]");
        assert_eq!(err(Kind::User, json!([1])), "data");
        assert_eq!(err(Kind::User, json!({"id": 7})), "id");
    }

    #[test]
    fn open_documents_strict_settings() {
        assert!(parse(
            Kind::Account,
            &json!({"name": "A", "call_recording": {"account": {"any": {"any": {"enabled": true}}}, "endpoint": {}}})
        )
        .is_ok());
        assert!(parse(
            Kind::User,
            &json!({"first_name": "Any", "record_call": {}, "anything": [1, 2]})
        )
        .is_ok());
        assert!(parse(
            Kind::Device,
            &json!({"sip": {"username": "alice", "password": "x"}, "owner_id": null})
        )
        .is_ok());
    }

    #[test]
    fn most_specific_cell_first() {
        let c: Cells = serde_json::from_value(json!({
            "any": {"any": {"time_limit": 10}},
            "outbound": {"any": {"time_limit": 20}}
        }))
        .unwrap();
        let (p, w) = c.cell(Direction::Outbound, Network::Offnet).unwrap();
        assert_eq!(
            (p.time_limit.unwrap().get(), w.as_str()),
            (20, "outbound any")
        );
        let (p, w) = c.cell(Direction::Inbound, Network::Onnet).unwrap();
        assert_eq!((p.time_limit.unwrap().get(), w.as_str()), (10, "any any"));
    }

    #[test]
    fn merge_patch_rfc7396() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut t,
            &json!({"a": null, "b": {"c": 5, "d": null}, "e": [2], "f": {"g": 1}}),
        );
        assert_eq!(t, json!({"b": {"c": 5}, "e": [2], "f": {"g": 1}}));
    }
}
