//! Erasure on request, retention's pass and decision records.

use super::recordings::{claim, dest};
use super::*;

pub(super) async fn add_to(
    s: &Store,
    id: &str,
    account: &str,
    dests: &[Destination],
) -> RecordingState {
    s.add_recording(&NewRecording {
        id,
        account_id: Some(account),
        call_id: &format!("call-{id}"),
        file_path: &format!("/d/{id}.wav"),
        destinations: dests,
        meta: &json!({"recording_id": id}),
    })
    .await
    .unwrap()
}

/// Erasure on request: never a recording still recording or uploading, never through another
/// account, never another node's; a removed recording takes its deliveries with it.
pub(super) async fn erasure_refuses_busy_foreign_and_other_nodes_recordings(open: &Opener) {
    use callrec::store::retention::Erasure;
    let s = open.open().await.for_node("n1").await.unwrap();
    let other_node = open.open().await.for_node("n2").await.unwrap();
    let d = [
        dest("http://a/", UploadMethod::Put),
        dest("http://b/", UploadMethod::Put),
    ];
    add_to(&s, "kept", "acc", &d).await;
    add_to(&s, "up", "acc", &d[..1]).await;
    add_to(&other_node, "there", "acc", &[]).await;
    s.journal_recording(&NewRecording {
        id: "live",
        account_id: Some("acc"),
        call_id: "call-live",
        file_path: "/d/live.wav",
        destinations: &[],
        meta: &json!({"recording_id": "live"}),
    })
    .await
    .unwrap();
    let up = claim(&s, 10).await;
    assert!(up.iter().any(|c| c.meta["recording_id"] == "up"));
    assert_eq!(
        s.erase_recording("nope", Some("acc")).await.unwrap(),
        Erasure::Unknown
    );
    assert_eq!(
        s.erase_recording("kept", Some("other")).await.unwrap(),
        Erasure::Unknown
    );
    assert_eq!(
        s.erase_recording("live", Some("acc")).await.unwrap(),
        Erasure::Busy(RecordingState::Recording)
    );
    assert_eq!(
        s.erase_recording("up", Some("acc")).await.unwrap(),
        Erasure::Busy(RecordingState::Uploading)
    );
    assert_eq!(
        s.erase_recording("there", Some("acc")).await.unwrap(),
        Erasure::Elsewhere("n2".into())
    );
    // "kept" had both deliveries claimed above: settle them back to pending first.
    for c in up.iter().filter(|c| c.meta["recording_id"] == "kept") {
        s.settle(
            "kept",
            &dest(&c.url, c.method),
            &Outcome::Retry {
                next_us: now_us() + 3_600_000_000,
                error: "x".into(),
                status: None,
            },
        )
        .await
        .unwrap();
    }
    let Erasure::Removed(r) = s.erase_recording("kept", Some("acc")).await.unwrap() else {
        panic!("removed")
    };
    assert_eq!(
        (r.file_path.as_str(), r.call_id.as_str()),
        ("/d/kept.wav", "call-kept")
    );
    assert!(s.recording::<Value>("kept").await.unwrap().is_none());
    assert!(
        claim(&s, 10).await.is_empty(),
        "its pending deliveries are cancelled"
    );
    assert_eq!(
        s.recordings_of_call(Some("acc"), "call-there")
            .await
            .unwrap(),
        ["there"]
    );
    assert!(s
        .recordings_of_call(Some("x"), "call-there")
        .await
        .unwrap()
        .is_empty());
    let Erasure::Removed(_) = other_node.erase_recording("there", None).await.unwrap() else {
        panic!("its own node erases it")
    };
}

