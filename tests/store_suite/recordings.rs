//! Recordings: the journal, deliveries and claims, recovery, moves between nodes.

use super::*;

pub(super) fn dest(url: &str, method: UploadMethod) -> Destination {
    Destination {
        url: url.into(),
        method,
        by_account: false,
    }
}

pub(super) async fn add(s: &Store, id: &str, path: &str, dests: &[Destination]) -> RecordingState {
    s.add_recording(&NewRecording {
        id,
        account_id: Some("acc"),
        call_id: &format!("call-{id}"),
        file_path: path,
        destinations: dests,
        meta: &json!({"recording_id": id, "file_path": path}),
    })
    .await
    .unwrap()
}

pub(super) async fn claim(s: &Store, limit: usize) -> Vec<Claim<Value>> {
    s.claim_due(now_us(), limit).await.unwrap()
}

pub(super) async fn a_recording_follows_its_deliveries(open: &Opener) {
    let s = open.open().await;
    let dests = [
        dest("http://a/", UploadMethod::Put),
        dest("http://a/", UploadMethod::Post),
    ];
    assert_eq!(
        add(&s, "r1", "/r/x.wav", &dests).await,
        RecordingState::Pending
    );
    assert_eq!(add(&s, "r0", "/r/y.wav", &[]).await, RecordingState::Stored);
    assert!(s.next_due().await.unwrap().is_some());
    let claims = claim(&s, 10).await;
    assert_eq!(claims.len(), 2, "one delivery per url and method");
    assert_eq!(claims[0].meta["recording_id"], "r1");
    assert!(claim(&s, 10).await.is_empty(), "claimed ones are not due");
    assert_eq!(s.next_due().await.unwrap(), None);
    assert_eq!(
        s.recording::<Value>("r1").await.unwrap().unwrap().state,
        RecordingState::Uploading
    );
    assert_eq!(s.recover_deliveries().await.unwrap(), 2);
    let claims = claim(&s, 10).await;
    assert_eq!(claims.len(), 2);
    let ok = Outcome::Delivered { status: 201 };
    assert_eq!(
        s.settle("r1", &dests[0], &ok).await.unwrap(),
        RecordingState::Uploading
    );
    let later = Outcome::Retry {
        next_us: now_us() + 3_600_000_000,
        error: "503".into(),
        status: Some(503),
    };
    assert_eq!(
        s.settle("r1", &dests[1], &later).await.unwrap(),
        RecordingState::Pending
    );
    assert!(claim(&s, 10).await.is_empty(), "not due for an hour");
    assert_eq!(claim(&s, 10).await.len(), 0);
    let again: Vec<Claim<Value>> = s.claim_due(now_us() + 3_700_000_000, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    let fail = Outcome::Failed {
        error: "404".into(),
        status: Some(404),
    };
    assert_eq!(
        s.settle("r1", &dests[1], &fail).await.unwrap(),
        RecordingState::Failed
    );
    assert_eq!(s.retry_failed(Some("r1")).await.unwrap(), 1);
    let row = s.recording::<Value>("r1").await.unwrap().unwrap();
    assert_eq!(row.state, RecordingState::Pending);
    let states: Vec<(UploadMethod, DeliveryState, u32, Option<u16>)> = row
        .deliveries
        .iter()
        .map(|d| (d.method, d.state, d.attempts, d.last_status))
        .collect();
    assert_eq!(
        states,
        [
            (UploadMethod::Post, DeliveryState::Pending, 2, Some(404)),
            (UploadMethod::Put, DeliveryState::Delivered, 1, Some(201))
        ]
    );
    assert!(row.deliveries[1].delivered_us.is_some());
    assert!(s.has_recording_path("/r/x.wav").await.unwrap());
    let in_r = s.recording_paths_in("/r").await.unwrap();
    assert!(in_r.contains("/r/x.wav") && in_r.contains("/r/y.wav"));
    assert!(!s.recording_paths_in("").await.unwrap().contains("/r/x.wav"));
    assert!(s.recording_paths_in("/r/x").await.unwrap().is_empty());
    assert!(!s.has_recording_path("/r/z.wav").await.unwrap());
    let listed: Vec<_> = s
        .recordings::<Value>(&Filter {
            state: Some(RecordingState::Pending),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let all = s.recordings::<Value>(&Filter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].created_us >= all[1].created_us, "newest first");
    let by_call = s
        .recordings::<Value>(&Filter {
            call_id: Some("call-r0".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_call[0].state, RecordingState::Stored);
}

pub(super) async fn the_journal_is_per_node(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    for (s, id) in [(&one, "j1"), (&two, "j2")] {
        s.journal_recording(&NewRecording {
            id,
            account_id: None,
            call_id: "c",
            file_path: &format!("/r/{id}.wav"),
            destinations: &[],
            meta: &json!({"id": id}),
        })
        .await
        .unwrap();
    }
    let mine: Vec<(String, Value)> = one.journaled().await.unwrap();
    assert_eq!(mine, [("j1".to_string(), json!({"id": "j1"}))]);
    assert_eq!(
        one.recording::<Value>("j2").await.unwrap().unwrap().state,
        RecordingState::Recording
    );
    // Kept: the journal row becomes the spooled recording.
    assert_eq!(
        add(
            &one,
            "j1",
            "/r/j1.wav",
            &[dest("http://a/", UploadMethod::Put)]
        )
        .await,
        RecordingState::Pending
    );
    assert!(one.journaled::<Value>().await.unwrap().is_empty());
    assert!(!one.forget_recording("j1").await.unwrap(), "kept ones stay");
    assert!(two.forget_recording("j2").await.unwrap());
    assert!(two.recording::<Value>("j2").await.unwrap().is_none());
}

pub(super) async fn claims_recovery_and_orphans_are_per_node_listing_is_not(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    let d = [dest("http://a/", UploadMethod::Put)];
    add(&one, "a1", "/d/a1.wav", &d).await;
    add(&two, "b1", "/d/b1.wav", &d).await;
    add(&two, "b2", "/d/b2.wav", &d).await;
    let c1 = claim(&one, 10).await;
    assert_eq!(c1.len(), 1);
    assert_eq!(c1[0].meta["recording_id"], "a1");
    assert!(two.next_due().await.unwrap().is_some());
    assert_eq!(one.next_due().await.unwrap(), None);
    let c2 = claim(&two, 1).await;
    assert_eq!(c2[0].meta["recording_id"], "b1");
    // A restart of n2 takes back only its own claims.
    assert_eq!(two.recover_deliveries().await.unwrap(), 1);
    assert_eq!(
        one.recording::<Value>("a1").await.unwrap().unwrap().state,
        RecordingState::Uploading
    );
    assert!(one.has_recording_path("/d/a1.wav").await.unwrap());
    assert!(!one.has_recording_path("/d/b1.wav").await.unwrap());
    let paths = two.recording_paths_in("/d").await.unwrap();
    assert_eq!(paths.len(), 2);
    assert!(paths.contains("/d/b1.wav") && paths.contains("/d/b2.wav"));
    let listed = one.recordings::<Value>(&Filter::default()).await.unwrap();
    let mut nodes: HashMap<String, usize> = HashMap::new();
    for r in &listed {
        *nodes.entry(r.node.clone()).or_default() += 1;
    }
    assert_eq!(nodes, HashMap::from([("n1".into(), 1), ("n2".into(), 2)]));
    let only_two = one
        .recordings::<Value>(&Filter {
            node: Some("n2".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(only_two.len(), 2);
}

pub(super) async fn reassigning_a_gone_node(open: &Opener) {
    let (gone, heir) = (
        open.open().await.for_node("gone").await.unwrap(),
        open.open().await.for_node("heir").await.unwrap(),
    );
    let d = [dest("http://a/", UploadMethod::Put)];
    add(&gone, "g1", "/d/g1.wav", &d).await;
    add(&gone, "g2", "/d/g2.wav", &d).await;
    add(&heir, "h1", "/d/h1.wav", &d).await;
    assert_eq!(
        claim(&gone, 1).await.len(),
        1,
        "g1 was being uploaded when it died"
    );
    assert_eq!(heir.reassign("gone", "heir", Some("g2")).await.unwrap(), 1);
    assert_eq!(heir.reassign("gone", "heir", None).await.unwrap(), 1);
    assert_eq!(heir.reassign("gone", "heir", None).await.unwrap(), 0);
    let g1 = heir.recording::<Value>("g1").await.unwrap().unwrap();
    assert_eq!(
        (g1.node.as_str(), g1.state),
        ("heir", RecordingState::Pending)
    );
    let ids: Vec<String> = claim(&heir, 10)
        .await
        .into_iter()
        .map(|c| c.meta["recording_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(claim(&gone, 10).await.is_empty());
    assert!(heir.has_recording_path("/d/g1.wav").await.unwrap());
}

pub(super) async fn racing_claims_never_share_a_delivery(open: &Opener) {
    let handles = [
        open.open().await.for_node("n").await.unwrap(),
        open.open().await.for_node("n").await.unwrap(),
    ];
    let d = [
        dest("http://a/", UploadMethod::Put),
        dest("http://b/", UploadMethod::Put),
    ];
    for i in 0..150 {
        add(
            &handles[0],
            &format!("r{i:03}"),
            &format!("/d/r{i:03}.wav"),
            &d,
        )
        .await;
    }
    let got: Vec<Vec<(String, String)>> = racing(&handles, 6, |s| async move {
        let mut mine = Vec::new();
        loop {
            let batch = claim(&s, 7).await;
            if batch.is_empty() {
                break;
            }
            for c in batch {
                let id = c.meta["recording_id"].as_str().unwrap().to_string();
                mine.push((id, c.url));
            }
        }
        mine
    })
    .await;
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (id, url) in got.iter().flatten() {
        *seen.entry((id.clone(), url.clone())).or_default() += 1;
    }
    assert_eq!(seen.len(), 300, "every delivery claimed");
    assert!(
        seen.values().all(|&n| n == 1),
        "a delivery claimed twice: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        got.iter().filter(|w| !w.is_empty()).count() >= 2,
        "the workers did race"
    );
}

pub(super) async fn a_replaced_recording_starts_without_its_old_deliveries(open: &Opener) {
    let s = open.open().await;
    add(&s, "r", "/d/r.wav", &[dest("http://a/", UploadMethod::Put)]).await;
    assert_eq!(
        add(
            &s,
            "r",
            "/d/r.wav",
            &[dest("http://b/", UploadMethod::Post)]
        )
        .await,
        RecordingState::Pending
    );
    let row = s.recording::<Value>("r").await.unwrap().unwrap();
    let urls: Vec<&str> = row.deliveries.iter().map(|d| d.url.as_str()).collect();
    assert_eq!(urls, ["http://b/"]);
}

/// What a restart uses to take up the watches of files FreeSWITCH may still write: this
/// node's rows created since a time whose metadata names a field.
pub(super) async fn rows_mentioning_a_field_are_found_per_node_and_by_age(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    async fn put(s: &Store, id: &str, meta: Value) {
        s.add_recording(&NewRecording {
            id,
            account_id: Some("acc"),
            call_id: "c",
            file_path: &format!("/r/{id}.wav"),
            destinations: &[dest("http://a/", UploadMethod::Put)],
            meta: &meta,
        })
        .await
        .unwrap();
    }
    let before = now_us();
    put(
        &one,
        "watched",
        json!({"id": "watched", "may_grow_until_us": 9}),
    )
    .await;
    put(&one, "plain", json!({"id": "plain"})).await;
    put(
        &one,
        "named-in-a-value",
        json!({"id": "x", "note": "may_grow_until_us"}),
    )
    .await;
    put(
        &two,
        "other-node",
        json!({"id": "o", "may_grow_until_us": 9}),
    )
    .await;
    let found: Vec<(String, Value)> = one
        .mentioning_since(before, "may_grow_until_us")
        .await
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["watched"], "the field, not a value; this node only");
    assert_eq!(found[0].1["may_grow_until_us"], 9);
    let later: Vec<(String, Value)> = one
        .mentioning_since(now_us() + 1_000_000, "may_grow_until_us")
        .await
        .unwrap();
    assert!(later.is_empty(), "rows older than the window are not read");
}
