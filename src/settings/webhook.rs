//! Webhook documents (`/v2/accounts/{id}/webhooks`): where an account wants to hear about its
//! recordings, which events, and the secret its notifications are signed with (Standard
//! Webhooks 1.0: `whsec_` then the base64 of the key).
//!
//! - `name`: 1–128 characters; `uri`: an absolute `http://` or `https://` URL;
//! - `events`: one or more of [`HookEvent`]'s names, each at most once;
//! - `secret`: `whsec_` + base64 of a 24–64 byte key (optional on write: callrec makes one);
//! - `enabled`: `true` unless `false`.
//!
//! Invariants: a secret is held as its key bytes and never printed ([`Secret`]'s `Debug` says
//! `REDACTED`); the fields callrec keeps for itself in a stored document start with `pvt_` and
//! are never taken from a request ([`PRIVATE_PREFIX`]).

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::documents::FieldError;
use super::model::check_url;

/// The prefix of the fields callrec keeps in a document for itself (Kazoo's convention):
/// removed from every request body, never shown.
pub const PRIVATE_PREFIX: &str = "pvt_";

/// Who last wrote a webhook (`pvt_writer`): decides which addresses its `uri` may reach when
/// a notification connects.
pub const WRITER_FIELD: &str = "pvt_writer";

/// What happened to a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HookEvent {
    /// FreeSWITCH started writing the file (`RECORD_START`).
    #[serde(rename = "recording.started")]
    Started,
    /// The file is final on disk and kept (in the spool).
    #[serde(rename = "recording.completed")]
    Completed,
    /// Every destination answered 2xx, or the recording is stored locally (no destination).
    #[serde(rename = "recording.delivered")]
    Delivered,
    /// The recording could not be made, or a destination gave up.
    #[serde(rename = "recording.failed")]
    Failed,
    /// Finished but not kept (shorter than `record_min_sec`, nothing written).
    #[serde(rename = "recording.discarded")]
    Discarded,
    /// Paused, resumed or stopped through the control API.
    #[serde(rename = "recording.controlled")]
    Controlled,
}

impl HookEvent {
    pub const ALL: [HookEvent; 6] = [
        HookEvent::Started,
        HookEvent::Completed,
        HookEvent::Delivered,
        HookEvent::Failed,
        HookEvent::Discarded,
        HookEvent::Controlled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Started => "recording.started",
            HookEvent::Completed => "recording.completed",
            HookEvent::Delivered => "recording.delivered",
            HookEvent::Failed => "recording.failed",
            HookEvent::Discarded => "recording.discarded",
            HookEvent::Controlled => "recording.controlled",
        }
    }

    pub fn parse(s: &str) -> Option<HookEvent> {
        HookEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// A signing key (the bytes after `whsec_`, base64-decoded).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl Secret {
    const PREFIX: &'static str = "whsec_";

    /// `whsec_<base64>` with a 24–64 byte key.
    pub fn parse(s: &str) -> Result<Secret, String> {
        let b64 = s
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| "must start with whsec_".to_string())?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "must be whsec_ followed by base64".to_string())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "the key must be 24 to 64 bytes (this one is {})",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    /// A new random 32-byte key.
    pub fn generate() -> Result<Secret, String> {
        let mut key = vec![0u8; 32];
        getrandom::getrandom(&mut key).map_err(|e| format!("no randomness: {e}"))?;
        Ok(Secret(key))
    }

    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// The `whsec_…` form (only for the one response that hands a generated secret out).
    pub fn reveal(&self) -> String {
        format!(
            "{}{}",
            Self::PREFIX,
            base64::engine::general_purpose::STANDARD.encode(&self.0)
        )
    }
}

/// A webhook document's typed parts.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub name: String,
    pub uri: String,
    pub events: Vec<HookEvent>,
    /// `None` only while a document is being written without one (callrec adds it).
    pub secret: Option<Secret>,
    pub enabled: bool,
    /// Who last wrote it (`pvt_writer`): `true` for an admin token.
    pub admin_written: bool,
}

impl WebhookSettings {
    pub fn wants(&self, e: HookEvent) -> bool {
        self.enabled && self.events.contains(&e)
    }
}

