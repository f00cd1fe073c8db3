//! A deep delivery backlog (a bench binary; figures in BENCHMARKS.md): a receiver down for an
//! hour at 200 recordings a second leaves ~720,000 pending deliveries.
//!
//! 1. The spool (SQLite, as `callrec serve` opens it): enqueue rate, one recording per
//!    transaction as the sessions enqueue them; then, with `n` pending, the latency of claiming
//!    one due delivery and of settling it, and of `next_due`; and a restart's spool work
//!    (open, put `uploading` back, read the journal, next due) with `n` rows.
//! 2. Draining against Debian's nginx (WebDAV PUT): the real `callrec serve` process with a
//!    backlog of `m` small files, its drain rate and RSS; the peer is the same files PUT by a
//!    plain client with the same concurrency (8), measured in the same run: what the receiver
//!    can take.
//!
//! 0. The planner's per-call document lookups (is any document about recording? which account
//!    has a callflow for this number?) with 100,000 documents, against the scans they replaced.
//!
//! With `--database-url postgres://…/db` parts 1 and 2 run on PostgreSQL instead (a new database
//! beside `db` per measurement, dropped after): the spool as `database_url` opens it, enqueued
//! from 8 threads (sessions enqueue concurrently; PostgreSQL commits them in parallel), and
//! `callrec serve` draining with `database_url` set.
//!
//! `cargo bench --bench backlog -- [--documents 100000] [--sizes 1000,100000,1000000]
//! [--drain 5000,50000] [--kib 128] [--keep-local] [--database-url URL]`

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use callrec::rules::AudioFormat;
use callrec::store::recordings::Outcome;
use callrec::store::{scratch, Store};
use callrec::uploader::{spool, CallMeta, FinishedRecording};
use callrec::values::{Destination, RecordingKind, UploadMethod};

/// Uploads at once, for callrec (`upload_concurrency`) and the plain client alike.
const CONCURRENCY: usize = 8;

/// Where the spool lives for a measurement.
#[derive(Clone)]
enum Backend {
    Sqlite,
    /// The URL of a database beside which new ones are made.
    Postgres(String),
}

/// A store for one measurement: the SQLite file in `dir`, or a new PostgreSQL database (its
/// URL returned, to drop it after).
async fn fresh(backend: &Backend, dir: &Path) -> (Store, Option<String>) {
    match backend {
        Backend::Sqlite => (Store::open(dir).unwrap(), None),
        Backend::Postgres(admin) => {
            let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let url = scratch::create_database(admin, &name).unwrap();
            (Store::connect(&url).await.unwrap(), Some(url))
        }
    }
}

fn drop_db(backend: &Backend, url: Option<String>) {
    if let (Backend::Postgres(admin), Some(url)) = (backend, url) {
        let name = url.rsplit('/').next().unwrap();
        scratch::drop_database(admin, name).unwrap();
    }
}

