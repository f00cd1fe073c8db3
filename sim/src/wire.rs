//! FreeSWITCH's serialisations, as the captures show them byte for byte.

use callrec_esl::header::percent_encode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

pub type Headers = Vec<(String, String)>;

/// A command the controller sent, as FreeSWITCH parsed it.
#[derive(Debug, Clone)]
pub struct Command {
    /// The first line, e.g. `api uuid_record … start …`.
    pub line: String,
    /// The following `Name: value` lines (sendmsg, bgapi).
    pub headers: Vec<(String, String)>,
    /// When the simulator read it (for latency measurements).
    pub received_at: std::time::Instant,
}

impl Command {
    /// `bgapi`'s job id: the caller's `Job-UUID` header, or a new one as FreeSWITCH makes it.
    pub(crate) fn job_uuid(&self) -> String {
        self.header("Job-UUID")
            .map(str::to_string)
            .unwrap_or_else(crate::clock::uuid_v4)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one command: lines up to a blank line. `None` at end of stream.
pub(crate) async fn read_command(
    r: &mut BufReader<OwnedReadHalf>,
) -> std::io::Result<Option<Command>> {
    let mut first: Option<String> = None;
    let mut headers = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l.is_empty() {
            match first.take() {
                Some(f) => {
                    return Ok(Some(Command {
                        line: f,
                        headers,
                        received_at: std::time::Instant::now(),
                    }))
                }
                None => continue,
            }
        }
        match &first {
            None => first = Some(l.to_string()),
            Some(_) => {
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim_start().to_string()));
                }
            }
        }
    }
}

/// `Content-Type: command/reply`.
pub fn reply(text: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: {text}\n\n").into_bytes()
}

/// The `bgapi` reply, which carries the job id twice.
pub fn bgapi_reply(job: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n")
        .into_bytes()
}

/// `Content-Type: api/response` (Content-Type first, unlike events).
pub fn api_response(body: &str) -> Vec<u8> {
    let mut v = format!(
        "Content-Type: api/response\nContent-Length: {}\n\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body.as_bytes());
    v
}

const GOODBYE: &str = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";

/// The notice sent when the channel hangs up and the socket lingers.
pub fn linger_notice(uuid: &str, channel_name: &str, linger_time: i64) -> Vec<u8> {
    format!(
        "Content-Type: text/disconnect-notice\nControlled-Session-UUID: {uuid}\nContent-Disposition: linger\nChannel-Name: {channel_name}\nLinger-Time: {linger_time}\nContent-Length: 0\n\n"
    )
    .into_bytes()
}

/// The final notice before FreeSWITCH closes the socket.
pub fn disconnect_notice(uuid: &str) -> Vec<u8> {
    format!(
        "Content-Type: text/disconnect-notice\nControlled-Session-UUID: {uuid}\nContent-Disposition: disconnect\nContent-Length: {}\n\n{GOODBYE}",
        GOODBYE.len()
    )
    .into_bytes()
}

/// The inbound greeting.
pub const AUTH_REQUEST: &[u8] = b"Content-Type: auth/request\n\n";

/// The final notice on an inbound connection (no controlled session).
pub fn inbound_disconnect_notice() -> Vec<u8> {
    format!(
        "Content-Type: text/disconnect-notice\nContent-Length: {}\n\n{GOODBYE}",
        GOODBYE.len()
    )
    .into_bytes()
}

/// `api version`'s body.
pub const VERSION: &str = "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n";

/// `api status`'s body (the first lines of the captured one).
pub const STATUS: &str = "UP 0 years, 0 days, 0 hours, 8 minutes, 34 seconds, 653 milliseconds, 0 microseconds\nFreeSWITCH (Version 1.10.12-release  64bit) is ready\n";

/// `switch_event_serialize`: URL-encoded header lines, then the body behind its own
/// `Content-Length`, or a blank line.
fn serialize_plain(headers: &Headers, body: Option<&str>) -> String {
    let mut s = String::with_capacity(6 * 1024);
    for (n, v) in headers {
        s.push_str(n);
        s.push_str(": ");
        s.push_str(&percent_encode(v));
        s.push('\n');
    }
    match body {
        Some(b) => {
            s.push_str(&format!("Content-Length: {}\n\n{b}", b.len()));
        }
        None => s.push('\n'),
    }
    s
}

/// The outbound `connect` reply: the channel data with no frame header of its own.
pub fn channel_data(headers: &Headers) -> Vec<u8> {
    serialize_plain(headers, None).into_bytes()
}

/// A `text/event-plain` frame (Content-Length before Content-Type, as FreeSWITCH sends it).
pub fn plain_event(headers: &Headers, body: Option<&str>) -> Vec<u8> {
    let text = serialize_plain(headers, body);
    let mut v = format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n",
        text.len()
    )
    .into_bytes();
    v.extend_from_slice(text.as_bytes());
    v
}