/// Retention: only `stored` and `delivered` recordings of this node created before their
/// cutoff; an account's own limit replaces the default for it.
pub(super) async fn retention_takes_only_kept_recordings_past_their_cutoff(open: &Opener) {
    use callrec::store::retention::Cutoffs;
    let s = open.open().await.for_node("n1").await.unwrap();
    let other_node = open.open().await.for_node("n2").await.unwrap();
    add_to(&s, "old-stored", "a", &[]).await;
    std::thread::sleep(std::time::Duration::from_millis(2));
    add_to(&s, "old-stored-2", "a", &[]).await;
    add_to(
        &s,
        "old-pending",
        "a",
        &[dest("http://a/", UploadMethod::Put)],
    )
    .await;
    add_to(
        &s,
        "old-failed",
        "a",
        &[dest("http://f/", UploadMethod::Put)],
    )
    .await;
    add_to(&s, "old-own", "b", &[]).await;
    add_to(&other_node, "old-there", "a", &[]).await;
    for c in claim(&s, 10).await {
        let id = c.meta["recording_id"].as_str().unwrap().to_string();
        let failed = Outcome::Failed {
            error: "HTTP 404".into(),
            status: Some(404),
        };
        let retry = Outcome::Retry {
            next_us: now_us() + 3_600_000_000,
            error: "x".into(),
            status: None,
        };
        let o = if id == "old-failed" { failed } else { retry };
        s.settle(&id, &dest(&c.url, c.method), &o).await.unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(2));
    let boundary = now_us();
    std::thread::sleep(std::time::Duration::from_millis(2));
    add_to(&s, "new-stored", "a", &[]).await;
    // Default cutoff at the boundary; account b keeps everything (its cutoff is long ago).
    let cut = Cutoffs {
        default_before_us: Some(boundary),
        accounts: vec![("b".into(), 1)],
    };
    let mut taken: Vec<String> = s
        .take_expired(&cut, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(taken.len(), 1, "bounded by the batch");
    taken.extend(
        s.take_expired(&cut, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id),
    );
    assert_eq!(taken, ["old-stored", "old-stored-2"], "oldest first");
    for id in ["old-pending", "old-failed", "old-own", "new-stored"] {
        assert!(
            s.recording::<Value>(id).await.unwrap().is_some(),
            "{id} stays"
        );
    }
    assert!(other_node
        .recording::<Value>("old-there")
        .await
        .unwrap()
        .is_some());
    // b's own limit, now past: its recording goes; without a default, a's stay.
    let cut = Cutoffs {
        default_before_us: None,
        accounts: vec![("b".into(), boundary)],
    };
    let taken: Vec<String> = s
        .take_expired(&cut, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(taken, ["old-own"]);
    assert!(s.recording::<Value>("new-stored").await.unwrap().is_some());
}

pub(super) async fn decision_records_are_found_by_party_call_and_outcome_and_pruned(open: &Opener) {
    use callrec::store::decisions::{DecisionFilter, NewDecision, Outcome as Happened};
    let s = open.open().await.for_node("n1").await.unwrap();
    let other = open.open().await.for_node("n2").await.unwrap();
    let d = |id: &str,
             call: &str,
             acc: Option<&str>,
             at: u64,
             caller: &str,
             callee: &str,
             planned: u32| {
        NewDecision {
            id: id.into(),
            call_id: call.into(),
            account_id: acc.map(str::to_string),
            created_us: at,
            caller: caller.into(),
            callee: callee.into(),
            planned,
            body: json!({"call_id": call, "planned": planned}).to_string(),
        }
    };
    s.add_decisions(&[
        d("d1", "c1", Some("a"), 1_000, "+100", "200", 0),
        d("d2", "c2", Some("a"), 2_000, "300", "+100", 2),
        d("d3", "c3", Some("b"), 3_000, "+100", "200", 1),
    ])
    .await
    .unwrap();
    other
        .add_decisions(&[d("d4", "c4", None, 4_000, "9", "8", 0)])
        .await
        .unwrap();
    // The same record twice is kept once.
    s.add_decisions(&[d("d1", "c1", Some("a"), 1_000, "+100", "200", 0)])
        .await
        .unwrap();
    async fn ids_of(s: &Store, f: DecisionFilter) -> Vec<String> {
        s.decisions(&DecisionFilter { limit: 100, ..f })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }
    assert_eq!(
        ids_of(&s, DecisionFilter::default()).await,
        ["d4", "d3", "d2", "d1"]
    );
    let in_a = DecisionFilter {
        account_id: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(ids_of(&s, in_a.clone()).await, ["d2", "d1"]);
    // As caller or as callee, within the account only.
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                party: Some("+100".into()),
                ..in_a.clone()
            }
        )
        .await,
        ["d2", "d1"]
    );
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                party: Some("+100".into()),
                ..Default::default()
            }
        )
        .await,
        ["d3", "d2", "d1"]
    );
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                recorded: Some(false),
                ..in_a.clone()
            }
        )
        .await,
        ["d1"]
    );
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                since_us: Some(1_500),
                until_us: Some(3_500),
                ..Default::default()
            }
        )
        .await,
        ["d3", "d2"]
    );
    // Pages follow (created_us, id), never repeating or skipping a row.
    let first = s
        .decisions(&DecisionFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let last = first.last().unwrap();
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                after: Some((last.created_us, last.id.clone())),
                ..Default::default()
            }
        )
        .await,
        ["d2", "d1"]
    );
    assert_eq!(first[1].node, "n1");
    assert_eq!(first[0].node, "n2");
    assert_eq!(first[1].body["planned"], 1);
    // Outcomes, written before or after the record, come with the call's newest record.
    s.add_outcomes(&[
        Happened {
            call_id: "c2".into(),
            at_us: 2_500,
            event: "recording.started".into(),
            recording_id: Some("r1".into()),
            reason: None,
        },
        Happened {
            call_id: "c2".into(),
            at_us: 2_600,
            event: "recording.discarded".into(),
            recording_id: Some("r1".into()),
            reason: Some("shorter than record_min_sec".into()),
        },
    ])
    .await
    .unwrap();
    let (row, outcomes) = s.decision_of_call(Some("a"), "c2").await.unwrap().unwrap();
    assert_eq!(row.id, "d2");
    let events: Vec<&str> = outcomes.iter().map(|o| o.event.as_str()).collect();
    assert_eq!(events, ["recording.started", "recording.discarded"]);
    assert!(
        s.decision_of_call(Some("b"), "c2").await.unwrap().is_none(),
        "another account's call"
    );
    assert!(s.decision_of_call(None, "c2").await.unwrap().is_some());
    // Pruning: by age, then by the row bound, a batch at a time.
    assert_eq!(s.prune_decisions(1_500, 1_000, 10).await.unwrap(), 1);
    assert_eq!(
        ids_of(&s, DecisionFilter::default()).await,
        ["d4", "d3", "d2"]
    );
    assert_eq!(s.prune_decisions(0, 2, 10).await.unwrap(), 1);
    assert_eq!(ids_of(&s, DecisionFilter::default()).await, ["d4", "d3"]);
    assert!(s.decision_of_call(None, "c2").await.unwrap().is_none());
    assert_eq!(s.prune_decisions(0, 2, 10).await.unwrap(), 0);
    // Erasure on request: a call's records, in its account only.
    assert_eq!(
        s.erase_decisions(Some("a"), "c3").await.unwrap(),
        0,
        "c3 is b's"
    );
    assert_eq!(s.erase_decisions(Some("b"), "c3").await.unwrap(), 1);
    assert_eq!(ids_of(&s, DecisionFilter::default()).await, ["d4"]);
    assert_eq!(other.erase_decisions(None, "c4").await.unwrap(), 1);
}
