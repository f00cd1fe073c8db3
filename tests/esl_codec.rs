//! The codec finds the same frames however the bytes are cut, and fails cleanly on bad input.

mod support;

use bytes::BytesMut;
use callrec::esl::{EslCodec, Frame, FrameDecoder, Limits, ProtocolErrorKind};
use futures::StreamExt;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

type Print = (u64, Vec<(String, String)>, Vec<u8>);

fn prints(frames: &[Frame]) -> Vec<Print> {
    frames.iter().map(fingerprint).collect()
}

/// Feeds `pieces` one after another, decoding after each.
fn decode_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        while let Some(f) = d.decode(&mut buf).expect("decodes") {
            out.push(f);
        }
    }
    while let Some(f) = d.decode_eof(&mut buf).expect("decodes at eof") {
        out.push(f);
    }
    out
}

#[test]
fn byte_at_a_time_equals_pipelined() {
    for name in capture_names() {
        let s = fs_stream(&name);
        let whole = prints(&frames(&s));
        let bytewise = prints(&decode_pieces(s.chunks(1)));
        assert_eq!(whole, bytewise, "{name}");
    }
}

#[test]
fn two_pieces_at_every_offset_of_small_captures() {
    for name in capture_names() {
        let s = fs_stream(&name);
        if s.len() > 4096 {
            continue;
        }
        let whole = prints(&frames(&s));
        for k in 0..=s.len() {
            let got = prints(&decode_pieces([&s[..k], &s[k..]]));
            assert_eq!(whole, got, "{name} split at {k}");
        }
    }
}

#[test]
fn two_pieces_at_every_offset_of_every_header_block() {
    // For each frame of each capture: every split inside its header block, around the blank
    // line, and at the body's first and last bytes, decoding the frame on its own.
    for name in capture_names() {
        let s = fs_stream(&name);
        for f in frames(&s) {
            let start = f.offset() as usize;
            let end = start + f.wire_len();
            let frame = &s[start..end];
            let head_len = f.wire_len() - f.body().len();
            let mut cuts: Vec<usize> = (0..=head_len.min(frame.len())).collect();
            let blen = f.body().len();
            for d in [1usize, 2, 3] {
                if blen >= d {
                    cuts.push(head_len + d);
                    cuts.push(frame.len() - d);
                }
            }
            cuts.extend((head_len..frame.len()).step_by(257));
            let expect = {
                let mut p = fingerprint(&f);
                p.0 = 0;
                p
            };
            for k in cuts {
                let got = decode_pieces([&frame[..k], &frame[k..]]);
                assert_eq!(got.len(), 1, "{name} @{start} split {k}");
                assert_eq!(fingerprint(&got[0]), expect, "{name} @{start} split {k}");
            }
        }
    }
}

/// Small deterministic PRNG so chunk sizes vary but every run is the same.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn framed_read_over_a_socket_pair_with_random_chunks() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for name in capture_names() {
        let s = fs_stream(&name);
        let expected = prints(&frames(&s));
        let (mut tx, rx) = tokio::io::duplex(1024);
        let chunks: Vec<Vec<u8>> = {
            let mut v = Vec::new();
            let mut pos = 0;
            while pos < s.len() {
                let n = 1 + (rng.next() % 3000) as usize;
                let end = (pos + n).min(s.len());
                v.push(s[pos..end].to_vec());
                pos = end;
            }
            v
        };
        let writer = tokio::spawn(async move {
            for c in chunks {
                tx.write_all(&c).await.unwrap();
            }
            tx.shutdown().await.unwrap();
        });
        let mut framed = FramedRead::new(rx, EslCodec::default());
        let mut got = Vec::new();
        while let Some(f) = framed.next().await {
            got.push(f.expect("decodes"));
        }
        writer.await.unwrap();
        assert_eq!(prints(&got), expected, "{name}");
    }
}

/// Runs bytes through FramedRead and returns the frames before the error, and the error.
async fn first_error(input: &[u8], limits: Limits) -> (usize, callrec::esl::ProtocolError) {
    let mut framed = FramedRead::new(input, EslCodec::new(limits));
    let mut n = 0;
    loop {
        match framed.next().await {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => {
                assert!(
                    framed.next().await.is_none(),
                    "the stream ends after an error"
                );
                return (n, e);
            }
            None => panic!("expected an error for {:?}", String::from_utf8_lossy(input)),
        }
    }
}

