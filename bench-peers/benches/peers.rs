//! callrec's ESL decoding against freeswitch-esl-tokio 2.8.0 and eslrs 0.1.0-rc.3, in one run,
//! on event streams cut from the real FreeSWITCH captures. See BENCHMARKS.md for the command.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use callrec_bench_peers::{event_frames, plain_bodies, repeat};
use callrec_esl::{Command, ContentType, EslCodec, FrameDecoder, Message};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::FramedRead;

/// Touches every decoded header of every event, as a consumer reading all values would.
fn consume(event: &callrec_esl::event::Event) -> usize {
    event.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
        + event.body().map_or(0, |b| b.len())
}

fn callrec_decode_buffer(stream: &[u8]) -> usize {
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::from(stream);
    let mut events = 0;
    while let Some(f) = dec.decode(&mut buf).expect("decodes") {
        if let Message::Event(e) = Message::from_frame(f).expect("event") {
            black_box(consume(&e));
            events += 1;
        }
    }
    events
}

/// What each implementation does with an event once it has it.
#[derive(Clone, Copy, PartialEq)]
enum Work {
    /// Read `Event-Name` only (what a dispatcher needs).
    Name,
    /// Read every header value (what callrec's `consume` does).
    All,
}

async fn callrec_read<R: tokio::io::AsyncRead + Unpin>(r: R, buffer: usize, work: Work) -> usize {
    let mut framed = FramedRead::with_capacity(r, EslCodec::default(), buffer);
    let mut events = 0;
    while let Some(f) = framed.next().await {
        if let Message::Event(e) = Message::from_frame(f.expect("frame")).expect("event") {
            match work {
                Work::All => black_box(consume(&e)),
                Work::Name => black_box(e.get("Event-Name").map_or(0, |n| n.len())),
            };
            events += 1;
        }
    }
    events
}

/// An inbound-mode FreeSWITCH stand-in: greeting, accepts any `auth`, then sends `stream` and
/// closes. Runs on its own thread so the client side is measured alone on its core.
fn start_server(stream: Vec<u8>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let stream = std::sync::Arc::new(stream);
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let stream = stream.clone();
                tokio::spawn(async move {
                    sock.set_nodelay(true).ok();
                    sock.write_all(b"Content-Type: auth/request\n\n").await.ok();
                    let mut seen = Vec::new();
                    let mut b = [0u8; 256];
                    while !seen.windows(2).any(|w| w == b"\n\n") {
                        match sock.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&b[..n]),
                        }
                    }
                    sock.write_all(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
                        .await
                        .ok();
                    sock.write_all(&stream).await.ok();
                    sock.shutdown().await.ok();
                });
            }
        });
    });
    rx.recv().unwrap()
}

async fn callrec_socket(addr: SocketAddr, read_buffer: usize) -> usize {
    let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).ok();
    let (rd, mut wr) = sock.into_split();
    let mut framed = FramedRead::with_capacity(rd, EslCodec::default(), read_buffer);
    let greeting = framed.next().await.unwrap().unwrap();
    assert_eq!(greeting.content_type(), ContentType::AuthRequest);
    let auth = Command::Auth {
        password: "ClueCon".into(),
    };
    wr.write_all(&auth.to_bytes().unwrap()).await.unwrap();
    let reply = framed.next().await.unwrap().unwrap();
    assert_eq!(reply.content_type(), ContentType::CommandReply);
    let mut events = 0;
    while let Some(f) = framed.next().await {
        if let Message::Event(e) = Message::from_frame(f.expect("frame")).expect("event") {
            black_box(consume(&e));
            events += 1;
        }
    }
    events
}

async fn fet_socket(addr: SocketAddr) -> usize {
    use freeswitch_esl_tokio::EslClient;
    let (_client, mut events) = EslClient::connect(&addr.ip().to_string(), addr.port(), "ClueCon")
        .await
        .expect("connect");
    let mut n = 0;
    while let Some(ev) = events.recv().await {
        match ev {
            Ok(e) => {
                black_box(e.headers().len());
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

/// eslrs on the same transport as callrec's in-memory rows. Its plain events expose only
/// `get_header`, so "every value" asks for each header name of the event (listed beforehand,
/// outside the measurement, from the same stream); JSON events are walked whole.
async fn eslrs_memory(
    stream: &'static [u8],
    json: bool,
    work: Work,
    names: &'static [Vec<String>],
) -> usize {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        server.write_all(stream).await.unwrap();
        server.shutdown().await.unwrap();
        drop(server); // close the writer, or eslrs waits for more
    });
    let mut conn = eslrs::Inbound::new(client);
    let mut n = 0;
    while let Ok(ev) = conn.recv().await {
        if json {
            let v = eslrs::event::JsonEvent::try_from(ev).expect("json");
            let o = v.as_object().expect("object");
            match work {
                Work::Name => black_box(
                    o.get("Event-Name")
                        .and_then(|v| v.as_str())
                        .map_or(0, str::len),
                ),
                Work::All => black_box(
                    o.iter()
                        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                        .sum::<usize>(),
                ),
            };
        } else {
            let p = eslrs::event::PlainEvent::try_from(ev).expect("plain");
            match work {
                Work::Name => black_box(p.get_header("Event-Name").map_or(0, str::len)),
                Work::All => black_box(
                    names[n]
                        .iter()
                        .map(|h| h.len() + p.get_header(h).map_or(0, str::len))
                        .sum::<usize>()
                        + p.get_body().map_or(0, |b| b.len()),
                ),
            };
        }
        n += 1;
    }
    writer.await.unwrap();
    n
}

async fn callrec_memory(stream: &'static [u8], buffer: usize, work: Work) -> usize {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        server.write_all(stream).await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
    });
    let n = callrec_read(client, buffer, work).await;
    writer.await.unwrap();
    n
}

