//! Tenant isolation of the HTTP API: every collection × verb × {own token, other account's
//! token, admin} × {own id, an id that exists only in the other account}, each cell on a fresh
//! server, and after each the other account's documents and recordings are byte-for-byte what
//! they were.

mod support;

use callrec::rules::{AudioFormat, Destination, UploadMethod};
use callrec::store::{Kind, Scope};
use callrec::uploader::{spool, FinishedRecording};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{start, Api};

const COLLECTIONS: [(&str, Kind); 4] = [
    ("users", Kind::User),
    ("devices", Kind::Device),
    ("callflows", Kind::Callflow),
    ("webhooks", Kind::Webhook),
];

/// A document of collection `coll` named `name` (a webhook needs its `uri` and `events`).
fn doc(coll: &str, name: &str) -> Value {
    let mut d = json!({ "name": name });
    if coll == "webhooks" {
        d["uri"] = json!("https://203.0.113.10/hooks");
        d["events"] = json!(["recording.started"]);
    }
    d
}
/// B's documents are at this revision (written three times); A's at 1.
const B_REV: &str = "3";

struct Tenants {
    api: Api,
    /// Account A's token and account B's token.
    a: String,
    b: String,
}

fn recording(id: &str, account: &str) -> FinishedRecording {
    FinishedRecording {
        call: callrec::uploader::CallMeta {
            call_id: format!("call-{id}"),
            account_id: Some(account.into()),
            user_id: None,
            device_id: None,
            caller_id_name: format!("secret-of-{account}"),
            caller_id_number: "1555".into(),
            callee_number: "1000".into(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        recording_id: id.into(),
        start_us: 1_795_459_961_000_000,
        duration_ms: 1000,
        format: AudioFormat::Wav,
        sample_rate: None,
        stereo: false,
        file_path: format!("/nowhere/{id}.wav"),
        size: 16,
        destinations: vec![Destination {
            url: "https://rec.example.com/x/".into(),
            method: UploadMethod::Put,
            by_account: false,
        }],
        keep_local: false,
        origin: "test".into(),
        completion_cause: "success-silence".into(),
        sequence: 0,
        kind: Default::default(),
        may_grow_until_us: None,
        pauses: Vec::new(),
        encryption: None,
        encrypt_to: None,
    }
}

async fn tenants() -> Tenants {
    let api = start().await;
    for acc in ["A", "B"] {
        let (s, _) = api
            .admin(
                "PUT",
                &format!("/v2/accounts/{acc}"),
                Some(json!({"data": {"name": format!("secret-of-{acc}")}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    for (coll, _) in COLLECTIONS {
        for n in 0..3 {
            let mut data = doc(coll, "secret-of-B");
            data["n"] = json!(n);
            let (s, _) = api
                .admin(
                    "PUT",
                    &format!("/v2/accounts/B/{coll}/b-doc"),
                    Some(json!({ "data": data })),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        let (s, _) = api
            .admin(
                "PUT",
                &format!("/v2/accounts/A/{coll}/a-doc"),
                Some(json!({"data": doc(coll, "A's")})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    spool::enqueue(&api.store, &recording("rec-a", "A"))
        .await
        .unwrap();
    spool::enqueue(&api.store, &recording("rec-b", "B"))
        .await
        .unwrap();
    let a = api
        .store
        .create_token(&Scope::Account("A".into()))
        .await
        .unwrap();
    let b = api
        .store
        .create_token(&Scope::Account("B".into()))
        .await
        .unwrap();
    Tenants { api, a, b }
}

/// Everything account B has, as text.
async fn snapshot_b(api: &Api) -> String {
    let mut out = String::new();
    for kind in [
        Kind::Account,
        Kind::User,
        Kind::Device,
        Kind::Callflow,
        Kind::Webhook,
    ] {
        for d in api.store.list(kind, "B").await.unwrap() {
            out += &format!("{} {} {} {}\n", kind.as_str(), d.id, d.rev, d.body);
        }
    }
    let recs = spool::list(
        &api.store,
        &spool::Filter {
            account_id: Some("B".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    out + &serde_json::to_string(&recs).unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Own,
    Other,
    Admin,
}

#[derive(Clone, Copy, Debug)]
enum Verb {
    Get,
    Put,
    PutIfMatch,
    Patch,
    PatchIfMatch,
    Delete,
    DeleteIfMatch,
    List,
    Create,
}

const VERBS: [Verb; 9] = [
    Verb::Get,
    Verb::Put,
    Verb::PutIfMatch,
    Verb::Patch,
    Verb::PatchIfMatch,
    Verb::Delete,
    Verb::DeleteIfMatch,
    Verb::List,
    Verb::Create,
];

/// What a request through account A's path must answer, for `id` = `a-doc` (own) or `b-doc`
/// (exists only in B). `None`: any 2xx is wrong unless listed; B's token never gets in.
fn expected(who: Who, verb: Verb, own_id: bool) -> StatusCode {
    use StatusCode as S;
    if who == Who::Other {
        return S::FORBIDDEN;
    }
    match (verb, own_id) {
        (Verb::Get, true) => S::OK,
        (Verb::Get, false) => S::NOT_FOUND,
        // A PUT through A creates or replaces A's own document; b-doc becomes A's b-doc.
        (Verb::Put, _) => S::OK,
        // B's revision never matches anything in A.
        (Verb::PutIfMatch, _) => S::CONFLICT,
        (Verb::Patch, true) => S::OK,
        (Verb::Patch, false) => S::NOT_FOUND,
        (Verb::PatchIfMatch, true) => S::CONFLICT,
        (Verb::PatchIfMatch, false) => S::NOT_FOUND,
        (Verb::Delete, true) => S::OK,
        (Verb::Delete, false) => S::NOT_FOUND,
        (Verb::DeleteIfMatch, true) => S::CONFLICT,
        (Verb::DeleteIfMatch, false) => S::NOT_FOUND,
        (Verb::List, _) => S::OK,
        (Verb::Create, true) => S::CONFLICT,
        (Verb::Create, false) => S::CREATED,
    }
}

async fn request(t: &Tenants, who: Who, verb: Verb, coll: &str, id: &str) -> (StatusCode, Value) {
    let token = match who {
        Who::Own => &t.a,
        Who::Other => &t.b,
        Who::Admin => &t.api.admin,
    };
    let one = format!("{}/v2/accounts/A/{coll}/{id}", t.api.base);
    let all = format!("{}/v2/accounts/A/{coll}", t.api.base);
    let body = json!({"data": doc(coll, "from-A")});
    let http = &t.api.http;
    let r = match verb {
        Verb::Get => http.get(&one),
        Verb::Put => http.put(&one).json(&body),
        Verb::PutIfMatch => http.put(&one).header("If-Match", B_REV).json(&body),
        Verb::Patch => http.patch(&one).json(&body),
        Verb::PatchIfMatch => http.patch(&one).header("If-Match", B_REV).json(&body),
        Verb::Delete => http.delete(&one),
        Verb::DeleteIfMatch => http.delete(&one).header("If-Match", B_REV),
        Verb::List => http.get(&all),
        Verb::Create => {
            let mut data = doc(coll, "from-A");
            data["id"] = json!(id);
            http.post(&all).json(&json!({ "data": data }))
        }
    };
    t.api.send(r.header("X-Auth-Token", token)).await
}

#[tokio::test]
async fn isolation_matrix_documents() {
    let mut cells = 0;
    for (coll, kind) in COLLECTIONS {
        for who in [Who::Own, Who::Other, Who::Admin] {
            for verb in VERBS {
                for own_id in [true, false] {
                    let t = tenants().await;
                    let before = snapshot_b(&t.api).await;
                    let id = if own_id { "a-doc" } else { "b-doc" };
                    let (status, v) = request(&t, who, verb, coll, id).await;
                    let cell = format!("{coll} {verb:?} by {who:?} on {id}");
                    assert_eq!(status, expected(who, verb, own_id), "{cell}: {v}");
                    assert_eq!(
                        v["status"],
                        if status.is_success() {
                            "success"
                        } else {
                            "error"
                        },
                        "{cell}: an envelope"
                    );
                    assert!(
                        !v.to_string().contains("secret-of-B"),
                        "{cell} revealed B's data: {v}"
                    );
                    assert_eq!(snapshot_b(&t.api).await, before, "{cell} changed B's data");
                    match (verb, status) {
                        (Verb::List, StatusCode::OK) => {
                            let ids: Vec<&str> = v["data"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|d| d["id"].as_str().unwrap())
                                .collect();
                            assert_eq!(ids, ["a-doc"], "{cell}");
                        }
                        (Verb::Put | Verb::Create, s) if s.is_success() && !own_id => {
                            // A's own new document, not B's moved or re-revised.
                            assert_eq!(v["revision"], "1", "{cell}");
                            let mine = t.api.store.get(kind, "A", "b-doc").await.unwrap().unwrap();
                            assert_eq!(mine.body["name"], "from-A", "{cell}");
                        }
                        _ => {}
                    }
                    cells += 1;
                }
            }
        }
    }
    assert_eq!(cells, 4 * 3 * 9 * 2);
}

#[tokio::test]
async fn isolation_matrix_accounts_and_recordings() {
    // The account document itself: `/v2/accounts/{id}` (the id is the account).
    for who in [Who::Own, Who::Other, Who::Admin] {
        for (method, body) in [
            ("GET", None),
            ("PUT", Some(json!({"data": {"name": "from-A"}}))),
            ("PATCH", Some(json!({"data": {"name": "from-A"}}))),
        ] {
            for target in ["A", "B"] {
                let t = tenants().await;
                let before = snapshot_b(&t.api).await;
                let token = match who {
                    Who::Own => t.a.clone(),
                    Who::Other => t.b.clone(),
                    Who::Admin => t.api.admin.clone(),
                };
                let (s, v) = t
                    .api
                    .call(
                        method,
                        &format!("/v2/accounts/{target}"),
                        Some(&token),
                        body.clone(),
                    )
                    .await;
                let cell = format!("account {target} {method} by {who:?}");
                // A's token reaches only A; B's token only B; admin both.
                let allowed = matches!(
                    (who, target),
                    (Who::Own, "A") | (Who::Other, "B") | (Who::Admin, _)
                );
                let want = if allowed {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(s, want, "{cell}: {v}");
                if !(allowed && target == "B") {
                    assert_eq!(snapshot_b(&t.api).await, before, "{cell} changed B's data");
                    assert!(!v.to_string().contains("secret-of-B"), "{cell}: {v}");
                }
            }
        }
    }
    // Recordings: one, and the listing.
    let t = tenants().await;
    for who in [Who::Own, Who::Other, Who::Admin] {
        let token = match who {
            Who::Own => t.a.clone(),
            Who::Other => t.b.clone(),
            Who::Admin => t.api.admin.clone(),
        };
        for (id, own) in [("rec-a", true), ("rec-b", false)] {
            let (s, v) = t
                .api
                .call(
                    "GET",
                    &format!("/v2/accounts/A/recordings/{id}"),
                    Some(&token),
                    None,
                )
                .await;
            let want = match (who, own) {
                (Who::Other, _) => StatusCode::FORBIDDEN,
                (_, true) => StatusCode::OK,
                (_, false) => StatusCode::NOT_FOUND,
            };
            assert_eq!(s, want, "recording {id} by {who:?}: {v}");
            assert!(!v.to_string().contains("secret-of-B"));
            // The control route: the same tenancy; a finished recording of A is 409.
            let before = snapshot_b(&t.api).await;
            let (s, v) = t
                .api
                .call(
                    "PATCH",
                    &format!("/v2/accounts/A/recordings/{id}"),
                    Some(&token),
                    Some(json!({"data": {"status": "paused"}})),
                )
                .await;
            let want = match (who, own) {
                (Who::Other, _) => StatusCode::FORBIDDEN,
                (_, true) => StatusCode::CONFLICT,
                (_, false) => StatusCode::NOT_FOUND,
            };
            assert_eq!(s, want, "PATCH recording {id} by {who:?}: {v}");
            assert_eq!(snapshot_b(&t.api).await, before);
            assert!(!v.to_string().contains("secret-of-B"));
            // Erasure, by id and by call: B's recording is never reached through A's path.
            if !own {
                for path in [
                    format!("/v2/accounts/A/recordings/{id}"),
                    format!("/v2/accounts/A/recordings?call_id=call-{id}"),
                ] {
                    let (s, v) = t.api.call("DELETE", &path, Some(&token), None).await;
                    let want = match who {
                        Who::Other => StatusCode::FORBIDDEN,
                        _ => StatusCode::NOT_FOUND,
                    };
                    assert_eq!(s, want, "DELETE {path} by {who:?}: {v}");
                    assert_eq!(snapshot_b(&t.api).await, before, "DELETE {path} by {who:?}");
                    assert!(!v.to_string().contains("secret-of-B"));
                }
            }
        }
        // A's own recording, erased by B's token: refused before anything is looked at.
        if who == Who::Other {
            let (s, _) = t
                .api
                .call(
                    "DELETE",
                    "/v2/accounts/A/recordings/rec-a",
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::FORBIDDEN);
        }
        let (s, v) = t
            .api
            .call("GET", "/v2/accounts/A/channels", Some(&token), None)
            .await;
        let want = if who == Who::Other {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(s, want, "channels by {who:?}: {v}");
        let (s, v) = t
            .api
            .call("GET", "/v2/accounts/A/recordings", Some(&token), None)
            .await;
        if who == Who::Other {
            assert_eq!(s, StatusCode::FORBIDDEN);
        } else {
            assert_eq!(s, StatusCode::OK);
            let ids: Vec<&str> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["recording_id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, ["rec-a"]);
        }
    }
}

/// The reproduction, step by step.
#[tokio::test]
async fn another_accounts_user_cannot_be_taken_by_guessing_its_id() {
    let api = start().await;
    api.admin(
        "PUT",
        "/v2/accounts/A",
        Some(json!({"data": {"name": "A"}})),
    )
    .await;
    api.admin(
        "PUT",
        "/v2/accounts/B",
        Some(json!({"data": {"name": "B"}})),
    )
    .await;
    let bob = json!({"first_name": "Bob", "record_call": {"url": "https://b.example/"}});
    let (s, _) = api
        .admin(
            "PUT",
            "/v2/accounts/B/users/u1",
            Some(json!({ "data": bob })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let before = api.store.get(Kind::User, "B", "u1").await.unwrap().unwrap();
    let token_a = api
        .store
        .create_token(&Scope::Account("A".into()))
        .await
        .unwrap();
    // Mallory, with A's token, writes "u1" in A: that is A's own u1 (revision 1)…
    let (s, v) = api
        .call(
            "PUT",
            "/v2/accounts/A/users/u1",
            Some(&token_a),
            Some(json!({"data": {"first_name": "Mallory", "record_call": {"url": "https://evil.example/"}}})),
        )
        .await;
    assert_eq!((s, &v["revision"]), (StatusCode::OK, &json!("1")));
    // …and cannot reach B's at all.
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        let (s, _) = api
            .call(
                method,
                "/v2/accounts/B/users/u1",
                Some(&token_a),
                Some(json!({"data": {"first_name": "Mallory"}})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method}");
    }
    // B's document is intact, at its revision, with its URL.
    let (s, v) = api.admin("GET", "/v2/accounts/B/users/u1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["first_name"], "Bob");
    assert_eq!(v["data"]["record_call"]["url"], "https://b.example/");
    assert_eq!(v["revision"], "1");
    assert_eq!(
        api.store.get(Kind::User, "B", "u1").await.unwrap().unwrap(),
        before
    );
}

/// The destination policy by writer (docs/api.md "Where recordings may go"): link-local is
/// refused for every token, this host's own addresses for account tokens; the refused field is
/// named, in a document's `record_call.url`, a webhook's `uri` and a callflow module's `url`.
#[tokio::test]
async fn destination_policy_by_writer_names_the_refused_field() {
    let t = tenants().await;
    for (url, admin_ok, account_ok) in [
        ("http://169.254.169.254/latest/meta-data/", false, false),
        ("http://[fe80::1]/x/", false, false),
        ("http://127.0.0.1:9/x/", true, false),
        ("http://localhost:9/x/", true, false),
        ("http://10.1.2.3/x/", true, true),
        ("https://203.0.113.7/x/", true, true),
    ] {
        for (who, token, ok) in [
            (Who::Admin, t.api.admin.clone(), admin_ok),
            (Who::Own, t.a.clone(), account_ok),
        ] {
            // The same policy for a recording's URL and for a webhook's `uri`.
            for (path, patch, field) in [
                (
                    "/v2/accounts/A/users/a-doc",
                    json!({"record_call": {"format": "wav", "url": url}}),
                    "record_call.url",
                ),
                (
                    "/v2/accounts/A/webhooks/a-doc",
                    json!({ "uri": url }),
                    "uri",
                ),
            ] {
                let before = snapshot_b(&t.api).await;
                let (s, v) = t
                    .api
                    .call("PATCH", path, Some(&token), Some(json!({ "data": patch })))
                    .await;
                if ok {
                    assert_eq!(s, StatusCode::OK, "{url} by {who:?} in {field}: {v}");
                } else {
                    assert_eq!(s, StatusCode::BAD_REQUEST, "{url} by {who:?}: {v}");
                    assert!(
                        v["data"][field]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("destination_policy")),
                        "{url} by {who:?} in {field}: {v}"
                    );
                }
                assert_eq!(snapshot_b(&t.api).await, before);
            }
        }
    }
    let flow = json!({"data": {"numbers": ["5000"], "flow": {"module": "record_call",
        "data": {"action": "start", "url": "http://169.254.169.254/x/"}}}});
    let (s, v) = t
        .api
        .call(
            "PUT",
            "/v2/accounts/A/callflows/cf-x",
            Some(&t.a),
            Some(flow),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["data"]["flow.data.url"].is_object(), "{v}");
}

/// Who wrote a document is recorded (`pvt_writer`, never shown, never taken from a request), so
/// its URLs are held to the writer's row when a recording connects: an admin's patch of an
/// account's document leaves it the account's; an admin's whole write makes it the admin's.
#[tokio::test]
async fn the_writer_of_a_document_is_recorded_and_its_urls_carry_it() {
    use callrec::rules::documents::{parse, Settings};
    let t = tenants().await;
    let url = "https://203.0.113.7/x/";
    let body =
        json!({"data": {"record_call": {"format": "wav", "url": url}, "pvt_writer": "admin"}});
    async fn writer(api: &Api) -> (String, bool) {
        let d = api.store.get(Kind::User, "A", "w").await.unwrap().unwrap();
        let by_account = match parse(Kind::User, &d.body).unwrap() {
            Settings::User(u) => u.record_call.unwrap().url.unwrap().by_account(),
            _ => unreachable!(),
        };
        (
            d.body["pvt_writer"].as_str().unwrap().to_string(),
            by_account,
        )
    }
    let (s, v) = t
        .api
        .call(
            "PUT",
            "/v2/accounts/A/users/w",
            Some(&t.a),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["data"].get("pvt_writer").is_none(), "never shown: {v}");
    assert_eq!(
        writer(&t.api).await,
        ("account".into(), true),
        "the request's pvt_writer is ignored"
    );
    let (s, _) = t
        .api
        .admin(
            "PATCH",
            "/v2/accounts/A/users/w",
            Some(json!({"data": {"first_name": "Ann"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        writer(&t.api).await,
        ("account".into(), true),
        "an admin's patch keeps it"
    );
    let (s, v) = t.api.admin("GET", "/v2/accounts/A/users/w", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["data"].get("pvt_writer").is_none(), "{v}");
    let (s, _) = t
        .api
        .admin("PUT", "/v2/accounts/A/users/w", Some(body))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        writer(&t.api).await,
        ("admin".into(), false),
        "an admin's whole write"
    );
}
