//! The operators' console and the API routes it reads (README: "The console"), against a real
//! `callrec serve` beside a simulated FreeSWITCH: decision records of a call recorded twice and
//! of a call not recorded, the listing's filters and pages, effective settings, signed audio
//! links with ranges, waveforms, retry, the page's security headers, and what an account token
//! cannot see. The browser half (`console_in_a_browser`) drives the page in Debian's chromium
//! through chromedriver (`support::browser`), and takes the README's screenshots.

mod support;

use std::time::Duration;

use callrec_sim::CallSpec;
use serde_json::{json, Value};
use support::node::{until, Node};
use support::process::Killed;

/// A node with two accounts' documents and two calls decided: `two` (Alice's outbound call,
/// recorded twice: the account's outbound rule and her device's stereo rule with a URL that
/// fails) and `none` (an outside caller, not recorded).
struct Lab {
    node: Node,
    _serve: Killed,
    admin: String,
    acc_token: String,
    other_token: String,
    two: String,
    none: String,
    _tmp: tempfile::TempDir,
}

async fn http(
    node: &Node,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = reqwest::Client::new().request(m, format!("http://127.0.0.1:{}{path}", node.api));
    if let Some(t) = token {
        r = r.header("X-Auth-Token", t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v, headers)
}

fn token(node: &Node, args: &[&str]) -> String {
    let mut a = vec!["token", "create"];
    a.extend_from_slice(args);
    let out = node.cli(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Alice (device `d-alice`, `1001`) calls `to` out of account `acc` and it is answered; returns
/// once callrec has started both her recordings.
async fn alice_calls(node: &Node, to: &str) -> callrec_sim::CallHandle {
    let call = callrec_sim::dial(
        format!("127.0.0.1:{}", node.listen).parse().unwrap(),
        CallSpec::new("1001", to)
            .caller_name("Alice")
            .auth_username("alice")
            .var("callrec_account_id", "acc"),
    )
    .await
    .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.wait_for_commands("api uuid_record", 2).await;
    call
}

impl Lab {
    async fn start() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let node = Node::sqlite(tmp.path(), "n1", "upload_give_up_after_s = 1\n");
        let serve = node.serve().await;
        let admin = node.admin_token();
        let acc_token = token(&node, &["--account", "acc"]);
        let other_token = token(&node, &["--account", "other"]);
        let put = |path: &'static str, body: Value| {
            let (node, admin) = (&node, admin.clone());
            async move {
                node.api("PUT", path, &admin, Some(json!({"data": body})))
                    .await
            }
        };
        put(
            "/v2/accounts/acc",
            json!({"name": "Acme", "call_recording": {"account": {"outbound": {"offnet": {"enabled": true, "format": "wav"}}}}}),
        )
        .await;
        put("/v2/accounts/other", json!({"name": "Other Ltd"})).await;
        put(
            "/v2/accounts/acc/users/u-alice",
            json!({"first_name": "Alice"}),
        )
        .await;
        put(
            "/v2/accounts/acc/devices/d-alice",
            json!({"name": "Alice desk", "owner_id": "u-alice", "sip": {"username": "alice"},
                   "record_call": {"format": "wav", "record_stereo": true, "url": "http://127.0.0.1:9/rec/"}}),
        )
        .await;
        let addr = format!("127.0.0.1:{}", node.listen).parse().unwrap();
        // Alice calls out: two recordings.
        let call = alice_calls(&node, "15557654321").await;
        call.advance(Duration::from_millis(1500));
        // Paused for a second mid-call (silence in the file: the waveform shows the gap).
        let live = node
            .api("GET", "/v2/accounts/acc/channels", &admin, None)
            .await;
        let ids: Vec<String> = live["data"][0]["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 2, "{live}");
        for (status, then) in [("paused", 1000), ("in-progress", 1500)] {
            for id in &ids {
                node.api(
                    "PATCH",
                    &format!("/v2/accounts/acc/recordings/{id}"),
                    &admin,
                    Some(json!({"data": {"status": status}})),
                )
                .await;
            }
            call.advance(Duration::from_millis(then));
        }
        call.hangup("NORMAL_CLEARING");
        assert_eq!(call.closed().await.recordings.len(), 2);
        let two = call.uuid.clone();
        // An outside caller: nothing to record.
        let call = callrec_sim::dial(
            addr,
            CallSpec::new("15559990000", "1000").var("callrec_account_id", "acc"),
        )
        .await
        .unwrap();
        // Hung up only once callrec has decided (a call gone before that has no decision).
        until("the outside call's decision", async || {
            let (_, v, _) = http(&node, "GET", "/v2/accounts/acc/calls", Some(&admin), None).await;
            (v["data"].as_array()?.len() == 2).then_some(())
        })
        .await;
        call.answer();
        call.advance(Duration::from_secs(2));
        call.hangup("NORMAL_CLEARING");
        assert!(call.closed().await.recordings.is_empty());
        let none = call.uuid.clone();
        let lab = Lab {
            node,
            _serve: serve,
            admin,
            acc_token,
            other_token,
            two,
            none,
            _tmp: tmp,
        };
        // Both records written, both recordings kept, the one with a URL given up on.
        until("the decisions, and the recordings settled", async || {
            let (_, calls, _) = lab.get("/v2/accounts/acc/calls", &lab.admin).await;
            let (_, recs, _) = lab.get("/v2/accounts/acc/recordings", &lab.admin).await;
            let states: Vec<&str> = recs["data"]
                .as_array()?
                .iter()
                .filter_map(|r| r["state"].as_str())
                .collect();
            (calls["data"].as_array()?.len() == 2
                && states.len() == 2
                && states.contains(&"failed")
                && states.contains(&"stored"))
            .then_some(())
        })
        .await;
        lab
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        http(&self.node, "GET", path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str) -> (u16, Value) {
        let (s, v, _) = http(&self.node, "POST", path, Some(token), None).await;
        (s, v)
    }

    async fn recording(&self, state: &str) -> Value {
        let (_, v, _) = self
            .get(
                &format!("/v2/accounts/acc/recordings?state={state}"),
                &self.admin,
            )
            .await;
        v["data"][0].clone()
    }
}

#[tokio::test]
async fn decisions_explain_a_call_recorded_twice_and_a_call_not_recorded() {
    let lab = Lab::start().await;
    let (s, d, _) = lab
        .get(
            &format!("/v2/accounts/acc/calls/{}/decision", lab.two),
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 200, "{d}");
    let dec = &d["data"]["decision"];
    assert_eq!(dec["account_how"], "channel variable");
    assert_eq!(dec["caller"]["device_id"], "d-alice");
    assert_eq!(dec["caller"]["user_id"], "u-alice");
    assert_eq!(
        dec["caller"]["how"],
        "device sip.username = sip_auth_username"
    );
    assert_eq!(dec["network"], "offnet");
    let rules: Vec<(String, bool)> = dec["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_string(),
                r["matched"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("config record_call".to_string(), false),
            ("account acc account-wide".to_string(), true),
            ("caller endpoint".to_string(), true),
            ("callee endpoint".to_string(), false),
        ]
    );
    assert_eq!(dec["planned"].as_array().unwrap().len(), 2);
    assert_eq!(
        dec["planned"][1]["destinations"],
        json!(["http://127.0.0.1:9/rec/"])
    );
    assert_eq!(d["data"]["recordings"].as_array().unwrap().len(), 2);
    let started = d["data"]["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["event"] == "recording.started")
        .count();
    assert_eq!(started, 2, "{}", d["data"]["outcomes"]);

    let (s, d, _) = lab
        .get(
            &format!("/v2/accounts/acc/calls/{}/decision", lab.none),
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 200);
    let dec = &d["data"]["decision"];
    assert_eq!(dec["planned"], json!([]));
    assert_eq!(
        dec["caller"]["how"],
        "no device has sip.username = sip_from_user"
    );
    assert_eq!(
        dec["rules"][1]["why"],
        "no call_recording.account cell for inbound offnet and no record_call"
    );
    assert_eq!(d["data"]["recordings"], json!([]));
    assert_eq!(d["data"]["outcomes"], json!([]));

    // The calls listing: by party (as caller or callee), by whether anything was planned.
    let calls = |q: &'static str| {
        let lab = &lab;
        async move {
            let (_, v, _) = lab
                .get(&format!("/v2/accounts/acc/calls{q}"), &lab.admin)
                .await;
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["call_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(calls("?party=1001").await, [lab.two.as_str()]);
    assert_eq!(calls("?party=1000").await, [lab.none.as_str()]);
    assert_eq!(calls("?recorded=false").await, [lab.none.as_str()]);
    assert_eq!(calls("?recorded=true").await, [lab.two.as_str()]);
    assert_eq!(calls("").await, [lab.none.clone(), lab.two.clone()]);
    let (_, page, _) = lab.get("/v2/accounts/acc/calls?limit=1", &lab.admin).await;
    let key = page["next_start_key"].as_str().unwrap().to_string();
    let (_, next, _) = lab
        .get(
            &format!("/v2/accounts/acc/calls?limit=1&start_key={key}"),
            &lab.admin,
        )
        .await;
    assert_eq!(next["data"][0]["call_id"], lab.two.as_str());
    let (s, _, _) = lab
        .get("/v2/accounts/acc/calls?start_key=nonsense", &lab.admin)
        .await;
    assert_eq!(s, 400);

    // Erasure on request takes a call's decision record too (its parties are personal data),
    // also for a call with no recording.
    let erase = format!("/v2/accounts/acc/recordings?call_id={}", lab.none);
    let (s, v, _) = http(&lab.node, "DELETE", &erase, Some(&lab.other_token), None).await;
    assert_eq!(s, 403, "{v}");
    let (s, v, _) = http(&lab.node, "DELETE", &erase, Some(&lab.acc_token), None).await;
    assert_eq!((s, &v["data"]["decision_records"]), (200, &json!(1)), "{v}");
    let (s, _, _) = lab
        .get(
            &format!("/v2/accounts/acc/calls/{}/decision", lab.none),
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = http(&lab.node, "DELETE", &erase, Some(&lab.acc_token), None).await;
    assert_eq!(s, 404, "nothing left of the call");
    assert_eq!(calls("").await, [lab.two.as_str()]);
}

#[tokio::test]
async fn recordings_filter_page_play_draw_and_retry() {
    let lab = Lab::start().await;
    // Filters: party, state, call id; pages.
    let ids = |q: String| {
        let lab = &lab;
        async move {
            let (s, v, _) = lab
                .get(&format!("/v2/accounts/acc/recordings{q}"), &lab.acc_token)
                .await;
            assert_eq!(s, 200, "{v}");
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["state"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("?party=1001".into()).await.len(), 2);
    assert_eq!(
        ids("?party=15557654321".into()).await.len(),
        2,
        "as callee too"
    );
    assert!(ids("?party=1000".into()).await.is_empty());
    assert_eq!(ids("?state=failed".into()).await, ["failed"]);
    assert_eq!(ids(format!("?call_id={}", lab.two)).await.len(), 2);
    let (_, p1, _) = lab
        .get("/v2/accounts/acc/recordings?limit=1", &lab.admin)
        .await;
    let key = p1["next_start_key"].as_str().unwrap();
    let (_, p2, _) = lab
        .get(
            &format!("/v2/accounts/acc/recordings?limit=1&start_key={key}"),
            &lab.admin,
        )
        .await;
    assert_ne!(p1["data"][0]["recording_id"], p2["data"][0]["recording_id"]);
    assert!(p2.get("next_start_key").is_none() || p2["data"].as_array().unwrap().len() == 1);

    // Play: a signed link, no token; ranges.
    let stored = lab.recording("stored").await;
    let id = stored["recording_id"].as_str().unwrap().to_string();
    let size = stored["size"].as_u64().unwrap();
    let (s, link) = lab
        .post(
            &format!("/v2/accounts/acc/recordings/{id}/link"),
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 200, "{link}");
    let url = format!(
        "http://127.0.0.1:{}{}",
        lab.node.api,
        link["data"]["url"].as_str().unwrap()
    );
    assert!(!url.contains(&lab.acc_token));
    let whole = reqwest::get(&url).await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.bytes().await.unwrap().len() as u64, size);
    let part = reqwest::Client::new()
        .get(&url)
        .header("Range", "bytes=0-43")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-43/{size}").as_str()
    );
    assert_eq!(&part.bytes().await.unwrap()[..4], b"RIFF");
    let forged = url.replace("sig=", "sig=0");
    assert_eq!(reqwest::get(&forged).await.unwrap().status(), 403);
    let other_rec = url.replace(&format!("/recordings/{id}/"), "/recordings/someone-else/");
    assert_ne!(other_rec, url);
    assert_eq!(reqwest::get(&other_rec).await.unwrap().status(), 403);

    // The waveform: as long as the recording, and not silence.
    let (s, w, _) = lab
        .get(
            &format!("/v2/accounts/acc/recordings/{id}/waveform?points=200"),
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["data"]["points"], 200);
    let ms = w["data"]["duration_ms"].as_u64().unwrap();
    assert!(
        ms.abs_diff(stored["duration_ms"].as_u64().unwrap()) <= 100,
        "{ms} vs {}",
        stored["duration_ms"]
    );
    assert!(w["data"]["peaks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p[1].as_f64().unwrap() > 0.05));

    // Retry puts the failed delivery back in the queue.
    let failed = lab.recording("failed").await;
    let fid = failed["recording_id"].as_str().unwrap();
    let (s, r) = lab
        .post(
            &format!("/v2/accounts/acc/recordings/{fid}/retry"),
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["data"]["retried"], 1);
    assert_ne!(r["data"]["recording"]["state"], "failed");
}

#[tokio::test]
async fn effective_settings_show_each_fields_document() {
    let lab = Lab::start().await;
    let (s, v, _) = lab
        .get(
            "/v2/accounts/acc/devices/d-alice/effective_record_call?direction=outbound&network=offnet",
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let e = &v["data"]["effective"][0];
    assert_eq!(e["records"], true);
    let field = |n: &str| {
        e["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(field("record_stereo")["value"], true);
    assert_eq!(
        field("record_stereo")["source"],
        "device d-alice record_call"
    );
    assert_eq!(field("time_limit")["source"], "default");
    let (_, all, _) = lab
        .get(
            "/v2/accounts/acc/users/u-alice/effective_record_call",
            &lab.acc_token,
        )
        .await;
    let all = all["data"]["effective"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        all.iter().all(|e| e["records"] == false),
        "the user has no rule of their own"
    );
    let (s, _, _) = lab
        .get(
            "/v2/accounts/acc/devices/nobody/effective_record_call",
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = lab
        .get(
            "/v2/accounts/acc/devices/d-alice/effective_record_call?direction=sideways",
            &lab.acc_token,
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn an_account_token_sees_only_its_account_and_the_page_is_locked_down() {
    let lab = Lab::start().await;
    let rec = lab.recording("stored").await;
    let id = rec["recording_id"].as_str().unwrap();
    for path in [
        "/v2/accounts/acc/calls".to_string(),
        format!("/v2/accounts/acc/calls/{}/decision", lab.two),
        format!("/v2/accounts/acc/recordings/{id}/waveform"),
        "/v2/accounts/acc/devices/d-alice/effective_record_call".to_string(),
    ] {
        let (s, _, _) = lab.get(&path, &lab.other_token).await;
        assert_eq!(s, 403, "{path}");
    }
    for (method, path) in [
        ("POST", format!("/v2/accounts/acc/recordings/{id}/link")),
        ("POST", format!("/v2/accounts/acc/recordings/{id}/retry")),
    ] {
        let (s, _, _) = http(&lab.node, method, &path, Some(&lab.other_token), None).await;
        assert_eq!(s, 403, "{path}");
    }
    // Its own account path, another account's call id: not found.
    let (s, _, _) = lab
        .get(
            &format!("/v2/accounts/other/calls/{}/decision", lab.two),
            &lab.other_token,
        )
        .await;
    assert_eq!(s, 404);
    let (_, acc, _) = lab.get("/v2/accounts", &lab.other_token).await;
    assert_eq!(
        acc["data"]["accounts"],
        json!([{"id": "other", "name": "Other Ltd"}])
    );
    assert_eq!(acc["data"]["admin"], false);
    let (_, all, _) = lab.get("/v2/accounts", &lab.admin).await;
    assert_eq!(all["data"]["accounts"].as_array().unwrap().len(), 2);
    let (s, _, _) = http(&lab.node, "GET", "/v2/accounts", None, None).await;
    assert_eq!(s, 401);

    // The page and its assets: served from the binary, locked down.
    for (path, ty) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", lab.node.api))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], ty);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("http://") || path == "/ui/app.js" && !body.contains("https://"),
            "no third-party asset in {path}"
        );
    }
    let html = reqwest::get(format!("http://127.0.0.1:{}/ui/", lab.node.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains("style="), "no inline style");
}

#[tokio::test]
async fn console_in_a_browser() {
    let Some(browser) = support::browser::Browser::start().await else {
        return;
    };
    let lab = Lab::start().await;
    let base = format!("http://127.0.0.1:{}/ui/", lab.node.api);
    let c = &browser.client;
    // Sign in.
    c.goto(&base).await.unwrap();
    // By keyboard: the token, then Enter.
    browser
        .fill("#token", &format!("{}\u{E007}", lab.admin))
        .await;
    browser.wait_text("#recordings tbody", "1001").await;
    assert!(
        !c.current_url().await.unwrap().as_str().contains(&lab.admin),
        "the token is never in the URL"
    );
    let stored = browser
        .eval("return sessionStorage.getItem('callrec.token')", vec![])
        .await;
    assert_eq!(stored, json!(lab.admin), "kept in session storage");
    let rows = browser.count("#recordings tbody tr").await;
    assert_eq!(rows, 2);
    // Every control has a label a screen reader reads; times carry UTC on hover.
    let unlabelled = browser
        .eval(
            "return [...document.querySelectorAll('input, select')].filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.name || e.id)",
            vec![],
        )
        .await;
    assert_eq!(unlabelled, json!([]));
    assert!(browser.count("#recordings time[title$='UTC']").await >= 2);
    // On a phone: the page itself never scrolls sideways (tables scroll in their box).
    browser.client.set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await;
    assert_eq!(overflow, json!(0), "no sideways scrolling at 390 px");
    browser.client.set_window_size(1280, 900).await.unwrap();
    browser
        .screenshot("docs/screenshots/console-recordings.png")
        .await;

    // Filter: failed ones only.
    browser.select("select[name=state]", "failed").await;
    browser.click("form.filters button[type=submit]").await;
    browser.wait_count("#recordings tbody tr", 1).await;
    browser.wait_text("#recordings tbody", "failed").await;

    // Retry the failed one.
    browser.click("#recordings tbody a").await;
    browser
        .wait_present("#destinations button[data-retry]")
        .await;
    browser.click("#destinations button[data-retry]").await;
    browser
        .wait_text("#dest-note", "put back in the queue")
        .await;

    // Play the stored one: the audio element loads, its duration is the recording's.
    let stored = lab.recording("stored").await;
    let id = stored["recording_id"].as_str().unwrap();
    c.goto(&format!("{base}#/recording/{id}")).await.unwrap();
    browser.wait_present("#waveform rect").await;
    let duration = until("the audio element's duration", async || {
        let v = browser
            .eval(
                "const a = document.getElementById('audio'); return a && a.readyState >= 1 ? a.duration : null",
                vec![],
            )
            .await;
        v.as_f64()
    })
    .await;
    let want = stored["duration_ms"].as_f64().unwrap() / 1000.0;
    assert!((duration - want).abs() < 0.1, "{duration} s vs {want} s");
    browser.wait_text("#why", "Why it was recorded").await;
    browser.wait_text("#rules", "caller endpoint").await;
    browser
        .screenshot("docs/screenshots/console-recording.png")
        .await;

    // Decisions: a call with two recordings, and one with none.
    c.goto(&format!("{base}#/call/{}", lab.two)).await.unwrap();
    browser.wait_count("#kept li", 2).await;
    c.goto(&format!("{base}#/calls")).await.unwrap();
    browser.wait_present("#calls tbody tr").await;
    c.goto(&format!("{base}#/call/{}", lab.none)).await.unwrap();
    browser.wait_text("#why", "Why it was not recorded").await;
    browser
        .wait_text(
            "#rules",
            "no call_recording.account cell for inbound offnet",
        )
        .await;

    // Live: a call in progress, paused and resumed from the page.
    let call = alice_calls(&lab.node, "15550002222").await;
    c.goto(&format!("{base}#/live")).await.unwrap();
    browser.wait_text("#live", "15550002222").await;
    browser.click("#live button").await;
    browser.wait_text("#live", "paused").await;
    browser.wait_present("#live button").await;
    browser
        .until("both recordings to offer Pause or Resume", async || {
            (browser.count("#live button").await == 2).then_some(())
        })
        .await;
    browser.click("#live button").await;
    browser
        .until("no recording paused any more", async || {
            let t = browser
                .client
                .find(fantoccini::Locator::Css("#live"))
                .await
                .ok()?;
            let text = t.text().await.ok()?;
            (!text.contains("paused")).then_some(())
        })
        .await;
    call.hangup("NORMAL_CLEARING");
    call.closed().await;

    // An account token sees its account only.
    browser.click("#signout").await;
    browser.fill("#token", &lab.other_token).await;
    browser.click("#signin-form button[type=submit]").await;
    browser
        .wait_text("#view", "No recordings yet in this account")
        .await;
    let options = browser.count("#account option").await;
    assert_eq!(options, 1);
    c.goto(&format!("{base}#/call/{}", lab.two)).await.unwrap();
    browser
        .wait_text("#view", "No decision record for this call")
        .await;
    browser.close().await;
}