fn recording(i: usize, dir: &Path, url: &str) -> FinishedRecording {
    let id = format!("rec-{i:08}");
    FinishedRecording {
        call: CallMeta {
            call_id: format!("call-{i:08}"),
            account_id: Some(format!("acc-{}", i % 100)),
            user_id: None,
            device_id: None,
            caller_id_name: "Caller".into(),
            caller_id_number: "15550001111".into(),
            callee_number: "1000".into(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        file_path: dir.join(format!("{id}.wav")).to_string_lossy().into_owned(),
        recording_id: id,
        start_us: 1_764_000_000_000_000 + i as u64,
        duration_ms: 30_000,
        format: AudioFormat::Wav,
        sample_rate: Some(8000),
        stereo: false,
        size: 4096,
        destinations: vec![Destination {
            url: url.to_string(),
            method: UploadMethod::Put,
            by_account: false,
        }],
        keep_local: false,
        origin: "bench".into(),
        completion_cause: "success-silence".into(),
        sequence: 0,
        kind: RecordingKind::default(),
        may_grow_until_us: None,
        pauses: Vec::new(),
        encryption: None,
        encrypt_to: None,
    }
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Part 1: the spool alone.
async fn spool_at(n: usize, backend: &Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let (store, db_url) = fresh(backend, tmp.path()).await;
    let files = tmp.path().join("recordings");
    let url = "http://127.0.0.1:9/backlog/";
    let t = Instant::now();
    let threads = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres(_) => 8,
    };
    let mut writers = Vec::new();
    for k in 0..threads {
        let (store, files) = (store.clone(), files.clone());
        writers.push(tokio::spawn(async move {
            for i in (k..n).step_by(threads) {
                spool::enqueue(&store, &recording(i, &files, url))
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let enqueue = t.elapsed();
    let samples = 2000.min(n / 2);
    let (mut claims, mut settles, mut nexts) = (vec![], vec![], vec![]);
    for _ in 0..samples {
        let t = Instant::now();
        let got = spool::claim_due(&store, spool::now_us(), 1).await.unwrap();
        claims.push(t.elapsed());
        let t = Instant::now();
        spool::settle(&store, &got[0], &Outcome::Delivered { status: 201 })
            .await
            .unwrap();
        settles.push(t.elapsed());
        let t = Instant::now();
        store.next_due().await.unwrap();
        nexts.push(t.elapsed());
    }
    // The recordings API's listing: the newest 100, and the newest 100 still pending.
    let mut lists = vec![];
    for state in [None, Some(callrec::store::RecordingState::Pending)] {
        let f = callrec::store::recordings::Filter {
            state,
            limit: Some(100),
            ..Default::default()
        };
        let t = Instant::now();
        let got: Vec<callrec::store::recordings::RecordingRow<serde_json::Value>> =
            store.recordings(&f).await.unwrap();
        lists.push(t.elapsed());
        assert_eq!(got.len(), 100.min(n));
    }
    drop(store);
    let t = Instant::now();
    let store = match &db_url {
        None => Store::open(tmp.path()).unwrap(),
        Some(u) => Store::connect(u).await.unwrap(),
    };
    store.recover_deliveries().await.unwrap();
    let journaled: Vec<(String, serde_json::Value)> = store.journaled().await.unwrap();
    store.next_due().await.unwrap();
    let restart = t.elapsed();
    let db = store.size_bytes().await.unwrap_or(0);
    drop(store);
    drop_db(backend, db_url);
    println!(
        "spool {} n={n:>8}: enqueue {:>7.0}/s | claim p50 {:>6.1} us p99 {:>7.1} us | settle p50 {:>6.1} us p99 {:>7.1} us | next_due p50 {:>5.1} us | list newest 100 {:>6.1} ms, pending {:>6.1} ms | restart {:>7.1} ms ({} journaled) | db {} MiB",
        match backend {
            Backend::Sqlite => "sqlite    ",
            Backend::Postgres(_) => "postgresql",
        },
        n as f64 / enqueue.as_secs_f64(),
        us(quantile(&mut claims, 0.5)),
        us(quantile(&mut claims, 0.99)),
        us(quantile(&mut settles, 0.5)),
        us(quantile(&mut settles, 0.99)),
        us(quantile(&mut nexts, 0.5)),
        lists[0].as_secs_f64() * 1e3,
        lists[1].as_secs_f64() * 1e3,
        restart.as_secs_f64() * 1e3,
        journaled.len(),
        db >> 20,
    );
}

/// The receiver's capacity: the same files PUT with 8 at a time by a plain client.
async fn peer_rate(files: &[std::path::PathBuf], port: u16, under: &'static str) -> f64 {
    {
        let client = reqwest::Client::new();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let t = Instant::now();
        let mut tasks = vec![];
        for (i, f) in files.iter().enumerate() {
            let permit = sem.clone().acquire_owned().await.unwrap();
            let (client, f) = (client.clone(), f.clone());
            tasks.push(tokio::spawn(async move {
                let body = tokio::fs::read(&f).await.unwrap();
                let r = client
                    .put(format!("http://127.0.0.1:{port}/{under}/{i}.wav"))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                drop(permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        files.len() as f64 / t.elapsed().as_secs_f64()
    }
}

/// Part 2: `callrec serve` draining `m` recordings of `kib` KiB each to nginx.
async fn drain(m: usize, kib: usize, keep_local: bool, backend: &Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let shm = Path::new("/dev/shm");
    let received = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let server = common::nginx(root, received.path());
    let port = server.port;
    let data = root.join("data");
    let dir = data.join("recordings/acc/2026/11/25");
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("http://127.0.0.1:{port}/callrec/");
    let audio = vec![0x55u8; kib * 1024];
    let mut paths = Vec::with_capacity(m);
    let db_url = {
        let (store, db_url) = fresh(backend, &data).await;
        for i in 0..m {
            let rec = recording(i, &dir, &url);
            std::fs::write(&rec.file_path, &audio).unwrap();
            paths.push(std::path::PathBuf::from(&rec.file_path));
            spool::enqueue(&store, &rec).await.unwrap();
        }
        db_url
    };
    // The peer runs before and after callrec; its mean is the receiver's capacity.
    let peer_before = peer_rate(&paths, port, "peer1").await;
    let _ = std::fs::remove_dir_all(received.path().join("peer1"));
    let config = root.join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nfreeswitch_esl = \"\"\nupload_concurrency = {}\nkeep_local_after_upload = {}\n{}",
            common::free_port(),
            common::free_port(),
            data.display(),
            CONCURRENCY,
            keep_local,
            db_url
                .as_ref()
                .map(|u| format!("database_url = \"{u}\"\n"))
                .unwrap_or_default()
        ),
    )
    .unwrap();
    let probe = match &db_url {
        None => Store::open(&data).unwrap(),
        Some(u) => Store::connect(u).await.unwrap(),
    };
    let delivered = || async {
        probe
            .count_recordings(callrec::store::RecordingState::Delivered)
            .await
            .unwrap_or(0) as usize
    };
    let t = Instant::now();
    let mut child = common::serve(&config);
    let (mut peak, mut samples) = (0u64, vec![]);
    let mut started: Option<(Instant, usize)> = None;
    loop {
        let rss = common::rss_kib(child.id());
        peak = peak.max(rss);
        samples.push(rss);
        let n = delivered().await;
        if started.is_none() && n > 0 {
            started = Some((Instant::now(), n));
        }
        if n >= m {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "drain stalled at {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = t.elapsed();
    let (s0, n0) = started.unwrap_or((t, 0));
    let rate = (m - n0) as f64 / s0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(received.path().join("callrec"));
    // callrec removed its delivered copies: the peer reads files written again.
    for p in &paths {
        std::fs::write(p, &audio).unwrap();
    }
    let peer_after = peer_rate(&paths, port, "peer2").await;
    let peer = (peer_before + peer_after) / 2.0;
    drop_db(backend, db_url);
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "drain {} m={m:>7} x {kib} KiB{}: callrec {rate:>6.0}/s ({:.1} s from process start) | plain client {peer:>6.0}/s ({peer_before:.0} before, {peer_after:.0} after) | ratio {:.2} | callrec RSS median {median} KiB, peak {peak} KiB",
        match backend {
            Backend::Sqlite => "sqlite    ",
            Backend::Postgres(_) => "postgresql",
        },
        if keep_local { " (kept)" } else { "" },
        total.as_secs_f64(),
        rate / peer
    );
}

/// Part 0: the planner's per-call document lookups with `users` user documents (none with
/// recording settings: the worst case, where "does any document mention recording?" must be
/// answered no) and `callflows` callflows of two numbers each; against the scans they replaced,
/// run on the same file.
async fn lookups(users: usize, callflows: usize) {
    use callrec::store::documents::Expect;
    use callrec::store::Kind;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for i in 0..users {
        let body = serde_json::json!({"first_name": format!("User {i}"), "email": format!("u{i}@example.com")});
        store
            .put(
                Kind::User,
                &format!("acc-{}", i % 1000),
                &format!("u{i}"),
                body,
                Expect::Any,
            )
            .await
            .unwrap();
    }
    for i in 0..callflows {
        let body = serde_json::json!({"numbers": [format!("1555{i:07}"), format!("{i}")], "flow": {"module": "device", "data": {}}});
        store
            .put(
                Kind::Callflow,
                &format!("acc-{i}"),
                "main",
                body,
                Expect::Any,
            )
            .await
            .unwrap();
    }
    let scan = scratch::Unindexed::open(tmp.path()).unwrap();
    let number = format!("1555{:07}", callflows / 2);
    // 50 of each, median (the store's calls awaited one after the other, as the planner does).
    let (mut any_now, mut any_scan, mut did_now, mut did_scan) = (vec![], vec![], vec![], vec![]);
    for _ in 0..50 {
        let t = Instant::now();
        assert!(!store.any_recording_settings().await.unwrap());
        any_now.push(t.elapsed());
        let t = Instant::now();
        assert!(!scan.recording_settings().unwrap());
        any_scan.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(store.accounts_with_number(&number).await.unwrap().len(), 1);
        did_now.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(scan.accounts_with_number(&number).unwrap(), 1);
        did_scan.push(t.elapsed());
    }
    let any_now = quantile(&mut any_now, 0.5);
    let any_scan = quantile(&mut any_scan, 0.5);
    let did_now = quantile(&mut did_now, 0.5);
    let did_scan = quantile(&mut did_scan, 0.5);
    println!(
        "documents {users} users + {callflows} callflows: any recording settings {:>7.1} us (scan {:>9.1} us) | account by number {:>7.1} us (scan {:>9.1} us)",
        us(any_now),
        us(any_scan),
        us(did_now),
        us(did_scan)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let list = |name: &str, default: &str| -> Vec<usize> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
            .unwrap_or(default)
            .split(',')
            .filter_map(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .collect()
    };
    for n in list("--documents", "100000") {
        lookups(n, n / 10).await;
    }
    let backend = match args.iter().position(|a| a == "--database-url") {
        Some(i) => Backend::Postgres(args.get(i + 1).expect("--database-url URL").clone()),
        None => Backend::Sqlite,
    };
    for n in list("--sizes", "1000,100000,1000000") {
        spool_at(n, &backend).await;
    }
    let kib = list("--kib", "128").first().copied().unwrap_or(128);
    // `--keep-local`: callrec keeps its delivered files (as the plain client does) instead of
    // removing them, its default.
    let keep_local = args.iter().any(|a| a == "--keep-local");
    for m in list("--drain", "5000,50000") {
        drain(m, kib, keep_local, &backend).await;
    }
}
