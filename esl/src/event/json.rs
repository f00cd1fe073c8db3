//! Scanner for `text/event-json` bodies: one flat JSON object of string values.
//!
//! FreeSWITCH repeats keys (CHANNEL_HANGUP_COMPLETE has `Hangup-Cause` twice), which generic
//! JSON maps reject or collapse, so the object is indexed in order into spans instead and string
//! values are unescaped only when read. Non-string values (never sent by FreeSWITCH, accepted
//! for robustness) are kept as their raw JSON text.
//!
//! Invariant: the scan is iterative (no recursion), so hostile nesting cannot overflow the stack.

use std::borrow::Cow;

use memchr::memchr2;

use crate::header::Span;

/// Where the scan failed, relative to the start of the body, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub at: usize,
    pub what: &'static str,
}

/// The indexed object.
#[derive(Debug, Default)]
pub struct Scanned {
    pub fields: Vec<Span>,
    /// Bit i set: the value of field i holds a `\\` escape (raw values never do).
    pub value_escaped: Vec<u64>,
    /// Bit i set: the name of field i holds a `\\` escape.
    pub name_escaped: Vec<u64>,
    /// The `_body` member (string contents, still escaped), if any.
    pub body: Option<(usize, usize)>,
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// Sets bit `i` of a bitset.
pub fn set_bit(bits: &mut Vec<u64>, i: usize) {
    if bits.len() <= i / 64 {
        bits.resize(i / 64 + 1, 0);
    }
    bits[i / 64] |= 1 << (i % 64);
}

/// Reads bit `i` of a bitset.
#[inline]
pub fn bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// `b[i]` is the opening quote; returns the index of the closing quote and whether the string
/// holds an escape.
#[inline]
fn string_end_escaped(b: &[u8], i: usize) -> Result<(usize, bool), JsonError> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        match memchr2(b'"', b'\\', &b[j..]) {
            Some(k) if b[j + k] == b'"' => return Ok((j + k, escaped)),
            Some(k) => {
                escaped = true;
                j += k + 2
            }
            None => {
                return Err(JsonError {
                    at: i,
                    what: "unterminated string",
                })
            }
        }
        if j > b.len() {
            return Err(JsonError {
                at: i,
                what: "unterminated string",
            });
        }
    }
}

#[inline]
fn string_end(b: &[u8], i: usize) -> Result<usize, JsonError> {
    string_end_escaped(b, i).map(|(e, _)| e)
}

/// Returns the end (exclusive) of a non-string value starting at `i`.
fn raw_value_end(b: &[u8], i: usize) -> Result<usize, JsonError> {
    match b.get(i) {
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => j = string_end(b, j)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(JsonError {
                at: i,
                what: "unterminated object or array",
            })
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b' ' | b'\n' | b'\r' | b'\t') {
                j += 1;
            }
            if j == i {
                return Err(JsonError {
                    at: i,
                    what: "missing value",
                });
            }
            let v = &b[i..j];
            let literal = matches!(v, b"true" | b"false" | b"null")
                || v.iter()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'));
            if !literal {
                return Err(JsonError {
                    at: i,
                    what: "invalid value",
                });
            }
            Ok(j)
        }
        None => Err(JsonError {
            at: i,
            what: "missing value",
        }),
    }
}

/// Indexes a flat JSON object.
pub fn scan(b: &[u8]) -> Result<Scanned, JsonError> {
    if b.len() > u32::MAX as usize {
        return Err(JsonError {
            at: 0,
            what: "body too large",
        });
    }
    let err = |at, what| Err(JsonError { at, what });
    let mut out = Scanned {
        fields: Vec::with_capacity(160),
        ..Scanned::default()
    };
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return err(i, "expected '{'");
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return err(i, "expected a string key");
            }
            let (key_end, key_escaped) = string_end_escaped(b, i)?;
            let (name_start, name_end) = (i + 1, key_end);
            i = skip_ws(b, key_end + 1);
            if b.get(i) != Some(&b':') {
                return err(i, "expected ':'");
            }
            i = skip_ws(b, i + 1);
            let (value_start, value_end, is_raw, value_escaped) = if b.get(i) == Some(&b'"') {
                let (end, esc) = string_end_escaped(b, i)?;
                let r = (i + 1, end, false, esc);
                i = end + 1;
                r
            } else {
                let end = raw_value_end(b, i)?;
                let r = (i, end, true, false);
                i = end;
                r
            };
            if &b[name_start..name_end] == b"_body" && !is_raw {
                out.body = Some((value_start, value_end));
            } else {
                let idx = out.fields.len();
                if value_escaped {
                    set_bit(&mut out.value_escaped, idx);
                }
                if key_escaped {
                    set_bit(&mut out.name_escaped, idx);
                }
                out.fields.push(Span {
                    name_start: name_start as u32,
                    name_end: name_end as u32,
                    value_start: value_start as u32,
                    value_end: value_end as u32,
                });
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return err(i, "expected ',' or '}'"),
            }
        }
    }
    if skip_ws(b, i) != b.len() {
        return err(i, "trailing data after the object");
    }
    Ok(out)
}

