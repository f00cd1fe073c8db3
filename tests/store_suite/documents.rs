//! Documents (revisions, conflicts, tenancy, the per-call lookups) and API tokens.

use super::*;

pub(super) fn user(name: &str) -> Value {
    json!({ "first_name": name })
}

pub(super) async fn revisions_and_conflicts(open: &Opener) {
    let s = open.open().await;
    let d = s
        .put(Kind::User, "a", "u1", user("Ann"), Expect::Any)
        .await
        .unwrap();
    assert_eq!((d.rev, &d.body["id"]), (Revision(1), &json!("u1")));
    let d = s
        .put(
            Kind::User,
            "a",
            "u1",
            user("Bo"),
            Expect::Revision(Revision(1)),
        )
        .await
        .unwrap();
    assert_eq!(d.rev, Revision(2));
    let e = s
        .put(
            Kind::User,
            "a",
            "u1",
            json!({}),
            Expect::Revision(Revision(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { current } if current == "2"));
    let e = s
        .put(Kind::User, "a", "u1", json!({}), Expect::Absent)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Exists));
    assert_eq!(
        s.get(Kind::User, "a", "u1").await.unwrap().unwrap().body["first_name"],
        "Bo"
    );
    assert_eq!(s.list(Kind::User, "a").await.unwrap().len(), 1);
    let e = s
        .delete(Kind::User, "a", "u1", Some(Revision(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { current } if current == "2"));
    assert!(s
        .delete(Kind::User, "a", "u1", Some(Revision(2)))
        .await
        .unwrap());
    assert!(!s.delete(Kind::User, "a", "u1", None).await.unwrap());
    assert!(s.get(Kind::User, "a", "u1").await.unwrap().is_none());
}

pub(super) async fn the_same_id_in_two_accounts_is_two_documents(open: &Opener) {
    let s = open.open().await;
    s.put(Kind::User, "b", "u1", user("Bob"), Expect::Any)
        .await
        .unwrap();
    let a = s
        .put(Kind::User, "a", "u1", user("Mallory"), Expect::Any)
        .await
        .unwrap();
    assert_eq!(a.rev, Revision(1));
    let b = s.get(Kind::User, "b", "u1").await.unwrap().unwrap();
    assert_eq!((b.rev, &b.body["first_name"]), (Revision(1), &json!("Bob")));
    assert!(matches!(
        s.put(Kind::User, "c", "u1", json!({}), Expect::Revision(Revision(1)))
            .await,
        Err(StoreError::Conflict { current }) if current.is_empty()
    ));
    assert!(!s.delete(Kind::User, "c", "u1", None).await.unwrap());
    assert!(s.delete(Kind::User, "a", "u1", None).await.unwrap());
    assert!(s.get(Kind::User, "b", "u1").await.unwrap().is_some());
    assert!(s.list(Kind::User, "a").await.unwrap().is_empty());
}

pub(super) async fn devices_by_sip_username_in_one_or_every_account(open: &Opener) {
    let s = open.open().await;
    for (acc, id, name) in [
        ("a", "d1", "alice"),
        ("b", "d2", "alice"),
        ("b", "d3", "bob"),
    ] {
        s.put(
            Kind::Device,
            acc,
            id,
            json!({"sip": {"username": name}}),
            Expect::Any,
        )
        .await
        .unwrap();
    }
    // A user whose body looks like a device's is not a device.
    s.put(
        Kind::User,
        "a",
        "u",
        json!({"sip": {"username": "alice"}}),
        Expect::Any,
    )
    .await
    .unwrap();
    let all = s.devices_by_sip_username(None, "alice").await.unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|d| (d.account_id.as_str(), d.id.as_str()))
        .collect();
    assert_eq!(keys, [("a", "d1"), ("b", "d2")]);
    let b = s.devices_by_sip_username(Some("b"), "alice").await.unwrap();
    assert_eq!((b[0].id.as_str(), b.len()), ("d2", 1));
    assert!(s
        .devices_by_sip_username(None, "carol")
        .await
        .unwrap()
        .is_empty());
}

pub(super) async fn any_recording_settings_sees_settings_and_callflow_modules(open: &Opener) {
    let s = open.open().await;
    assert!(!s.any_recording_settings().await.unwrap());
    s.put(Kind::User, "a", "u1", user("Ann"), Expect::Any)
        .await
        .unwrap();
    assert!(
        !s.any_recording_settings().await.unwrap(),
        "no settings in it"
    );
    s.put(
        Kind::Device,
        "a",
        "d1",
        json!({"call_recording": {"any": {"any": {"enabled": false}}}}),
        Expect::Any,
    )
    .await
    .unwrap();
    assert!(
        s.any_recording_settings().await.unwrap(),
        "disabled still counts"
    );
    assert!(s.delete(Kind::Device, "a", "d1", None).await.unwrap());
    assert!(!s.any_recording_settings().await.unwrap());
    s.put(
        Kind::Callflow,
        "a",
        "cf",
        json!({"numbers": ["1"], "flow": {"module": "record_call", "data": {}}}),
        Expect::Any,
    )
    .await
    .unwrap();
    assert!(
        s.any_recording_settings().await.unwrap(),
        "a record_call module"
    );
}