const OK_REPLY: &[u8] = b"Content-Type: command/reply\nReply-Text: +OK\n\n";

#[tokio::test]
async fn malformed_content_lengths() {
    let lim = Limits::default();
    for (bad, expect) in [
        ("abc", "abc"),
        ("-1", "-1"),
        ("12x", "12x"),
        ("", ""),
        ("99999999999999999999999", "99999999999999999999999"),
    ] {
        let input = [
            OK_REPLY,
            format!("Content-Length: {bad}\n\nbody").as_bytes(),
        ]
        .concat();
        let (n, e) = first_error(&input, lim).await;
        assert_eq!(n, 1, "the good frame before is delivered");
        assert_eq!(e.kind, ProtocolErrorKind::BadContentLength(expect.into()));
        assert_eq!(e.offset, OK_REPLY.len() as u64 + 16, "offset of the value");
        assert!(e.to_string().contains("at byte offset"));
    }
    let huge = [OK_REPLY, b"Content-Length: 8388609\n\n"].concat();
    let (_, e) = first_error(&huge, lim).await;
    assert_eq!(
        e.kind,
        ProtocolErrorKind::BodyTooLarge {
            length: 8_388_609,
            max: 8 * 1024 * 1024
        }
    );
}

#[tokio::test]
async fn missing_blank_line_and_truncation() {
    let lim = Limits::default();
    let (n, e) = first_error(b"Content-Type: command/reply\nReply-Text: +OK\n", lim).await;
    assert_eq!(n, 0);
    assert!(matches!(e.kind, ProtocolErrorKind::Truncated { .. }));
    assert_eq!(e.offset, 0);

    let input = [
        OK_REPLY,
        b"Content-Type: api/response\nContent-Length: 100\n\n+OK",
    ]
    .concat();
    let (n, e) = first_error(&input, lim).await;
    assert_eq!(n, 1);
    assert_eq!(e.kind, ProtocolErrorKind::Truncated { missing: "body" });
    assert_eq!(e.offset, input.len() as u64);
}

#[tokio::test]
async fn binary_garbage() {
    let mut rng = XorShift(42);
    let garbage: Vec<u8> = (0..100_000).map(|_| (rng.next() % 256) as u8).collect();
    let lim = Limits {
        max_head: 4096,
        max_body: 1024,
    };
    let (_, e) = first_error(&garbage, lim).await;
    assert!(
        matches!(
            e.kind,
            ProtocolErrorKind::MalformedHeader
                | ProtocolErrorKind::EmptyHeaderName
                | ProtocolErrorKind::HeaderTooLarge { .. }
        ),
        "{e}"
    );
    // Garbage after a valid frame is reported after it, with its offset.
    let input = [OK_REPLY, b"\x00\x01\x02 no colon here\n\n"].concat();
    let (n, e) = first_error(&input, lim).await;
    assert_eq!(n, 1);
    assert_eq!(e.kind, ProtocolErrorKind::MalformedHeader);
    assert_eq!(e.offset, OK_REPLY.len() as u64);
}

#[test]
fn memory_stays_bounded_without_a_blank_line() {
    let lim = Limits {
        max_head: 64 * 1024,
        max_body: 1024,
    };
    let mut d = FrameDecoder::new(lim);
    let mut buf = BytesMut::new();
    let line = b"X-Header: value\n";
    let mut fed = 0usize;
    let err = loop {
        buf.extend_from_slice(line);
        fed += line.len();
        match d.decode(&mut buf) {
            Ok(None) => assert!(fed <= lim.max_head + line.len()),
            Ok(Some(_)) => panic!("no frame without a blank line"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        err.kind,
        ProtocolErrorKind::HeaderTooLarge { max: 64 * 1024 }
    );
    assert!(buf.len() <= lim.max_head + line.len());
}

#[test]
fn leading_blank_lines_are_tolerated() {
    let input = [b"\n\n".as_slice(), OK_REPLY, b"\n", OK_REPLY].concat();
    let f = frames(&input);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].offset(), 2);
}