fn field(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses a webhook document (the API on write, the notifier on use).
pub fn parse(body: &Value) -> Result<WebhookSettings, FieldError> {
    let obj = body
        .as_object()
        .ok_or_else(|| field("data", "must be a JSON object"))?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 128 => s.clone(),
        Some(Value::String(_)) => return Err(field("name", "must be 1 to 128 characters")),
        Some(_) => return Err(field("name", "must be a string")),
        None => return Err(field("name", "required")),
    };
    let uri = match obj.get("uri") {
        Some(Value::String(s)) => {
            if s.starts_with("s3://") {
                return Err(field("uri", "must be an absolute http:// or https:// URL"));
            }
            check_url(s).map_err(|m| {
                field(
                    "uri",
                    m.replace("http://, https:// or s3://", "http:// or https://"),
                )
            })?;
            s.clone()
        }
        Some(_) => return Err(field("uri", "must be a string")),
        None => return Err(field("uri", "required")),
    };
    let events = match obj.get("events") {
        Some(Value::Array(a)) if !a.is_empty() => {
            let mut out = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                let path = format!("events[{i}]");
                let e = v.as_str().and_then(HookEvent::parse).ok_or_else(|| {
                    let names: Vec<&str> = HookEvent::ALL.iter().map(|e| e.as_str()).collect();
                    field(&path, format!("must be one of {}", names.join(", ")))
                })?;
                if out.contains(&e) {
                    return Err(field(&path, "is listed twice"));
                }
                out.push(e);
            }
            out
        }
        Some(_) => return Err(field("events", "must be a non-empty array of event names")),
        None => return Err(field("events", "required")),
    };
    let secret = match obj.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Secret::parse(s).map_err(|m| field("secret", m))?),
        Some(_) => return Err(field("secret", "must be a string")),
    };
    let enabled = match obj.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field("enabled", "must be true or false")),
    };
    let admin_written = obj.get(WRITER_FIELD).and_then(Value::as_str) == Some("admin");
    Ok(WebhookSettings {
        name,
        uri,
        events,
        secret,
        enabled,
        admin_written,
    })
}

/// A stored document as the API shows it: without the secret and callrec's own fields.
pub fn shown(mut body: Value) -> Value {
    if let Some(obj) = body.as_object_mut() {
        obj.remove("secret");
        obj.retain(|k, _| !k.starts_with(PRIVATE_PREFIX));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok() -> Value {
        json!({"name": "crm", "uri": "https://crm.example.com/hooks", "events": ["recording.started"]})
    }

    #[test]
    fn a_minimal_document_parses_with_its_defaults() {
        let w = parse(&ok()).unwrap();
        assert_eq!(w.events, [HookEvent::Started]);
        assert!(w.enabled && w.secret.is_none() && !w.admin_written);
        assert!(w.wants(HookEvent::Started) && !w.wants(HookEvent::Delivered));
    }

    #[test]
    fn each_field_is_checked_and_named() {
        for (patch, path) in [
            (json!({"name": ""}), "name"),
            (json!({"name": 5}), "name"),
            (json!({"uri": "ftp://x/y"}), "uri"),
            (json!({"uri": "s3://bucket/p/"}), "uri"),
            (json!({"uri": "https://"}), "uri"),
            (json!({"events": []}), "events"),
            (json!({"events": ["recording.exploded"]}), "events[0]"),
            (
                json!({"events": ["recording.failed", "recording.failed"]}),
                "events[1]",
            ),
            (json!({"secret": "abc"}), "secret"),
            (json!({"secret": "whsec_c2hvcnQ="}), "secret"),
            (json!({"enabled": "yes"}), "enabled"),
        ] {
            let mut body = ok();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            assert_eq!(parse(&body).unwrap_err().path, path, "{patch}");
        }
        for missing in ["name", "uri", "events"] {
            let mut body = ok();
            body.as_object_mut().unwrap().remove(missing);
            assert_eq!(parse(&body).unwrap_err().path, missing);
        }
    }

    #[test]
    fn a_secret_round_trips_and_never_prints() {
        let s = Secret::generate().unwrap();
        assert_eq!(s.key().len(), 32);
        assert_eq!(Secret::parse(&s.reveal()).unwrap(), s);
        assert_eq!(format!("{s:?}"), "Secret(REDACTED)");
        assert_ne!(Secret::generate().unwrap(), s);
    }

    #[test]
    fn shown_hides_the_secret_and_private_fields() {
        let v = shown(json!({"name": "x", "secret": "whsec_x", "pvt_writer": "admin", "uri": "u"}));
        assert_eq!(v, json!({"name": "x", "uri": "u"}));
    }

    #[test]
    fn every_event_name_parses_back() {
        for e in HookEvent::ALL {
            assert_eq!(HookEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), json!(e.as_str()));
        }
    }
}
