//! A recording's metadata as a webhook event's `data`: ids, the call, its parties and
//! direction, times, duration, format, destinations with their states, why, and the node.
//!
//! Invariant: destination URLs are shown with any password redacted; the local file's path is
//! not shown (it names the operator's disk, not the tenant's recording).

use serde_json::{json, Value};

use super::{url, FinishedRecording};
use crate::hooks::Notice;
use crate::settings::webhook::HookEvent;
use crate::store::recordings::DeliveryRow;

/// RFC 3339 for µs since the epoch.
fn rfc3339(us: u64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The notice of `event` for `rec` (without an account its `account_id` is empty: no webhook
/// is told, but the call's decision record gets the outcome).
/// `deliveries`: the destinations' states when known (else each is shown `pending`).
pub fn notice(
    event: HookEvent,
    rec: &FinishedRecording,
    node: &str,
    reason: Option<&str>,
    deliveries: Option<&[DeliveryRow]>,
) -> Option<Notice> {
    let account_id = rec.call.account_id.clone().unwrap_or_default();
    let destinations: Vec<Value> = match deliveries {
        Some(ds) => ds
            .iter()
            .map(|d| {
                json!({
                    "url": url::redact(&d.url),
                    "method": d.method.as_str(),
                    "state": d.state.as_str(),
                    "attempts": d.attempts,
                    "last_status": d.last_status,
                    "delivered_at": d.delivered_us.and_then(rfc3339),
                })
            })
            .collect(),
        None => rec
            .destinations
            .iter()
            .map(|d| json!({"url": url::redact(&d.url), "method": d.method.as_str(), "state": "pending"}))
            .collect(),
    };
    let c = &rec.call;
    let ended_us = rec.start_us + rec.duration_ms * 1000;
    let finished = !matches!(event, HookEvent::Started | HookEvent::Controlled);
    let data = json!({
        "recording_id": rec.recording_id,
        "call_id": c.call_id,
        "account_id": account_id,
        "user_id": c.user_id,
        "device_id": c.device_id,
        "interaction_id": c.interaction_id,
        "node": node,
        "direction": c.direction,
        "caller": {"name": c.caller_id_name, "number": c.caller_id_number},
        "callee": {"name": c.callee_name, "number": c.callee_number},
        "kind": match rec.kind { crate::values::RecordingKind::Call => "call", crate::values::RecordingKind::Caller => "caller" },
        "started_at": rfc3339(rec.start_us),
        "ended_at": if finished && rec.duration_ms > 0 { rfc3339(ended_us) } else { None },
        "duration_ms": if finished { Some(rec.duration_ms) } else { None },
        "format": rec.format.ext(),
        "encryption": rec.encryption.as_ref().map(|e| e.scheme.as_str()),
        "sample_rate": rec.sample_rate,
        "channels": if rec.stereo { 2 } else { 1 },
        "size_bytes": if finished { Some(rec.size) } else { None },
        "origin": rec.origin,
        "completion_cause": if finished { Some(rec.completion_cause.as_str()) } else { None },
        "pauses": rec.pauses,
        "destinations": destinations,
        "reason": reason,
    });
    Some(Notice {
        event,
        account_id,
        call_id: c.call_id.clone(),
        recording_id: rec.recording_id.clone(),
        at_us: crate::store::now_us(),
        data,
    })
}
