//! Reader for `text/event-xml` bodies, as `switch_event_xmlize` writes them:
//! `<event><headers><Name>url-encoded value</Name>…</headers><Content-Length>n</Content-Length>
//! <body>text</body></event>`.
//!
//! XML events are rare, so they are decoded eagerly into a fresh buffer of `name`/`value` spans
//! (values stay URL-encoded, as in plain events) rather than indexed in place.

use quick_xml::events::Event as XmlEvent;
use quick_xml::Reader;

use crate::header::Span;

/// Headers (names and URL-encoded values laid out in `buf`) and the body text.
pub struct Decoded {
    pub buf: Vec<u8>,
    pub fields: Vec<Span>,
    pub body: Option<String>,
}

const MAX_DEPTH: usize = 16;

pub fn decode(body: &[u8]) -> Result<Decoded, String> {
    let mut reader = Reader::from_reader(body);
    let mut out = Decoded {
        buf: Vec::with_capacity(body.len()),
        fields: Vec::new(),
        body: None,
    };
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut saw_event = false;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("{e} near byte {}", reader.buffer_position()))?;
        match ev {
            XmlEvent::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                let name = e.name().as_ref().to_vec();
                if stack.is_empty() {
                    if name != b"event" {
                        return Err("root element is not <event>".into());
                    }
                    saw_event = true;
                }
                stack.push(name);
                text.clear();
            }
            // `<Name/>`: a header with an empty value.
            XmlEvent::Empty(e) if is_header_level(&stack) => {
                push_field(&mut out, e.name().as_ref(), "");
            }
            XmlEvent::Text(t) => {
                let t = t.unescape().map_err(|e| e.to_string())?;
                text.push_str(&t);
            }
            XmlEvent::CData(c) => text.push_str(&String::from_utf8_lossy(&c)),
            XmlEvent::End(_) => {
                let Some(name) = stack.pop() else {
                    return Err("unbalanced end tag".into());
                };
                let is_header =
                    is_header_level(&stack) || (stack.len() == 1 && name == b"Content-Length");
                if is_header {
                    push_field(&mut out, &name, &text);
                } else if stack.len() == 1 && name == b"body" {
                    out.body = Some(std::mem::take(&mut text));
                }
                text.clear();
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    if !saw_event || !stack.is_empty() {
        return Err("incomplete <event> document".into());
    }
    Ok(out)
}

fn is_header_level(stack: &[Vec<u8>]) -> bool {
    stack.len() == 2 && stack[1] == b"headers"
}

fn push_field(out: &mut Decoded, name: &[u8], value: &str) {
    let name_start = out.buf.len() as u32;
    out.buf.extend_from_slice(name);
    let name_end = out.buf.len() as u32;
    out.buf.extend_from_slice(value.as_bytes());
    out.fields.push(Span {
        name_start,
        name_end,
        value_start: name_end,
        value_end: out.buf.len() as u32,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_and_body() {
        let x = b"<event>\n  <headers>\n    <Event-Name>BACKGROUND_JOB</Event-Name>\n    <Job-Command-Arg>a%20b%20%26c</Job-Command-Arg>\n    <Empty/>\n  </headers>\n  <Content-Length>12</Content-Length>\n  <body>+OK &lt;ok&gt;\n</body>\n</event>";
        let d = decode(x).unwrap();
        let names: Vec<_> = d.fields.iter().map(|s| s.name(&d.buf).to_vec()).collect();
        assert_eq!(
            names,
            vec![
                b"Event-Name".to_vec(),
                b"Job-Command-Arg".to_vec(),
                b"Empty".to_vec(),
                b"Content-Length".to_vec()
            ]
        );
        assert_eq!(d.fields[1].value(&d.buf), b"a%20b%20%26c");
        assert_eq!(d.body.as_deref(), Some("+OK <ok>\n"));
    }

    #[test]
    fn rejects_non_events() {
        assert!(decode(b"<foo/>").is_err());
        assert!(decode(b"<event><headers>").is_err());
        assert!(decode(b"not xml at all <").is_err());
        let deep = "<event>".to_string() + &"<a>".repeat(40);
        assert!(decode(deep.as_bytes()).is_err());
    }
}
