//! Header lines: `Name: value\n` indexed once into spans, values decoded only when read.
//!
//! Invariant: a [`Span`] always lies inside the buffer it was built from and on UTF-8-agnostic
//! byte boundaries; decoding never fails (invalid UTF-8 is replaced, a bad `%` escape is kept as
//! written, as FreeSWITCH's own `switch_url_decode` does).

use std::borrow::Cow;

use memchr::memchr;

use super::error::{ProtocolError, ProtocolErrorKind};

/// Byte range of one header's name and value inside a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub name_start: u32,
    pub name_end: u32,
    pub value_start: u32,
    pub value_end: u32,
}

impl Span {
    #[inline]
    pub fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.name_start as usize..self.name_end as usize]
    }

    #[inline]
    pub fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value_start as usize..self.value_end as usize]
    }
}

/// Indexes the header lines of `block[start..end]`, appending to `out`.
///
/// Stops at the first empty line (the end of a header block) and returns the offset just past
/// it, or `end` when the range holds no empty line. `base` is the absolute stream offset of
/// `block[0]`, used only for error reports.
pub fn index_lines(
    block: &[u8],
    start: usize,
    end: usize,
    base: u64,
    out: &mut Vec<Span>,
) -> Result<usize, ProtocolError> {
    let mut pos = start;
    // One SIMD scan for line ends over the whole block; names are short, so the colon is found
    // with a plain loop rather than a fresh memchr per line.
    let mut newlines = memchr::memchr_iter(b'\n', &block[start..end]).map(|i| start + i);
    while pos < end {
        let line_end = newlines.next().unwrap_or(end);
        let mut content_end = line_end;
        if content_end > pos && block[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        if content_end == pos {
            return Ok((line_end + 1).min(end));
        }
        let line = &block[pos..content_end];
        let colon = memchr(b':', line).ok_or_else(|| {
            ProtocolError::new(ProtocolErrorKind::MalformedHeader, base + pos as u64)
        })?;
        if colon == 0 {
            return Err(ProtocolError::new(
                ProtocolErrorKind::EmptyHeaderName,
                base + pos as u64,
            ));
        }
        let mut value_start = pos + colon + 1;
        while value_start < content_end && block[value_start] == b' ' {
            value_start += 1;
        }
        out.push(Span {
            name_start: pos as u32,
            name_end: (pos + colon) as u32,
            value_start: value_start as u32,
            value_end: content_end as u32,
        });
        pos = line_end + 1;
    }
    Ok(end)
}

/// Finds the first header named `name` (ASCII case-insensitive, as FreeSWITCH compares them).
#[inline]
pub fn find<'a>(buf: &'a [u8], spans: &[Span], name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    spans
        .iter()
        .find(|s| s.name(buf).eq_ignore_ascii_case(name))
        .map(|s| s.value(buf))
}

/// Bytes as text without copying when they are valid UTF-8.
#[inline]
pub fn text(raw: &[u8]) -> Cow<'_, str> {
    // `from_utf8` has an ASCII fast path that `from_utf8_lossy` lacks; lossy only on failure.
    match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    }
}

/// FreeSWITCH's URL decoding: `%XX` becomes the byte, everything else (including `+`) stays.
pub fn percent_decode(raw: &[u8]) -> Cow<'_, str> {
    percent_decode_from(raw, false)
}

/// Like [`percent_decode`]; `raw_is_utf8` says the input is already known to be valid UTF-8,
/// which lets the output skip validation when no byte above 0x7F was decoded.
///
/// Passing `raw_is_utf8 = true` for input that is not valid UTF-8 is a logic error caught by
/// debug assertions.
pub(crate) fn percent_decode_from(raw: &[u8], raw_is_utf8: bool) -> Cow<'_, str> {
    let Some(first) = memchr(b'%', raw) else {
        return if raw_is_utf8 {
            // SAFETY: the caller vouches that `raw` is valid UTF-8.
            Cow::Borrowed(unsafe { assume_utf8(raw) })
        } else {
            text(raw)
        };
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut decoded_high = false;
    let mut i = first;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                let v = h << 4 | l;
                decoded_high |= v >= 0x80;
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    if raw_is_utf8 && !decoded_high {
        // SAFETY: `out` is valid UTF-8 input with ASCII `%XX` escapes replaced by ASCII bytes;
        // every cut was next to the ASCII `%`, so no multi-byte character was split.
        debug_assert!(std::str::from_utf8(&out).is_ok());
        return Cow::Owned(unsafe { String::from_utf8_unchecked(out) });
    }
    Cow::Owned(string_lossy(out))
}