/// JSON string escaping as FreeSWITCH's cJSON prints it (non-ASCII passes through).
pub fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '\u{8}' => o.push_str("\\b"),
            '\u{c}' => o.push_str("\\f"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// A `text/event-json` frame: one flat object, values unencoded strings, keys may repeat, the
/// body in `_body` after its `Content-Length`, no trailing newline.
pub fn json_event(headers: &Headers, body: Option<&str>) -> Vec<u8> {
    let s = json_object(headers, body);
    let mut v = format!(
        "Content-Length: {}\nContent-Type: text/event-json\n\n",
        s.len()
    )
    .into_bytes();
    v.extend_from_slice(s.as_bytes());
    v
}

/// An event as one flat JSON object (`switch_event_serialize_json`): what `event json`
/// frames carry and `uuid_dump <uuid> json` answers.
pub fn json_object(headers: &Headers, body: Option<&str>) -> String {
    let mut s = String::with_capacity(6 * 1024);
    s.push('{');
    let mut first = true;
    let mut field = |s: &mut String, n: &str, v: &str| {
        if !first {
            s.push(',');
        }
        first = false;
        s.push('"');
        s.push_str(&json_escape(n));
        s.push_str("\":\"");
        s.push_str(&json_escape(v));
        s.push('"');
    };
    for (n, v) in headers {
        field(&mut s, n, v);
    }
    if let Some(b) = body {
        field(&mut s, "Content-Length", &b.len().to_string());
        field(&mut s, "_body", b);
    }
    s.push('}');
    s
}

/// An event in `text/event-xml` form, as mod_event_socket serialises it.
pub fn xml_event(h: &Headers, body: Option<&str>) -> Vec<u8> {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    let mut s = String::from("<event>\n  <headers>\n");
    for (n, v) in h {
        s.push_str(&format!(
            "    <{n}>{}</{n}>\n",
            esc(&callrec_esl::header::percent_encode(v))
        ));
    }
    s.push_str("  </headers>\n");
    if let Some(b) = body {
        s.push_str(&format!(
            "  <Content-Length>{}</Content-Length>\n  <body>{}</body>\n",
            b.len(),
            esc(b)
        ));
    }
    s.push_str("</event>");
    let mut v = format!(
        "Content-Length: {}\nContent-Type: text/event-xml\n\n",
        s.len()
    )
    .into_bytes();
    v.extend_from_slice(s.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes_of_fixed_frames() {
        assert_eq!(
            reply("+OK will linger"),
            b"Content-Type: command/reply\nReply-Text: +OK will linger\n\n"
        );
        assert_eq!(
            api_response("+OK Success\n"),
            b"Content-Type: api/response\nContent-Length: 12\n\n+OK Success\n"
        );
        let d = disconnect_notice("u");
        assert!(d.ends_with(b"Content-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"));
    }

    #[test]
    fn plain_event_counts_both_final_newlines() {
        let h = vec![("Event-Name".to_string(), "X".to_string())];
        let e = plain_event(&h, None);
        assert_eq!(
            e,
            b"Content-Length: 15\nContent-Type: text/event-plain\n\nEvent-Name: X\n\n"
        );
        let j = json_event(&h, Some("+OK\n"));
        assert!(j.ends_with(br#"{"Event-Name":"X","Content-Length":"4","_body":"+OK\n"}"#));
    }
}
