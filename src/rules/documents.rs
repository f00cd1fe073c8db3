//! Validation of account, user, device and callflow documents, with field-level errors.
//!
//! Documents are open JSON objects (names and other fields are kept as given), but the parts
//! callrec acts on are strict: `record_call`, `call_recording` (Kazoo 4 shape), a device's
//! `owner_id` and `sip.username`, a callflow's `numbers`.

use serde_json::{Map, Value};

use super::model::{check_url, FieldErrors, SAMPLE_RATES, TIME_LIMIT_RANGE};
use crate::store::Kind;

/// Checks a whole document of `kind`.
pub fn validate(kind: Kind, body: &Value) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::new();
    let Some(obj) = body.as_object() else {
        errs.insert("data".into(), "must be a JSON object".into());
        return Err(errs);
    };
    if let Some(id) = obj.get("id") {
        if !id.is_string() {
            errs.insert("id".into(), "must be a string".into());
        }
    }
    if let Some(rc) = obj.get("record_call") {
        params(rc, "record_call", &mut errs);
    }
    if let Some(cr) = obj.get("call_recording") {
        if kind == Kind::Account {
            match cr.as_object() {
                Some(m) => {
                    for (k, v) in m {
                        match k.as_str() {
                            "account" | "endpoint" => {
                                directions(v, &format!("call_recording.{k}"), &mut errs)
                            }
                            _ => {
                                errs.insert(
                                    format!("call_recording.{k}"),
                                    "unknown key (expected account or endpoint)".into(),
                                );
                            }
                        }
                    }
                }
                None => {
                    errs.insert("call_recording".into(), "must be an object".into());
                }
            }
        } else {
            directions(cr, "call_recording", &mut errs);
        }
    }
    match kind {
        Kind::Device => {
            if let Some(o) = obj.get("owner_id") {
                if !(o.is_string() || o.is_null()) {
                    errs.insert("owner_id".into(), "must be a user id (string)".into());
                }
            }
            if let Some(sip) = obj.get("sip") {
                match sip.get("username") {
                    Some(Value::String(u)) if !u.is_empty() => {}
                    Some(_) => {
                        errs.insert("sip.username".into(), "must be a non-empty string".into());
                    }
                    None => {}
                }
                if !sip.is_object() {
                    errs.insert("sip".into(), "must be an object".into());
                }
            }
        }
        Kind::Callflow => match obj.get("numbers") {
            Some(Value::Array(a)) if a.iter().all(|n| n.is_string()) => {}
            Some(_) => {
                errs.insert("numbers".into(), "must be a list of strings".into());
            }
            None => {}
        },
        Kind::Account | Kind::User => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn directions(v: &Value, path: &str, errs: &mut FieldErrors) {
    let Some(m) = v.as_object() else {
        errs.insert(path.into(), "must be an object".into());
        return;
    };
    for (dir, nets) in m {
        if !matches!(dir.as_str(), "inbound" | "outbound" | "any") {
            errs.insert(
                format!("{path}.{dir}"),
                "unknown direction (expected inbound, outbound or any)".into(),
            );
            continue;
        }
        let Some(nm) = nets.as_object() else {
            errs.insert(format!("{path}.{dir}"), "must be an object".into());
            continue;
        };
        for (net, p) in nm {
            if !matches!(net.as_str(), "onnet" | "offnet" | "any") {
                errs.insert(
                    format!("{path}.{dir}.{net}"),
                    "unknown network (expected onnet, offnet or any)".into(),
                );
                continue;
            }
            params(p, &format!("{path}.{dir}.{net}"), errs);
        }
    }
}

/// Recording parameters (`record_call` or one `call_recording` cell).
fn params(v: &Value, path: &str, errs: &mut FieldErrors) {
    let Some(m) = v.as_object() else {
        errs.insert(path.into(), "must be an object".into());
        return;
    };
    for (k, val) in m {
        let key = format!("{path}.{k}");
        let problem: Option<String> = match k.as_str() {
            "enabled" | "record_on_answer" | "record_on_bridge" | "record_stereo" => {
                (!val.is_boolean()).then(|| "must be true or false".into())
            }
            "format" => (!matches!(val.as_str(), Some("mp3" | "wav")))
                .then(|| "must be \"mp3\" or \"wav\"".into()),
            "method" => (!matches!(val.as_str(), Some("put" | "post")))
                .then(|| "must be \"put\" or \"post\"".into()),
            "record_min_sec" => (val.as_u64().is_none())
                .then(|| "must be a whole number of seconds, 0 or more".into()),
            "record_sample_rate" => match val.as_u64() {
                Some(r) if SAMPLE_RATES.contains(&(r as u32)) => None,
                _ => Some(format!("must be one of {SAMPLE_RATES:?}")),
            },
            "time_limit" => match val.as_u64() {
                Some(t) if (TIME_LIMIT_RANGE.0 as u64..=TIME_LIMIT_RANGE.1 as u64).contains(&t) => {
                    None
                }
                _ => Some(format!(
                    "must be a whole number of seconds from {} to {}",
                    TIME_LIMIT_RANGE.0, TIME_LIMIT_RANGE.1
                )),
            },
            "url" => match val {
                Value::String(u) => check_url(u).err(),
                Value::Null => None,
                _ => Some("must be a URL string".into()),
            },
            _ => Some("unknown field".into()),
        };
        if let Some(p) = problem {
            errs.insert(key, p);
        }
    }
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
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_error_is_named() {
        let doc = json!({
            "record_call": {"format": "ogg", "record_min_sec": -1, "record_sample_rate": 9000,
                "time_limit": 4, "url": "ftp://x", "record_on_answer": "yes", "colour": 1,
                "method": "get"},
            "call_recording": {"sideways": {}, "inbound": {"local": {}, "offnet": {"time_limit": 99999}}}
        });
        let e = validate(Kind::User, &doc).unwrap_err();
        let keys: Vec<&str> = e.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "call_recording.inbound.local",
                "call_recording.inbound.offnet.time_limit",
                "call_recording.sideways",
                "record_call.colour",
                "record_call.format",
                "record_call.method",
                "record_call.record_min_sec",
                "record_call.record_on_answer",
                "record_call.record_sample_rate",
                "record_call.time_limit",
                "record_call.url",
            ]
        );
    }

    #[test]
    fn account_and_device_shapes() {
        assert!(validate(
            Kind::Account,
            &json!({"call_recording": {"account": {"any": {"any": {"enabled": true}}}, "endpoint": {}}})
        )
        .is_ok());
        assert!(validate(Kind::Account, &json!({"call_recording": {"inbound": {}}})).is_err());
        assert!(validate(Kind::Device, &json!({"sip": {"username": ""}})).is_err());
        assert!(validate(Kind::Device, &json!({"owner_id": 5})).is_err());
        assert!(validate(Kind::Callflow, &json!({"numbers": [1]})).is_err());
        assert!(validate(Kind::User, &json!([1])).is_err());
        assert!(validate(Kind::User, &json!({"first_name": "Any", "record_call": {}})).is_ok());
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
