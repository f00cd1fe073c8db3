//! Webhook throughput (a bench binary): 10,000 events queued in the store, sent by callrec's
//! webhook sender (claims, signing, one POST per event, settling each in the store) to a local
//! receiver; against a plain `reqwest` client posting the same 10,000 bodies to the same
//! receiver, in the same run: one webhook (callrec sends one event at a time per webhook, so
//! the peer posts one at a time) and 16 webhooks (the peer runs 16 posting tasks).
//!
//! `cargo bench --bench webhooks -- [--events 10000]`; with `STORE_TEST_DATABASE_URL` set, the
//! PostgreSQL queue is measured too. See BENCHMARKS.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callrec::hooks::sender::{self, SenderConfig};
use callrec::store::documents::Expect;
use callrec::store::webhooks::{HookFilter, HookState, NewHookEvent};
use callrec::store::{Kind, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const BODY: &str = r#"{"type":"recording.delivered","timestamp":"2026-12-04T10:00:00Z","data":{"recording_id":"0123456789abcdef","call_id":"5f0c8a2e-1b7d-4c1e-9a53-2d7e4f1a9b60","account_id":"acc","node":"fs-1","direction":"inbound","caller":{"name":"Alice","number":"15551234567"},"callee":{"name":"","number":"1000"},"duration_ms":61000,"format":"wav","destinations":[{"url":"https://rec.example.com/x/","method":"put","state":"delivered"}]}}"#;

/// A receiver answering 200 to every POST, counting them.
async fn receiver() -> (String, Arc<AtomicU64>) {
    use axum::routing::post;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/h/{hook}",
        post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, count)
}

/// The plain client: `events` POSTs of the body from `tasks` tasks, one at a time each.
async fn plain(base: &str, count: &AtomicU64, events: u64, tasks: u64) -> Duration {
    let client = reqwest::Client::new();
    let start_count = count.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut joins = Vec::new();
    for task in 0..tasks {
        let (client, url) = (client.clone(), format!("{base}/h/{task}"));
        let n = events / tasks + u64::from(task < events % tasks);
        joins.push(tokio::spawn(async move {
            for _ in 0..n {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(BODY)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    let d = t.elapsed();
    assert_eq!(count.load(Ordering::Relaxed) - start_count, events);
    d
}

/// Events of `account` not yet settled (pending or sending): 0 or more.
async fn unsettled(s: &Store, account: &str) -> usize {
    let mut n = 0;
    for state in [HookState::Pending, HookState::Sending] {
        n += s
            .hook_events(&HookFilter {
                state: Some(state),
                account_id: Some(account.to_string()),
                limit: Some(1),
                ..Default::default()
            })
            .await
            .unwrap()
            .len();
    }
    n
}

/// callrec: `events` events over `hooks` webhooks queued in `store`, then the sender started;
/// the time until the receiver has every event and the store has settled each `delivered`.
async fn callrec(
    store: &Store,
    (base, count): (&str, &AtomicU64),
    events: u64,
    hooks: u64,
    tag: &str,
) -> Duration {
    let start_count = count.load(Ordering::Relaxed);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let account = format!("bench-{tag}");
    for h in 0..hooks {
        store
            .put(
                Kind::Webhook,
                &account,
                &format!("h{h}"),
                serde_json::json!({"name": "bench", "uri": format!("{base}/h/{h}"),
                    "events": ["recording.delivered"], "secret": secret, "pvt_writer": "admin"}),
                Expect::Any,
            )
            .await
            .unwrap();
    }
    let rows: Vec<NewHookEvent> = (0..events)
        .map(|i| NewHookEvent {
            id: format!("msg_{tag}_{i:06}"),
            account_id: account.clone(),
            webhook_id: format!("h{}", i % hooks),
            event_type: "recording.delivered".into(),
            recording_id: Some(format!("r{i}")),
            body: BODY.into(),
        })
        .collect();
    for chunk in rows.chunks(1000) {
        store.add_hook_events(chunk).await.unwrap();
    }
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let t = Instant::now();
    tokio::spawn(sender::run(
        store.clone(),
        SenderConfig::default(),
        Arc::new(tokio::sync::Notify::new()),
        stop.clone(),
        tracker.clone(),
    ));
    while count.load(Ordering::Relaxed) < start_count + events {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        if unsettled(store, &account).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let d = t.elapsed();
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    assert_eq!(
        count.load(Ordering::Relaxed) - start_count,
        events,
        "each sent once"
    );
    d
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (base, count) = receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut stores = vec![("sqlite", Store::open(tmp.path()).unwrap())];
    let mut dropped = None;
    if let Ok(url) = std::env::var("STORE_TEST_DATABASE_URL") {
        let db = format!("callrec_bench_hooks_{}", std::process::id());
        let db_url = callrec::store::scratch::create_database(&url, &db).unwrap();
        stores.push(("postgresql", Store::connect(&db_url).await.unwrap()));
        dropped = Some((url, db));
    }
    // Warm-up: connections and the receiver.
    plain(&base, &count, 200, 4).await;
    println!("{events} events, one POST each, to a local receiver (200 OK):");
    for (name, store) in &stores {
        for (hooks, tasks) in [(1, 1), (16, 16)] {
            let peer = plain(&base, &count, events, tasks).await;
            let ours = callrec(
                store,
                (&base, &count),
                events,
                hooks,
                &format!("{name}{hooks}"),
            )
            .await;
            let rate = |d: Duration| events as f64 / d.as_secs_f64();
            println!(
                "{name:<10} {hooks:>2} webhook(s): callrec {:>8.0} events/s ({:?}); plain reqwest, {tasks} task(s): {:>8.0}/s ({:?}); callrec / plain = {:.2}",
                rate(ours),
                ours,
                rate(peer),
                peer,
                peer.as_secs_f64() / ours.as_secs_f64()
            );
        }
    }
    drop(stores);
    if let Some((url, db)) = dropped {
        let _ = callrec::store::scratch::drop_database(&url, &db);
    }
}