pub(super) async fn the_per_call_lookups_follow_every_write(open: &Opener) {
    let s = open.open().await;
    let cf = |numbers: Value| json!({"numbers": numbers, "flow": {"module": "device", "data": {}}});
    s.put(
        Kind::Callflow,
        "a",
        "cf1",
        cf(json!(["100", "200"])),
        Expect::Any,
    )
    .await
    .unwrap();
    s.put(
        Kind::Callflow,
        "b",
        "cf1",
        cf(json!(["200", 300, "200"])),
        Expect::Any,
    )
    .await
    .unwrap();
    assert_eq!(s.accounts_with_number("100").await.unwrap(), ["a"]);
    assert_eq!(s.accounts_with_number("200").await.unwrap(), ["a", "b"]);
    assert!(
        s.accounts_with_number("300").await.unwrap().is_empty(),
        "numbers are strings"
    );
    s.put(Kind::Callflow, "a", "cf1", cf(json!(["101"])), Expect::Any)
        .await
        .unwrap();
    assert!(s.accounts_with_number("100").await.unwrap().is_empty());
    assert_eq!(s.accounts_with_number("101").await.unwrap(), ["a"]);
    assert!(s.delete(Kind::Callflow, "b", "cf1", None).await.unwrap());
    assert!(s.accounts_with_number("200").await.unwrap().is_empty());
    s.put(
        Kind::User,
        "a",
        "u1",
        json!({"record_call": {}}),
        Expect::Any,
    )
    .await
    .unwrap();
    assert!(s.any_recording_settings().await.unwrap());
    s.put(Kind::User, "a", "u1", user("Ann"), Expect::Any)
        .await
        .unwrap();
    assert!(
        !s.any_recording_settings().await.unwrap(),
        "the settings were removed"
    );
}

pub(super) async fn every_document_in_key_order(open: &Opener) {
    let s = open.open().await;
    for (acc, kind, id) in [
        ("b", Kind::User, "u"),
        ("a", Kind::User, "Z"),
        ("a", Kind::User, "a"),
        ("a", Kind::Account, "a"),
        ("a", Kind::Device, "d"),
    ] {
        s.put(kind, acc, id, json!({}), Expect::Any).await.unwrap();
    }
    let keys: Vec<(String, &str, String)> = s
        .all_documents()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.account_id, d.kind.as_str(), d.id))
        .collect();
    let want = [
        ("a", "account", "a"),
        ("a", "device", "d"),
        ("a", "user", "Z"),
        ("a", "user", "a"),
        ("b", "user", "u"),
    ];
    let want: Vec<(String, &str, String)> = want
        .iter()
        .map(|(a, k, i)| (a.to_string(), *k, i.to_string()))
        .collect();
    assert_eq!(keys, want, "bytewise order, uppercase first");
    let ids: Vec<String> = s
        .list(Kind::User, "a")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["Z", "a"]);
}

pub(super) async fn racing_creates_of_one_document_make_one(open: &Opener) {
    let handles = [open.open().await, open.open().await];
    let barrier = Arc::new(Barrier::new(8));
    let joins: Vec<_> = (0..8)
        .map(|i| {
            let s = handles[i % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                s.put(Kind::User, "a", "new", json!({"n": i}), Expect::Absent)
                    .await
                    .map(|d| d.rev)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut results: Vec<Result<Revision, String>> = Vec::new();
    for j in joins {
        results.push(j.await.unwrap());
    }
    let made: Vec<&Revision> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made, [&Revision(1)], "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.contains("exists")));
}

pub(super) async fn a_write_through_one_handle_is_read_through_another(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    one.put(
        Kind::Account,
        "acc",
        "acc",
        json!({"record_call": {"format": "mp3"}}),
        Expect::Any,
    )
    .await
    .unwrap();
    let seen = two.get(Kind::Account, "acc", "acc").await.unwrap().unwrap();
    assert_eq!(seen.body["record_call"]["format"], "mp3");
    let t = one
        .create_token(&Scope::Account("acc".into()))
        .await
        .unwrap();
    assert_eq!(
        two.verify_token(&t).await.unwrap(),
        Some(Scope::Account("acc".into()))
    );
    two.put(
        Kind::Account,
        "acc",
        "acc",
        json!({}),
        Expect::Revision(Revision(1)),
    )
    .await
    .unwrap();
    assert_eq!(
        one.get(Kind::Account, "acc", "acc")
            .await
            .unwrap()
            .unwrap()
            .rev,
        Revision(2)
    );
}

pub(super) async fn tokens_verify_by_scope(open: &Opener) {
    let s = open.open().await;
    let t = s.create_token(&Scope::Account("a".into())).await.unwrap();
    assert_eq!(t.len(), 64);
    assert_eq!(
        s.verify_token(&t).await.unwrap(),
        Some(Scope::Account("a".into()))
    );
    assert_eq!(s.verify_token("nope").await.unwrap(), None);
    assert_eq!(s.verify_token(&t[..63]).await.unwrap(), None);
    let admin = s.create_token(&Scope::Admin).await.unwrap();
    assert_eq!(s.verify_token(&admin).await.unwrap(), Some(Scope::Admin));
}
