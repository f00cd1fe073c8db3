//! [`Event`]: one FreeSWITCH event, whatever its wire format.
//!
//! An event is a list of headers in the order FreeSWITCH sent them (names may repeat) plus an
//! optional body. It keeps the received bytes and an index of spans into them; a value is decoded
//! (URL-decoding for plain and channel data, JSON unescaping for JSON) only when it is read, and
//! borrowed without a copy when no decoding is needed.
//!
//! Invariant: header lookups are ASCII case-insensitive and return the first match, as
//! `switch_event_get_header` does.

mod json;
mod name;
mod xml;

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use crate::error::{ProtocolError, ProtocolErrorKind};
use crate::frame::Frame;
use crate::header::{self, Span};

pub use name::EventName;

/// How the event arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Json,
    Xml,
    /// The outbound `connect` reply (a plain header block, no body).
    ChannelData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Percent,
    Json,
}

/// A FreeSWITCH event.
#[derive(Clone)]
pub struct Event {
    src: Bytes,
    fields: Vec<Span>,
    /// JSON only: which values and names hold escapes (bitsets over `fields`).
    value_escaped: Vec<u64>,
    name_escaped: Vec<u64>,
    encoding: Encoding,
    format: Format,
    body: Option<Bytes>,
    /// `src` is valid UTF-8 as a whole, so spans (cut at ASCII delimiters) need no check.
    utf8: bool,
}

fn bad_body(at: u64, why: impl Into<String>) -> ProtocolError {
    ProtocolError::new(ProtocolErrorKind::BadEventBody(why.into()), at)
}

impl Event {
    /// A `text/event-plain` body: URL-encoded header lines, a blank line, then the event's own
    /// body when it has a `Content-Length`. `at` is the body's stream offset (for errors).
    pub fn from_plain(src: Bytes, at: u64) -> Result<Event, ProtocolError> {
        let mut fields = Vec::with_capacity(160);
        let end = header::index_lines(&src, 0, src.len(), at, &mut fields)?;
        let mut body = None;
        if let Some(raw) = header::find(&src, &fields, "Content-Length") {
            let len = header::parse_length(raw)
                .ok_or_else(|| bad_body(at, "invalid inner Content-Length"))?
                as usize;
            if end.checked_add(len).is_none_or(|e| e > src.len()) {
                return Err(bad_body(
                    at + end as u64,
                    format!(
                        "inner Content-Length {len} is longer than the {} bytes left",
                        src.len() - end
                    ),
                ));
            }
            body = Some(src.slice(end..end + len));
        }
        Ok(Event {
            utf8: std::str::from_utf8(&src).is_ok(),
            src,
            fields,
            value_escaped: Vec::new(),
            name_escaped: Vec::new(),
            encoding: Encoding::Percent,
            format: Format::Plain,
            body,
        })
    }

    /// A `text/event-json` body.
    pub fn from_json(src: Bytes, at: u64) -> Result<Event, ProtocolError> {
        let scanned = json::scan(&src)
            .map_err(|e| bad_body(at + e.at as u64, format!("JSON: {}", e.what)))?;
        let body = scanned.body.map(|(s, e)| match json::unescape(&src[s..e]) {
            Cow::Borrowed(_) => src.slice(s..e),
            Cow::Owned(o) => Bytes::from(o),
        });
        Ok(Event {
            utf8: std::str::from_utf8(&src).is_ok(),
            src,
            fields: scanned.fields,
            value_escaped: scanned.value_escaped,
            name_escaped: scanned.name_escaped,
            encoding: Encoding::Json,
            format: Format::Json,
            body,
        })
    }

    /// A `text/event-xml` body.
    pub fn from_xml(src: &Bytes, at: u64) -> Result<Event, ProtocolError> {
        let d = xml::decode(src).map_err(|e| bad_body(at, format!("XML: {e}")))?;
        Ok(Event {
            utf8: std::str::from_utf8(&d.buf).is_ok(),
            src: Bytes::from(d.buf),
            fields: d.fields,
            value_escaped: Vec::new(),
            name_escaped: Vec::new(),
            encoding: Encoding::Percent,
            format: Format::Xml,
            body: d.body.map(Bytes::from),
        })
    }

    /// The outbound `connect` reply: its header block is a serialized CHANNEL_DATA event.
    pub fn from_channel_data(frame: Frame) -> Event {
        let (head, spans, _body) = frame.into_parts();
        Event {
            utf8: std::str::from_utf8(&head).is_ok(),
            src: head,
            fields: spans,
            value_escaped: Vec::new(),
            name_escaped: Vec::new(),
            encoding: Encoding::Percent,
            format: Format::ChannelData,
            body: None,
        }
    }

