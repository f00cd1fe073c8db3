//! Callflows: Kazoo-shaped documents that say what to do with a call to a number, typed and
//! validated when they are written.
//!
//! A flow is a tree: `{"module": "...", "data": {...}, "children": {"_": {...}}}`. Each module's
//! `data` is parsed into its own type ([`Module`]); a problem is reported with its field path
//! (`flow.children._.data.action`). The modules:
//!
//! - `record_call` — `action` `start`|`stop` (required) and the `record_call` parameters;
//! - `record_caller` — `format`, `method`, `time_limit` (default 3600), `url`;
//! - `dialplan` — hand the call back to FreeSWITCH's dialplan (`context`, `extension`);
//! - `device` / `user` — bridge to a device, or to every device of a user;
//! - `play` — a tone stream or a file; `answer`; `hangup` (`cause`).
//!
//! Invariants: a [`Flow`] only holds values that are safe to put into FreeSWITCH commands
//! (no spaces where FreeSWITCH splits arguments, no line breaks anywhere); the tree is finite
//! and at most [`MAX_DEPTH`] deep.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::documents::FieldError;
use super::model::{Params, TimeLimit, Url};
use crate::values::{AudioFormat, UploadMethod};

/// How a device is called (`sip.invite_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InviteFormat {
    /// `user/<username>@<realm>`: the device registered to this FreeSWITCH.
    #[default]
    Username,
    /// `sofia/<profile>/<sip.route>`: a fixed SIP URI.
    Route,
}

/// A device a `device` or `user` module bridges to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub username: String,
    /// The device's `sip.realm`, else the account's `realm`; FreeSWITCH's `${domain_name}`
    /// when neither is set.
    pub realm: Option<String>,
    pub invite_format: InviteFormat,
    pub route: Option<String>,
}

/// The `bridge` argument for `endpoints` (rung at once, `,`-separated); `None` when none can
/// be called (a `route` device without `sip.route`).
pub fn dial_string(endpoints: &[Endpoint], sofia_profile: &str) -> Option<String> {
    let targets: Vec<String> = endpoints
        .iter()
        .filter_map(|e| match e.invite_format {
            InviteFormat::Username => Some(format!(
                "user/{}@{}",
                e.username,
                e.realm.as_deref().unwrap_or("${domain_name}")
            )),
            InviteFormat::Route => e
                .route
                .as_ref()
                .map(|r| format!("sofia/{sofia_profile}/{r}")),
        })
        .collect();
    (!targets.is_empty()).then(|| targets.join(","))
}

/// Every `device` and `user` id a flow names, as `device:<id>` / `user:<id>`.
pub fn endpoint_keys(flow: &Flow) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![flow];
    while let Some(f) = stack.pop() {
        match &f.module {
            Module::Device { id } => out.push(format!("device:{id}")),
            Module::User { id } => out.push(format!("user:{id}")),
            _ => {}
        }
        stack.extend(f.children.values());
    }
    out
}

/// Deepest flow accepted.
pub const MAX_DEPTH: usize = 32;

/// `record_call`'s `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordAction {
    Start,
    Stop,
}

/// `record_caller`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordCaller {
    #[serde(default)]
    pub format: Option<AudioFormat>,
    #[serde(default)]
    pub method: Option<UploadMethod>,
    #[serde(default)]
    pub time_limit: Option<TimeLimit>,
    #[serde(default)]
    pub url: Option<Url>,
}

impl RecordCaller {
    /// Seconds, 3600 unless set.
    pub fn time_limit(&self) -> u32 {
        self.time_limit.map_or(3600, TimeLimit::get)
    }
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Module {
    RecordCall {
        action: RecordAction,
        params: Params,
    },
    RecordCaller(RecordCaller),
    Dialplan {
        context: Option<String>,
        extension: Option<String>,
    },
    Device {
        id: String,
    },
    User {
        id: String,
    },
    Play {
        media: String,
    },
    Answer,
    Hangup {
        cause: Option<String>,
    },
}

impl Module {
    pub fn name(&self) -> &'static str {
        match self {
            Module::RecordCall { .. } => "record_call",
            Module::RecordCaller(_) => "record_caller",
            Module::Dialplan { .. } => "dialplan",
            Module::Device { .. } => "device",
            Module::User { .. } => "user",
            Module::Play { .. } => "play",
            Module::Answer => "answer",
            Module::Hangup { .. } => "hangup",
        }
    }
}

