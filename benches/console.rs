//! The console's listings at 10^6 rows (a bench binary; figures in BENCHMARKS.md): the HTTP
//! API (as `callrec serve` runs it, in process, on a real socket) over a SQLite store holding a
//! million recordings and a million decision records shaped like a site's month
//! (`store::scratch::console_rows`: 10 accounts, one with 90% of the rows).
//!
//! Each query runs 50 times after one warm-up; p50 and p99 of the whole request, as the page
//! sees it (token check, query, JSON). The bar: under 100 ms.
//!
//! `cargo bench --bench console -- [--rows 1000000]`

use std::time::{Duration, Instant};

use callrec::admin::{self, ApiState};
use callrec::rules::AudioFormat;
use callrec::store::{scratch, Scope, Store};
use callrec::uploader::{CallMeta, FinishedRecording};
use callrec::values::RecordingKind;
use tokio_util::sync::CancellationToken;

fn template() -> serde_json::Value {
    serde_json::to_value(FinishedRecording {
        call: CallMeta {
            call_id: String::new(),
            account_id: None,
            user_id: Some("u-1".into()),
            device_id: Some("d-1".into()),
            caller_id_name: "Caller Name".into(),
            caller_id_number: String::new(),
            callee_number: String::new(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        recording_id: String::new(),
        start_us: 1_764_000_000_000_000,
        duration_ms: 95_000,
        format: AudioFormat::Mp3,
        sample_rate: Some(8000),
        stereo: false,
        file_path: String::new(),
        size: 380_000,
        destinations: vec![],
        keep_local: true,
        origin: "account acc-0 record_call: all calls".into(),
        completion_cause: "success-silence".into(),
        sequence: 0,
        kind: RecordingKind::default(),
        may_grow_until_us: None,
        pauses: vec![],
        encryption: None,
        encrypt_to: None,
    })
    .unwrap()
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path())
        .unwrap()
        .for_node("n1")
        .await
        .unwrap();
    let t = Instant::now();
    scratch::console_rows(dir.path(), "n1", rows, &template()).unwrap();
    println!(
        "seeded {rows} recordings and {rows} decision records in {:?}",
        t.elapsed()
    );
    let token = store.create_token(&Scope::Admin).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(admin::serve(
        listener,
        ApiState {
            store: store.clone(),
            readiness: None,
            live: None,
            policy: Default::default(),
            links: Default::default(),
        },
        CancellationToken::new(),
    ));
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, token, base) = (http.clone(), token.clone(), base.clone());
        async move {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .header("X-Auth-Token", token)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            let v: serde_json::Value = r.json().await.unwrap();
            (t.elapsed(), v)
        }
    };
    // A start key 40 pages (1,000 rows) into the big account, and a day in the middle.
    let mut key = String::new();
    for _ in 0..40 {
        let (_, v) = get(format!("/v2/accounts/acc-0/recordings?limit=25{key}")).await;
        key = format!("&start_key={}", v["next_start_key"].as_str().unwrap());
    }
    let now_s = callrec::store::now_us() / 1_000_000;
    let day = format!(
        "&since={}&until={}",
        now_s - 15 * 86_400,
        now_s - 14 * 86_400
    );
    // A call of the big account from the middle of the month.
    let mid_call = (rows / 2..rows)
        .map(|i| format!("call-{i:07}"))
        .find(|c| {
            let i: u64 = c[5..].parse().unwrap();
            !(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20).is_multiple_of(10)
        })
        .unwrap();
    let queries: Vec<(&str, String)> = vec![
        (
            "recordings: newest 25 of the big account",
            "/v2/accounts/acc-0/recordings?limit=25".into(),
        ),
        (
            "recordings: newest 25 of a small account",
            "/v2/accounts/acc-3/recordings?limit=25".into(),
        ),
        (
            "recordings: failed ones",
            "/v2/accounts/acc-0/recordings?limit=25&state=failed".into(),
        ),
        (
            "recordings: one caller or callee",
            "/v2/accounts/acc-0/recordings?limit=25&party=%2B15550004242".into(),
        ),
        (
            "recordings: one day, 15 days ago",
            format!("/v2/accounts/acc-0/recordings?limit=25{day}"),
        ),
        (
            "recordings: page 41 (1,000 rows in)",
            format!("/v2/accounts/acc-0/recordings?limit=25{key}"),
        ),
        (
            "recordings: one call id",
            format!("/v2/accounts/acc-0/recordings?call_id={}", mid_call),
        ),
        (
            "recordings: failed, one day",
            format!("/v2/accounts/acc-0/recordings?limit=25&state=failed{day}"),
        ),
        (
            "calls: newest 25",
            "/v2/accounts/acc-0/calls?limit=25".into(),
        ),
        (
            "calls: one caller or callee",
            "/v2/accounts/acc-0/calls?limit=25&party=%2B15550004242".into(),
        ),
        (
            "calls: not recorded, one day",
            format!("/v2/accounts/acc-0/calls?limit=25&recorded=false{day}"),
        ),
        (
            "a decision",
            format!("/v2/accounts/acc-0/calls/{}/decision", mid_call),
        ),
    ];
    println!("| query | rows | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, path) in queries {
        let (_, v) = get(path.clone()).await;
        let n = v["data"].as_array().map_or(1, |a| a.len());
        let mut times = Vec::new();
        for _ in 0..50 {
            times.push(get(path.clone()).await.0);
        }
        let (p50, p99) = (pct(&mut times, 0.5), pct(&mut times, 0.99));
        println!(
            "| {name} | {n} | {:.1} ms | {:.1} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