    /// Builds an event from decoded pairs (used by tools and the simulator).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Event {
        let mut buf = Vec::new();
        let mut fields = Vec::new();
        for (n, v) in pairs {
            let name_start = buf.len() as u32;
            buf.extend_from_slice(n.as_bytes());
            let name_end = buf.len() as u32;
            buf.extend_from_slice(header::percent_encode(v).as_bytes());
            fields.push(Span {
                name_start,
                name_end,
                value_start: name_end,
                value_end: buf.len() as u32,
            });
        }
        Event {
            utf8: true,
            src: Bytes::from(buf),
            fields,
            value_escaped: Vec::new(),
            name_escaped: Vec::new(),
            encoding: Encoding::Percent,
            format: Format::Plain,
            body: None,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// A span of `src` as text.
    #[inline]
    fn text<'a>(&self, raw: &'a [u8]) -> Cow<'a, str> {
        if self.utf8 {
            // SAFETY: `src` was validated as a whole and spans are cut at ASCII delimiters
            // (see `header::assume_utf8`).
            Cow::Borrowed(unsafe { header::assume_utf8(raw) })
        } else {
            header::text(raw)
        }
    }

    #[inline]
    fn decode_value(&self, idx: usize) -> Cow<'_, str> {
        let raw = self.fields[idx].value(&self.src);
        match self.encoding {
            Encoding::Percent => header::percent_decode_from(raw, self.utf8),
            Encoding::Json if json::bit(&self.value_escaped, idx) => json::unescape(raw),
            Encoding::Json => self.text(raw),
        }
    }

    #[inline]
    fn decode_name(&self, idx: usize) -> Cow<'_, str> {
        let raw = self.fields[idx].name(&self.src);
        match self.encoding {
            Encoding::Json if json::bit(&self.name_escaped, idx) => json::unescape(raw),
            _ => self.text(raw),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        let name = name.as_bytes();
        self.fields
            .iter()
            .position(|s| s.name(&self.src).eq_ignore_ascii_case(name))
    }

    fn position_prefixed(&self, prefix: &str, name: &str) -> Option<usize> {
        let (p, n) = (prefix.as_bytes(), name.as_bytes());
        self.fields.iter().position(|s| {
            let f = s.name(&self.src);
            f.len() == p.len() + n.len()
                && f[..p.len()].eq_ignore_ascii_case(p)
                && f[p.len()..].eq_ignore_ascii_case(n)
        })
    }

    /// The decoded value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.position(name).map(|i| self.decode_value(i))
    }

    /// The value as it was on the wire (still URL-encoded or JSON-escaped).
    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.position(name).map(|i| self.fields[i].value(&self.src))
    }

    /// Every value of a header that appears more than once.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        let name_b = name.as_bytes();
        (0..self.fields.len())
            .filter(move |&i| self.fields[i].name(&self.src).eq_ignore_ascii_case(name_b))
            .map(move |i| self.decode_value(i))
    }

    /// All headers, decoded, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
        (0..self.fields.len()).map(move |i| (self.decode_name(i), self.decode_value(i)))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The event's own body (BACKGROUND_JOB output, a JSON `_body`…).
    pub fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }

    pub fn name(&self) -> Option<EventName> {
        self.get("Event-Name").map(|n| EventName::parse(&n))
    }

    pub fn is(&self, name: EventName) -> bool {
        self.get_raw("Event-Name") == Some(name.as_str().as_bytes())
    }

    pub fn unique_id(&self) -> Option<Cow<'_, str>> {
        self.get("Unique-ID")
    }

    pub fn call_direction(&self) -> Option<Cow<'_, str>> {
        self.get("Call-Direction")
    }

    /// A `Caller-*` header: `caller("Caller-ID-Name")` reads `Caller-Caller-ID-Name`.
    pub fn caller(&self, field: &str) -> Option<Cow<'_, str>> {
        self.position_prefixed("Caller-", field)
            .map(|i| self.decode_value(i))
    }

    pub fn caller_id_name(&self) -> Option<Cow<'_, str>> {
        self.caller("Caller-ID-Name")
    }

    pub fn caller_id_number(&self) -> Option<Cow<'_, str>> {
        self.caller("Caller-ID-Number")
    }

    pub fn destination_number(&self) -> Option<Cow<'_, str>> {
        self.caller("Destination-Number")
    }

    /// A channel variable: `variable("sip_from_user")` reads `variable_sip_from_user`.
    pub fn variable(&self, name: &str) -> Option<Cow<'_, str>> {
        self.position_prefixed("variable_", name)
            .map(|i| self.decode_value(i))
    }

    /// All channel variables, names without the `variable_` prefix.
    pub fn variables(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
        self.prefixed("variable_")
    }

    /// Per-recording variables of RECORD_START/STOP (`Recording-Variable-<name>`).
    pub fn recording_variable(&self, name: &str) -> Option<Cow<'_, str>> {
        self.position_prefixed("Recording-Variable-", name)
            .map(|i| self.decode_value(i))
    }

    pub fn recording_variables(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
        self.prefixed("Recording-Variable-")
    }

    fn prefixed<'a>(
        &'a self,
        prefix: &'static str,
    ) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + 'a {
        let p = prefix.as_bytes();
        (0..self.fields.len()).filter_map(move |i| {
            let n = self.fields[i].name(&self.src);
            (n.len() > p.len() && n[..p.len()].eq_ignore_ascii_case(p))
                .then(|| (self.text(&n[p.len()..]), self.decode_value(i)))
        })
    }

    pub fn record_file_path(&self) -> Option<Cow<'_, str>> {
        self.get("Record-File-Path")
    }

    pub fn record_completion_cause(&self) -> Option<Cow<'_, str>> {
        self.get("Record-Completion-Cause")
    }

    pub fn job_uuid(&self) -> Option<Cow<'_, str>> {
        self.get("Job-UUID")
    }

    pub fn application_uuid(&self) -> Option<Cow<'_, str>> {
        self.get("Application-UUID")
    }

    pub fn application(&self) -> Option<Cow<'_, str>> {
        self.get("Application")
    }

    pub fn application_data(&self) -> Option<Cow<'_, str>> {
        self.get("Application-Data")
    }

    pub fn application_response(&self) -> Option<Cow<'_, str>> {
        self.get("Application-Response")
    }

    pub fn hangup_cause(&self) -> Option<Cow<'_, str>> {
        self.get("Hangup-Cause")
    }

    pub fn answer_state(&self) -> Option<Cow<'_, str>> {
        self.get("Answer-State")
    }

    /// `Event-Date-Timestamp`: microseconds since the epoch.
    pub fn timestamp_us(&self) -> Option<u64> {
        self.get("Event-Date-Timestamp")?.parse().ok()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.get("Event-Name"))
            .field("unique_id", &self.unique_id())
            .field("format", &self.format)
            .field("headers", &self.fields.len())
            .field("body_len", &self.body.as_ref().map(|b| b.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_event_with_body() {
        let src = Bytes::from_static(
            b"Event-Name: BACKGROUND_JOB\nJob-UUID: j-1\nJob-Command-Arg: a%20b\nContent-Length: 12\n\n+OK Success\n",
        );
        let e = Event::from_plain(src, 0).unwrap();
        assert_eq!(e.name(), Some(EventName::BackgroundJob));
        assert_eq!(e.job_uuid().as_deref(), Some("j-1"));
        assert_eq!(e.get("job-command-arg").as_deref(), Some("a b"));
        assert_eq!(e.body().unwrap().as_ref(), b"+OK Success\n");
    }

    #[test]
    fn plain_inner_length_past_end_is_an_error() {
        let src = Bytes::from_static(b"Event-Name: X\nContent-Length: 99\n\nshort");
        let e = Event::from_plain(src, 1000).unwrap_err();
        assert!(matches!(e.kind, ProtocolErrorKind::BadEventBody(_)));
        assert_eq!(e.offset, 1000 + 34);
    }

    #[test]
    fn prefixed_lookups() {
        let e = Event::from_pairs([
            ("Caller-Caller-ID-Name", "../../etc"),
            ("variable_sip_from_user", "1001"),
            ("Recording-Variable-callrec_recording_id", "rec-1"),
            ("variable_", "empty-name"),
        ]);
        assert_eq!(e.caller_id_name().as_deref(), Some("../../etc"));
        assert_eq!(e.variable("SIP_FROM_USER").as_deref(), Some("1001"));
        assert_eq!(
            e.recording_variable("callrec_recording_id").as_deref(),
            Some("rec-1")
        );
        let vars: Vec<_> = e.variables().collect();
        assert_eq!(vars.len(), 1, "a bare prefix is not a variable");
    }

    #[test]
    fn json_duplicates_and_escapes() {
        let src = Bytes::from_static(
            br#"{"Event-Name":"CHANNEL_HANGUP_COMPLETE","Hangup-Cause":"NORMAL_CLEARING","Caller-Caller-ID-Name":"A \"B\"","Hangup-Cause":"USER_BUSY"}"#,
        );
        let e = Event::from_json(src, 0).unwrap();
        assert_eq!(e.hangup_cause().as_deref(), Some("NORMAL_CLEARING"));
        assert_eq!(
            e.get_all("Hangup-Cause").collect::<Vec<_>>(),
            vec!["NORMAL_CLEARING", "USER_BUSY"]
        );
        assert_eq!(e.caller_id_name().as_deref(), Some("A \"B\""));
        assert!(e.is(EventName::ChannelHangupComplete));
    }
}
