//! `callrec serve` as an operator runs it, with stderr going to a file: a first-release
//! `callrec.db` is migrated at start-up and the log says so once; stored documents that no
//! longer parse are reported at start-up; the lines carry no colour codes and no Rust `Debug`
//! shapes.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::{free_port, Killed};

/// The first release's schema with two accounts' documents, one of whose settings the typed
/// model refuses (a sample rate that was truncated to 8000 when it was accepted).
fn first_release_db(data: &std::path::Path) {
    callrec::store::scratch::first_release_file(
        data,
        &[
            ("account", "A", "A", 1, r#"{"id":"A"}"#),
            ("account", "B", "B", 1, r#"{"id":"B"}"#),
            (
                "user",
                "u1",
                "B",
                2,
                r#"{"id":"u1","record_call":{"record_sample_rate":4294975296}}"#,
            ),
        ],
    )
    .unwrap();
}

async fn run_until_api_answers(config: &std::path::Path, log: &std::path::Path, api: u16) {
    let out = std::fs::File::create(log).unwrap();
    let child = Killed(
        Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(["serve", "--config"])
            .arg(config)
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{api}/v2/accounts/A");
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                assert_eq!(r.status(), 401, "the API wants a token");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the API came up");
    drop(child);
}

#[tokio::test]
async fn start_up_migrates_once_reports_bad_documents_and_logs_plain_text() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    first_release_db(&data);
    let api = free_port();
    let config = tmp.path().join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{api}\"\ndata_dir = \"{}\"\n",
            free_port(),
            data.display()
        ),
    )
    .unwrap();
    let first = tmp.path().join("first.log");
    run_until_api_answers(&config, &first, api).await;
    let log = std::fs::read_to_string(&first).unwrap();
    assert_eq!(
        log.matches("store migrated").count(),
        1,
        "migration logged once:\n{log}"
    );
    let bad = log
        .lines()
        .find(|l| l.contains("stored document does not parse"))
        .unwrap_or_else(|| panic!("bad document reported:\n{log}"));
    assert!(
        bad.contains("account_id=B") && bad.contains("id=u1"),
        "{bad}"
    );
    assert!(
        bad.contains("field=record_call.record_sample_rate"),
        "{bad}"
    );
    assert!(
        log.contains(&format!("HTTP API listening addr=127.0.0.1:{api}")),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes in a file:\n{log}");
    assert!(!log.contains("Some("), "no Debug shapes:\n{log}");
    // The second start finds the current schema: nothing to migrate.
    let second = tmp.path().join("second.log");
    run_until_api_answers(&config, &second, api).await;
    let log = std::fs::read_to_string(&second).unwrap();
    assert!(!log.contains("store migrated"), "{log}");
    assert!(log.contains("stored document does not parse"), "{log}");
}

async fn probe(api: u16, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("http://127.0.0.1:{api}{path}"))
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn health_and_readiness_probes_need_no_token_and_say_why_not_ready() {
    for (min_free_mb, want_ready) in [(1u64, true), (u64::MAX / (1024 * 1024), false)] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let api = free_port();
        let config = tmp.path().join("callrec.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{api}\"\ndata_dir = \"{}\"\nmin_free_mb = {min_free_mb}\n",
                free_port(),
                data.display()
            ),
        )
        .unwrap();
        let _child = Killed(
            Command::new(env!("CARGO_BIN_EXE_callrec"))
                .args(["serve", "--config"])
                .arg(&config)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let (s, v) = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{api}/healthz")).await {
                    let s = r.status().as_u16();
                    return (s, r.json::<serde_json::Value>().await.unwrap_or_default());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the API came up");
        assert_eq!((s, v["status"].as_str()), (200, Some("alive")));
        // Ready once the outbound listener is up (it starts after the API).
        let (s, v) = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (s, v) = probe(api, "/readyz").await;
                if v["checks"]["listener_up"] == true {
                    return (s, v);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the listener came up");
        assert_eq!(v["checks"]["store_writable"], true, "{v}");
        assert_eq!(v["checks"]["recordings_dir_writable"], true, "{v}");
        if want_ready {
            assert_eq!((s, &v["ready"]), (200, &serde_json::json!(true)), "{v}");
        } else {
            assert_eq!(s, 503, "{v}");
            assert_eq!(v["checks"]["recordings_free_enough"], false, "{v}");
        }
    }
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("callrec.toml");
    std::fs::write(
        &config,
        "max_calls = 5\nfreeswitch_esl = \"127.0.0.1:8021\"\nfreeswitch_password = \"esl-pa55\"\n[record_call]\nurl = \"https://rec:s3cret@h.example/calls/\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["check-config", "--config"])
        .arg(&config)
        .args(["--continue-context", "from-flag"])
        .env("CALLREC_MAX_CALLS", "7")
        .env("CALLREC_CONTINUE_CONTEXT", "from-env")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("max_calls = 7"),
        "the environment over the file: {text}"
    );
    assert!(
        text.contains("continue_context = \"from-flag\""),
        "flags over both: {text}"
    );
    assert!(
        text.contains("rec:REDACTED@h.example")
            && !text.contains("s3cret")
            && text.contains("freeswitch_password = \"REDACTED\"")
            && !text.contains("esl-pa55"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["check-config"])
        .env("CALLREC_TIME_LIMIT", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CALLREC_TIME_LIMIT") && err.contains("MAX_CALLS"),
        "{err}"
    );
}