/// Unescapes the contents of a JSON string. Invalid escapes are kept as written.
pub fn unescape(raw: &[u8]) -> Cow<'_, str> {
    if memchr::memchr(b'\\', raw).is_none() {
        return String::from_utf8_lossy(raw);
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' || i + 1 >= raw.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let simple = match raw[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            i += 2;
            continue;
        }
        if raw[i + 1] == b'u' {
            if let Some(hi) = hex4(raw, i + 2) {
                let mut consumed = 6;
                let ch = if (0xD800..0xDC00).contains(&hi) {
                    match (raw.get(i + 6..i + 8), hex4(raw, i + 8)) {
                        (Some(b"\\u"), Some(lo)) if (0xDC00..0xE000).contains(&lo) => {
                            consumed = 12;
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        }
                        _ => None,
                    }
                } else {
                    char::from_u32(hi)
                };
                let ch = ch.unwrap_or('\u{FFFD}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                i += consumed;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(crate::header::string_lossy(out))
}

fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let s = raw.get(at..at + 4)?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_kept_in_order() {
        let b = br#"{"Hangup-Cause":"NORMAL_CLEARING","X":"1","Hangup-Cause":"NORMAL_CLEARING"}"#;
        let s = scan(b).unwrap();
        assert_eq!(s.fields.len(), 3);
        assert_eq!(s.fields[2].name(b), b"Hangup-Cause");
    }

    #[test]
    fn body_and_raw_values() {
        let b = br#" { "a" : 12 , "b":{"x":["}",1]}, "_body":"+OK Success\n", "c":true } "#;
        let s = scan(b).unwrap();
        assert_eq!(s.fields.len(), 3);
        assert!(s.value_escaped.is_empty(), "raw values are never unescaped");
        let e = scan(br#"{"a\"b":"x","c":"y\n"}"#).unwrap();
        assert!(bit(&e.name_escaped, 0) && !bit(&e.value_escaped, 0));
        assert!(!bit(&e.name_escaped, 1) && bit(&e.value_escaped, 1));
        assert_eq!(s.fields[1].value(b), br#"{"x":["}",1]}"#);
        let (bs, be) = s.body.unwrap();
        assert_eq!(unescape(&b[bs..be]), "+OK Success\n");
    }

    #[test]
    fn rejects_garbage_with_position() {
        for bad in [
            &b""[..],
            b"[]",
            b"{\"a\"}",
            b"{\"a\":\"x}",
            b"{\"a\":1,}",
            b"{\"a\":nope}",
            b"{\"a\":1} x",
            b"{\"a\":[[[[",
        ] {
            assert!(scan(bad).is_err(), "{bad:?}");
        }
        assert_eq!(scan(b"{\"a\" 1}").unwrap_err().at, 5);
    }

    #[test]
    fn unescapes() {
        assert_eq!(unescape(br#"a\"b\\c\/d\n\t"#), "a\"b\\c/d\n\t");
        assert_eq!(
            unescape(br#"caf\u00e9 \ud83d\ude00"#),
            "caf\u{e9} \u{1F600}"
        );
        assert_eq!(
            unescape(br#"bad \x and \ud800 end\"#),
            "bad \\x and \u{FFFD} end\\"
        );
        assert!(matches!(unescape(b"plain"), Cow::Borrowed(_)));
    }
}