/// Bytes into a `String`, replacing invalid UTF-8 (without copying when it is valid).
pub(crate) fn string_lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Reinterprets bytes already known to be valid UTF-8.
///
/// # Safety
/// `raw` must be valid UTF-8. Callers pass sub-slices of a buffer validated as a whole, cut
/// where an ASCII delimiter (`\n`, `:`, space, `"`, `%`…) stands: in valid UTF-8 a cut next to
/// an ASCII byte is always a char boundary. Debug builds (and the fuzz target) check it.
#[inline]
pub(crate) unsafe fn assume_utf8(raw: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(raw).is_ok(), "span is not UTF-8");
    // SAFETY: guaranteed by the caller, see above.
    unsafe { std::str::from_utf8_unchecked(raw) }
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Characters FreeSWITCH's `switch_url_encode` escapes (`SWITCH_URL_UNSAFE`), besides bytes
/// outside printable ASCII.
const URL_UNSAFE: &[u8] = b"\r\n #%&+:;<=>?@[\\]^`{|}\"";

/// Percent-encodes a value as FreeSWITCH does for plain event headers. Like FreeSWITCH it does
/// not double-encode: a `%XX` already in the value is copied as is.
pub fn percent_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let raw = value.as_bytes();
    let mut out = String::with_capacity(raw.len() + raw.len() / 4);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let escaped_already = b == b'%'
            && i + 2 < raw.len()
            && hex(raw[i + 1]).is_some()
            && hex(raw[i + 2]).is_some();
        if !escaped_already && (!(b' '..=b'~').contains(&b) || URL_UNSAFE.contains(&b)) {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        } else {
            out.push(b as char);
        }
        i += 1;
    }
    out
}

/// Parses a decimal `Content-Length` strictly: digits only, no sign, no spaces inside.
pub fn parse_length(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in raw {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_lines_and_skips_leading_spaces() {
        let b = b"A: 1\nB:two\nC:   x y\n\nrest";
        let mut v = Vec::new();
        let end = index_lines(b, 0, b.len(), 0, &mut v).unwrap();
        assert_eq!(&b[end..], b"rest");
        assert_eq!(v.len(), 3);
        assert_eq!(find(b, &v, "b"), Some(&b"two"[..]));
        assert_eq!(find(b, &v, "C"), Some(&b"x y"[..]));
        assert_eq!(find(b, &v, "D"), None);
    }

    #[test]
    fn malformed_line_reports_offset() {
        let b = b"A: 1\nnocolon\n\n";
        let err = index_lines(b, 0, b.len(), 100, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind, ProtocolErrorKind::MalformedHeader);
        assert_eq!(err.offset, 105);
        let err = index_lines(b": x\n\n", 0, 5, 0, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind, ProtocolErrorKind::EmptyHeaderName);
    }

    #[test]
    fn percent_decoding_follows_freeswitch() {
        assert_eq!(percent_decode(b"%2BOK%0A"), "+OK\n");
        assert_eq!(percent_decode(b"a+b"), "a+b");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"%41%42"), "AB");
        assert_eq!(percent_decode(b"caf%C3%A9"), "café");
        assert_eq!(percent_decode(b"%FF"), "\u{FFFD}");
        assert!(matches!(percent_decode(b"plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in ["Alice", "a b:c", "../../etc", "caf\u{e9}\n%", "50% off"] {
            assert_eq!(percent_decode(percent_encode(s).as_bytes()), s);
        }
        assert_eq!(percent_encode("fd00::2"), "fd00%3A%3A2");
        assert_eq!(percent_encode("+OK\n"), "%2BOK%0A");
        assert_eq!(
            percent_encode("sofia/test/1555@127.0.0.1:5070"),
            "sofia/test/1555%40127.0.0.1%3A5070"
        );
        assert_eq!(percent_encode("Mon, 23 Nov"), "Mon,%2023%20Nov");
        // Like FreeSWITCH, an existing escape is not encoded twice.
        assert_eq!(percent_encode("%41"), "%41");
    }

    #[test]
    fn lengths_are_strict() {
        assert_eq!(parse_length(b"12"), Some(12));
        assert_eq!(parse_length(b"0"), Some(0));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1 ",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }
}