fn peers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (label, kind, copies) in [
        ("plain", ContentType::EventPlain, 4),
        ("json", ContentType::EventJson, 6),
    ] {
        let (one, count) = event_frames(kind);
        let stream: &'static [u8] = Box::leak(repeat(&one, copies).into_boxed_slice());
        let events = count * copies;
        eprintln!(
            "{label}: {events} events, {} bytes, {:.0} bytes/event",
            stream.len(),
            stream.len() as f64 / events as f64
        );
        assert_eq!(callrec_decode_buffer(stream), events);
        let addr = start_server(stream.to_vec());
        assert_eq!(rt.block_on(callrec_socket(addr, 64 * 1024)), events);
        // Header names of every event, in order (for eslrs's "every value" row).
        let names: &'static [Vec<String>] = Box::leak(
            {
                let mut dec = FrameDecoder::default();
                let mut buf = BytesMut::from(stream);
                let mut all = Vec::new();
                while let Some(f) = dec.decode(&mut buf).expect("decodes") {
                    if let Message::Event(e) = Message::from_frame(f).expect("event") {
                        all.push(e.iter().map(|(n, _)| n.into_owned()).collect::<Vec<_>>());
                    }
                }
                all
            }
            .into_boxed_slice(),
        );
        let json = label == "json";
        for work in [Work::Name, Work::All] {
            assert_eq!(rt.block_on(callrec_memory(stream, 8 * 1024, work)), events);
            assert_eq!(rt.block_on(eslrs_memory(stream, json, work, names)), events);
        }
        let fet = rt.block_on(fet_socket(addr));
        assert_eq!(fet, events, "freeswitch-esl-tokio received every event");

        let mut g = c.benchmark_group(format!("esl-{label}"));
        g.throughput(Throughput::Elements(events as u64));
        g.sample_size(20).measurement_time(Duration::from_secs(6));
        g.bench_function("callrec/sans-io-buffer", |b| {
            b.iter(|| callrec_decode_buffer(stream))
        });
        for (work, w) in [(Work::Name, "event-name"), (Work::All, "every-value")] {
            for (buffer, kb) in [(8 * 1024, "8k"), (64 * 1024, "64k")] {
                g.bench_function(format!("callrec/e2e-memory-{kb}-{w}"), |b| {
                    b.iter(|| rt.block_on(callrec_memory(stream, buffer, work)))
                });
            }
            g.bench_function(format!("eslrs/e2e-memory-8k-{w}"), |b| {
                b.iter(|| rt.block_on(eslrs_memory(stream, json, work, names)))
            });
        }
        g.bench_function("callrec/e2e-socket-64k-buffer", |b| {
            b.iter(|| rt.block_on(callrec_socket(addr, 64 * 1024)))
        });
        g.bench_function("callrec/e2e-socket-1m-buffer", |b| {
            b.iter(|| rt.block_on(callrec_socket(addr, 1024 * 1024)))
        });
        g.bench_function("freeswitch-esl-tokio/e2e-socket", |b| {
            b.iter(|| rt.block_on(fet_socket(addr)))
        });
        g.finish();
    }

    let bodies = plain_bodies();
    let total: usize = bodies.iter().map(|b| b.len()).sum();
    let shared: Vec<bytes::Bytes> = bodies
        .iter()
        .map(|b| bytes::Bytes::from(b.clone()))
        .collect();
    let mut g = c.benchmark_group("plain-body");
    g.throughput(Throughput::Elements(bodies.len() as u64));
    eprintln!("plain-body: {} bodies, {total} bytes", bodies.len());
    g.bench_function("callrec/Event::from_plain+read-all", |b| {
        b.iter(|| {
            shared
                .iter()
                .map(|s| {
                    let e = callrec_esl::event::Event::from_plain(s.clone(), 0).unwrap();
                    consume(&e)
                })
                .sum::<usize>()
        })
    });
    g.bench_function("freeswitch-esl-tokio/parse_channel_dump", |b| {
        b.iter(|| {
            bodies
                .iter()
                .map(|s| {
                    freeswitch_esl_tokio::parse_channel_dump(s)
                        .map(|e| e.headers().len())
                        .unwrap_or(0)
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, peers);
criterion_main!(benches);
