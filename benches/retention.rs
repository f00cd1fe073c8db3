//! Retention and encryption (a bench binary; figures in BENCHMARKS.md).
//!
//! 1. A retention pass over a spool of `n` kept recordings, all past their limit (SQLite, as
//!    `callrec serve` opens it, with serve's batch of 50 and 10 ms between batches, on a connection of its own): its time, and what serving costs meanwhile: the latency of the
//!    API's listing query (`recordings`, one account, newest 100) and of keeping a new recording
//!    (`add_recording`), measured idle and then while the pass runs on another thread.
//! 2. Encrypting a recording file with age (what a kept recording of an account with a
//!    `recording_public_key` goes through) against copying the same file (`std::fs::copy`), in
//!    MiB/s.
//!
//! `cargo bench --bench retention -- [--rows 1000000] [--mib 256]`

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callrec::store::recordings::{Filter, NewRecording};
use callrec::store::Store;
use callrec::uploader::retention::{self, RetentionConfig};

const DAY_US: u64 = 86_400_000_000;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// p50 and p99 of `d`, in µs.
fn pct(mut d: Vec<Duration>) -> (u128, u128) {
    d.sort();
    if d.is_empty() {
        return (0, 0);
    }
    let at = |q: f64| d[((d.len() - 1) as f64 * q) as usize].as_micros();
    (at(0.5), at(0.99))
}

/// One listing and one kept recording, timed.
async fn serve_once(s: &Store, i: &mut u64) -> (Duration, Duration) {
    let f = Filter {
        account_id: Some("acc".into()),
        limit: Some(100),
        ..Default::default()
    };
    let t = Instant::now();
    let rows = s.recordings::<serde_json::Value>(&f).await.unwrap();
    let list = t.elapsed();
    assert!(!rows.is_empty() || *i > 0);
    *i += 1;
    let id = format!("live{i}");
    let t = Instant::now();
    s.add_recording(&NewRecording {
        id: &id,
        account_id: Some("other"),
        call_id: "c",
        file_path: &format!("/nowhere/{id}.wav"),
        destinations: &[callrec::values::Destination {
            url: "http://127.0.0.1:9/x/".into(),
            method: callrec::values::UploadMethod::Put,
            by_account: false,
        }],
        meta: &serde_json::json!({"recording_id": id}),
    })
    .await
    .unwrap();
    (list, t.elapsed())
}

async fn retention_bench(rows: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap().for_node("fs-1").await.unwrap();
    let meta = serde_json::json!({"call_id": "c", "account_id": "acc", "start_us": 0,
        "duration_ms": 60000, "format": "wav", "size": 960044, "destinations": []});
    let t = Instant::now();
    callrec::store::scratch::kept_rows(dir, "fs-1", "acc", "r", rows, &meta).unwrap();
    println!("seeded {rows} kept recordings in {:?}", t.elapsed());
    let mut i = 0;
    let (mut lists, mut adds) = (vec![], vec![]);
    for _ in 0..300 {
        let (l, a) = serve_once(&store, &mut i).await;
        lists.push(l);
        adds.push(a);
    }
    let (idle_list, idle_add) = (pct(lists), pct(adds));
    // Everything kept is a day past `retention_days`; the recordings kept meanwhile are still
    // pending (a destination), so the pass leaves them.
    let cfg = RetentionConfig {
        default_days: Some(1),
        batch: 50,
        pause: Duration::from_millis(10),
        every: Duration::from_secs(3600),
        recordings_dir: dir.join("recordings"),
        decision_days: 30,
        decision_max_rows: 1_000_000,
    };
    let done = Arc::new(AtomicBool::new(false));
    // As `callrec serve` runs it: on a connection of its own.
    let own = Store::open(dir).unwrap().for_node("fs-1").await.unwrap();
    let (s, d, c) = (own, done.clone(), cfg.clone());
    let pass = tokio::spawn(async move {
        let t = Instant::now();
        let r = retention::pass(&s, &c, callrec::store::now_us() + 2 * DAY_US)
            .await
            .unwrap();
        d.store(true, Ordering::Release);
        (r, t.elapsed())
    });
    let (mut lists, mut adds) = (vec![], vec![]);
    while !done.load(Ordering::Acquire) {
        let (l, a) = serve_once(&store, &mut i).await;
        lists.push(l);
        adds.push(a);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (report, took) = pass.await.unwrap();
    let (busy_list, busy_add) = (pct(lists.clone()), pct(adds));
    println!(
        "retention pass: {} erased in {} batches, {:?} ({:.0} rows/s)",
        report.erased,
        report.batches,
        took,
        report.erased as f64 / took.as_secs_f64()
    );
    println!(
        "listing (newest 100 of one account): idle p50 {} µs p99 {} µs; during the pass p50 {} µs p99 {} µs ({} samples)",
        idle_list.0, idle_list.1, busy_list.0, busy_list.1, lists.len()
    );
    println!(
        "keeping a recording: idle p50 {} µs p99 {} µs; during the pass p50 {} µs p99 {} µs",
        idle_add.0, idle_add.1, busy_add.0, busy_add.1
    );
}

fn encryption_bench(mib: u64, dir: &Path) {
    let plain = dir.join("r.wav");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&plain).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            f.write_all(&block).unwrap();
        }
    }
    let key = age::x25519::Identity::generate().to_public().to_string();
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    let (mut copies, mut encs) = (vec![], vec![]);
    for run in 0..3 {
        let t = Instant::now();
        std::fs::copy(&plain, dir.join(format!("copy{run}.wav"))).unwrap();
        copies.push(t.elapsed());
        let t = Instant::now();
        let (out, _) = callrec::uploader::encrypt::encrypt_file(&plain, &key).unwrap();
        encs.push(t.elapsed());
        std::fs::remove_file(out).unwrap();
        std::fs::remove_file(dir.join(format!("copy{run}.wav"))).unwrap();
    }
    copies.sort();
    encs.sort();
    let (c, e) = (copies[1], encs[1]);
    println!(
        "{mib} MiB file, median of 3: copy {:.0} MiB/s ({c:?}); age encryption {:.0} MiB/s ({e:?}, synced); encryption / copy = {:.2} of the rate, {:.2} ms per MiB",
        rate(c),
        rate(e),
        c.as_secs_f64() / e.as_secs_f64(),
        e.as_secs_f64() * 1000.0 / mib as f64
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    retention_bench(arg(&args, "--rows", 1_000_000) as usize).await;
    let tmp = tempfile::tempdir().unwrap();
    encryption_bench(arg(&args, "--mib", 256), tmp.path());
}
