//! The webhook queue: fair claims, busy webhooks, settling, racing claims.

use super::*;

pub(super) fn hook_event(id: &str, hook: &str) -> NewHookEvent {
    NewHookEvent {
        id: id.into(),
        account_id: "acc".into(),
        webhook_id: hook.into(),
        event_type: "recording.started".into(),
        recording_id: Some("r".into()),
        body: format!("{{\"id\":\"{id}\"}}"),
    }
}

pub(super) fn limits(busy: &[&str], hooks: usize, per_hook: usize) -> ClaimLimits {
    ClaimLimits {
        busy: busy
            .iter()
            .map(|h| ("acc".to_string(), h.to_string()))
            .collect(),
        hooks,
        per_hook,
        lease_until_us: now_us() + 60_000_000,
    }
}

/// The webhook queue: a claim takes at most `per_hook` events of each webhook, none of a busy
/// one; retries, failures, recovery and manual retry move events as the sender expects.
pub(super) async fn webhook_claims_are_fair_skip_busy_hooks_and_settle(open: &Opener) {
    let s = open.open().await.for_node("n1").await.unwrap();
    let mut events: Vec<NewHookEvent> = (0..5).map(|i| hook_event(&format!("a{i}"), "a")).collect();
    events.push(hook_event("b0", "b"));
    events.push(hook_event("c0", "c"));
    s.add_hook_events(&events).await.unwrap();
    s.add_hook_events(&events[..1]).await.unwrap(); // a repeated insert is ignored
    let got = s
        .claim_hook_events(now_us(), &limits(&["c"], 10, 2))
        .await
        .unwrap();
    let mut ids: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a0", "a1", "b0"], "two of a, b's one, none of busy c");
    assert!(got.iter().all(|c| c.attempts == 0));
    let a0 = got.iter().find(|c| c.id == "a0").unwrap();
    assert_eq!(a0.body, r#"{"id":"a0"}"#);
    // Claimed events are not claimed again.
    let again = s
        .claim_hook_events(now_us(), &limits(&[], 10, 10))
        .await
        .unwrap();
    let mut ids: Vec<&str> = again.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a2", "a3", "a4", "c0"]);
    s.settle_hook_event("a0", &HookOutcome::Delivered { status: 200 })
        .await
        .unwrap();
    s.settle_hook_event(
        "a1",
        &HookOutcome::Retry {
            next_us: now_us() + 3_600_000_000,
            error: "HTTP 503".into(),
            status: Some(503),
        },
    )
    .await
    .unwrap();
    s.settle_hook_event(
        "b0",
        &HookOutcome::Failed {
            error: "HTTP 410".into(),
            status: Some(410),
        },
    )
    .await
    .unwrap();
    // a's receiver is failing: its other events wait with a1, unattempted.
    let later = now_us() + 7_200_000_000;
    s.defer_hook("acc", "a", later).await.unwrap();
    let rows: HashMap<String, HookRow> = s
        .hook_events(&HookFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows["a0"].state, HookState::Delivered);
    assert_eq!(
        (rows["a1"].state, rows["a1"].attempts),
        (HookState::Pending, 1)
    );
    assert_eq!(rows["a1"].last_status, Some(503));
    assert_eq!(
        (rows["b0"].state, rows["b0"].attempts),
        (HookState::Failed, 1)
    );
    for id in ["a1", "a2", "a3", "a4"] {
        assert_eq!(rows[id].state, HookState::Pending, "{id}");
        assert_eq!(rows[id].next_attempt_us, later, "{id} waits with a1");
    }
    assert_eq!(rows["a2"].attempts, 0, "deferred unattempted");
    assert_eq!(
        rows["c0"].state,
        HookState::Sending,
        "another webhook's claim stays"
    );
    assert!(s
        .claim_hook_events(now_us(), &limits(&[], 10, 10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(rows["a0"].node, "n1");
    // A restart of n1 puts its claims back; another node's restart does not.
    assert_eq!(
        open.open()
            .await
            .for_node("n2")
            .await
            .unwrap()
            .recover_hook_events()
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.recover_hook_events().await.unwrap(), 1, "c0");
    assert_eq!(
        s.retry_hook_events(None).await.unwrap(),
        1,
        "b0 back in the queue"
    );
    let failed = s
        .hook_events(&HookFilter {
            state: Some(HookState::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failed.is_empty());
    assert!(s.next_hook_due().await.unwrap().is_some());
}

/// Two handles claiming at once (two nodes on one database) never take the same event.
pub(super) async fn racing_webhook_claims_never_share_an_event(open: &Opener) {
    let handles = [
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    ];
    let events: Vec<NewHookEvent> = (0..200)
        .map(|i| hook_event(&format!("e{i:03}"), &format!("h{}", i % 10)))
        .collect();
    handles[0].add_hook_events(&events).await.unwrap();
    let got: Vec<Vec<String>> = racing(&handles, 6, |s| async move {
        let mut mine = Vec::new();
        loop {
            let batch = s
                .claim_hook_events(now_us(), &limits(&[], 3, 4))
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            mine.extend(batch.into_iter().map(|c| c.id));
        }
        mine
    })
    .await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in got.iter().flatten() {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(seen.len(), 200, "every event claimed");
    assert!(seen.values().all(|&n| n == 1), "an event claimed twice");
}
