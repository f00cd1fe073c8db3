//! Decoding throughput of callrec's ESL layer alone, on event streams cut from the real
//! captures: frames found, messages typed, every header value decoded. The comparison with
//! other crates lives in `bench-peers/` (see BENCHMARKS.md).

use std::path::Path;

use bytes::BytesMut;
use callrec_esl::corpus::frames_of_kind;
use callrec_esl::{ContentType, FrameDecoder, Message};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn decode_all(stream: &[u8]) -> usize {
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::from(stream);
    let mut n = 0;
    while let Some(f) = dec.decode(&mut buf).expect("decodes") {
        if let Message::Event(e) = Message::from_frame(f).expect("event") {
            black_box(e.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
            n += 1;
        }
    }
    n
}

fn frames_only(stream: &[u8]) -> usize {
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::from(stream);
    let mut n = 0;
    while let Some(f) = dec.decode(&mut buf).expect("decodes") {
        black_box(&f);
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/esl");
    for (label, kind) in [
        ("plain", ContentType::EventPlain),
        ("json", ContentType::EventJson),
    ] {
        let (stream, count) = frames_of_kind(&dir, &kind).expect("captures");
        let mut g = c.benchmark_group(format!("callrec-{label}"));
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function("frames", |b| b.iter(|| frames_only(&stream)));
        g.bench_function("frames+events+values", |b| {
            b.iter(|| assert_eq!(decode_all(&stream), count))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