/// A module and what follows it. The executor takes child `_` (the default branch).
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub module: Module,
    pub children: BTreeMap<String, Flow>,
}

impl Flow {
    /// The default next step.
    pub fn next(&self) -> Option<&Flow> {
        self.children.get("_")
    }
}

fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Parses `v` as `T`, errors prefixed with `path`.
fn typed<T: DeserializeOwned>(v: &Value, path: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let inner = e.path().to_string();
        err(
            &if inner == "." {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            },
            e.inner().to_string(),
        )
    })
}

/// A value FreeSWITCH gets as one argument: no spaces, quotes, braces or line breaks.
fn token(v: &str, path: &str, what: &str) -> Result<String, FieldError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+*#._@:-".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err(err(
            path,
            format!("{what} must be 1-128 characters of [A-Za-z0-9+*#._@:-]"),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DialplanData {
    context: Option<String>,
    extension: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdData {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayData {
    media: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HangupData {
    cause: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn module(name: &str, data: &Value, path: &str) -> Result<Module, FieldError> {
    let dpath = format!("{path}.data");
    Ok(match name {
        "record_call" => {
            let Value::Object(m) = data else {
                return Err(err(&dpath, "must be an object"));
            };
            let apath = format!("{dpath}.action");
            let action = match m.get("action") {
                None => return Err(err(&apath, "required: \"start\" or \"stop\"")),
                Some(a) => typed::<RecordAction>(a, &apath)?,
            };
            let mut rest: Map<String, Value> = m.clone();
            rest.remove("action");
            let params: Params = typed(&Value::Object(rest), &dpath)?;
            if params.enabled.is_some() {
                return Err(err(
                    &format!("{dpath}.enabled"),
                    "unknown field (use action start or stop)",
                ));
            }
            Module::RecordCall { action, params }
        }
        "record_caller" => Module::RecordCaller(typed(data, &dpath)?),
        "dialplan" => {
            let d: DialplanData = typed(data, &dpath)?;
            Module::Dialplan {
                context: d
                    .context
                    .map(|c| token(&c, &format!("{dpath}.context"), "context"))
                    .transpose()?,
                extension: d
                    .extension
                    .map(|c| token(&c, &format!("{dpath}.extension"), "extension"))
                    .transpose()?,
            }
        }
        "device" | "user" => {
            let d: IdData = typed(data, &dpath)?;
            let id = token(&d.id, &format!("{dpath}.id"), "id")?;
            if name == "device" {
                Module::Device { id }
            } else {
                Module::User { id }
            }
        }
        "play" => {
            let d: PlayData = typed(data, &dpath)?;
            if d.media.is_empty() || d.media.chars().any(|c| c.is_control()) {
                return Err(err(
                    &format!("{dpath}.media"),
                    "must be a tone_stream:// or a file path without line breaks",
                ));
            }
            Module::Play { media: d.media }
        }
        "answer" => {
            typed::<Empty>(data, &dpath)?;
            Module::Answer
        }
        "hangup" => {
            let d: HangupData = typed(data, &dpath)?;
            let cause = match d.cause {
                Some(c) if !c.is_empty() && c.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    Some(c)
                }
                Some(_) => {
                    return Err(err(
                        &format!("{dpath}.cause"),
                        "must be a FreeSWITCH hangup cause such as NORMAL_CLEARING",
                    ))
                }
                None => None,
            };
            Module::Hangup { cause }
        }
        other => {
            return Err(err(
                &format!("{path}.module"),
                format!(
                    "unknown module {other:?} (expected record_call, record_caller, dialplan, device, user, play, answer or hangup)"
                ),
            ))
        }
    })
}

/// Parses a flow tree at `path` (`flow`).
pub fn parse_flow(v: &Value, path: &str) -> Result<Flow, FieldError> {
    parse_at(v, path, 0)
}

fn parse_at(v: &Value, path: &str, depth: usize) -> Result<Flow, FieldError> {
    if depth >= MAX_DEPTH {
        return Err(err(path, format!("flows nest at most {MAX_DEPTH} deep")));
    }
    let Value::Object(m) = v else {
        return Err(err(
            path,
            "must be an object with module, data and children",
        ));
    };
    for k in m.keys() {
        if !matches!(k.as_str(), "module" | "data" | "children") {
            return Err(err(&format!("{path}.{k}"), "unknown field"));
        }
    }
    let name = match m.get("module") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err(&format!("{path}.module"), "must be a string")),
        None => return Err(err(&format!("{path}.module"), "required")),
    };
    let empty = Value::Object(Map::new());
    let module = module(name, m.get("data").unwrap_or(&empty), path)?;
    let mut children = BTreeMap::new();
    match m.get("children") {
        None | Some(Value::Null) => {}
        Some(Value::Object(c)) => {
            for (k, child) in c {
                children.insert(
                    k.clone(),
                    parse_at(child, &format!("{path}.children.{k}"), depth + 1)?,
                );
            }
        }
        Some(_) => return Err(err(&format!("{path}.children"), "must be an object")),
    }
    Ok(Flow { module, children })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path_of(v: Value) -> String {
        parse_flow(&v, "flow").unwrap_err().path
    }

    #[test]
    fn a_valid_tree() {
        let f = parse_flow(
            &json!({"module": "record_call", "data": {"action": "start", "format": "wav"},
                    "children": {"_": {"module": "dialplan", "data": {}}}}),
            "flow",
        )
        .unwrap();
        assert!(matches!(
            f.module,
            Module::RecordCall {
                action: RecordAction::Start,
                ..
            }
        ));
        assert_eq!(f.next().unwrap().module.name(), "dialplan");
    }

    #[test]
    fn errors_name_the_path() {
        assert_eq!(
            path_of(json!({"module": "record_call", "data": {},
                           "children": {"_": {"module": "answer"}}})),
            "flow.data.action"
        );
        assert_eq!(
            path_of(
                json!({"module": "answer", "children": {"_": {"module": "record_call", "data": {"format": "wav"}}}})
            ),
            "flow.children._.data.action"
        );
        assert_eq!(
            path_of(json!({"module": "record_call", "data": {"action": "pause"}})),
            "flow.data.action"
        );
        assert_eq!(
            path_of(json!({"module": "record_call", "data": {"action": "start", "time_limit": 1}})),
            "flow.data.time_limit"
        );
        assert_eq!(path_of(json!({"module": "voicemail"})), "flow.module");
        assert_eq!(path_of(json!({"data": {}})), "flow.module");
        assert_eq!(
            path_of(json!({"module": "answer", "children": {"_": 5}})),
            "flow.children._"
        );
        assert_eq!(
            path_of(json!({"module": "record_caller", "data": {"method": "get"}})),
            "flow.data.method"
        );
        assert_eq!(
            path_of(json!({"module": "dialplan", "data": {"context": "a b"}})),
            "flow.data.context"
        );
        assert_eq!(
            path_of(json!({"module": "play", "data": {"media": "x\nexit"}})),
            "flow.data.media"
        );
        assert_eq!(
            path_of(json!({"module": "answer", "colour": 1})),
            "flow.colour"
        );
        let mut deep = json!({"module": "answer"});
        for _ in 0..MAX_DEPTH {
            deep = json!({"module": "answer", "children": {"_": deep}});
        }
        assert!(parse_flow(&deep, "flow").is_err());
    }

    #[test]
    fn dial_strings() {
        let e = |u: &str, realm: Option<&str>, f, route: Option<&str>| Endpoint {
            username: u.into(),
            realm: realm.map(str::to_string),
            invite_format: f,
            route: route.map(str::to_string),
        };
        assert_eq!(
            dial_string(
                &[
                    e("1001", Some("pbx.example.com"), InviteFormat::Username, None),
                    e("1002", None, InviteFormat::Username, None),
                    e("gw", None, InviteFormat::Route, Some("sip:1003@10.0.0.5:5060")),
                    e("nr", None, InviteFormat::Route, None),
                ],
                "external"
            )
            .unwrap(),
            "user/1001@pbx.example.com,user/1002@${domain_name},sofia/external/sip:1003@10.0.0.5:5060"
        );
        assert_eq!(dial_string(&[], "external"), None);
    }

    #[test]
    fn record_caller_defaults() {
        let f = parse_flow(&json!({"module": "record_caller"}), "flow").unwrap();
        let Module::RecordCaller(r) = f.module else {
            panic!()
        };
        assert_eq!(r.time_limit(), 3600);
        assert_eq!(r.format, None);
    }
}
