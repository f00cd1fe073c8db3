//! `callrec recordings list|show|retry|adopt`: "where is the recording of call X?" in one command.

use std::process::Command;

fn callrec(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .arg("recordings")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn adopt_list_show_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let dir = data.join("recordings/acc-7/2026/11/23");
    std::fs::create_dir_all(&dir).unwrap();
    // An orphan with its metadata file, as a session leaves it.
    let wav = dir.join("rec-a.wav");
    std::fs::write(&wav, vec![0u8; 44 + 16000]).unwrap();
    std::fs::write(
        dir.join("rec-a.json"),
        serde_json::json!({
            "recording_id": "rec-a", "call_id": "call-xyz", "account_id": "acc-7",
            "user_id": null, "device_id": null, "caller_id_name": "Alice", "caller_id_number": "1555",
            "callee_number": "1000", "direction": "inbound", "start_us": 1795459961000000u64,
            "duration_ms": 1000, "format": "wav", "sample_rate": null, "stereo": false,
            "file_path": "/elsewhere", "size": 0, "urls": [], "keep_local": true, "method": "put",
            "origin": "user u record_call", "completion_cause": "success-silence"
        })
        .to_string(),
    )
    .unwrap();
    // An orphan without metadata.
    let bare = dir.join("rec-b.wav");
    std::fs::write(&bare, vec![0u8; 100]).unwrap();

    let (ok, out, err) = callrec(data, &["adopt", wav.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("as rec-a (stored)"), "{out}");
    let (ok, out, _) = callrec(
        data,
        &[
            "adopt",
            bare.to_str().unwrap(),
            "--url",
            "http://127.0.0.1:9/r",
        ],
    );
    assert!(ok);
    assert!(out.contains("as rec-b (pending)"), "{out}");
    let (ok, _, err) = callrec(data, &["adopt", wav.to_str().unwrap()]);
    assert!(!ok && err.contains("already in the spool"));

    let (ok, out, _) = callrec(data, &["list", "--account", "acc-7"]);
    assert!(ok);
    assert!(out.contains("call-xyz") && out.contains("stored"), "{out}");
    assert!(out.contains("rec-b") && out.contains("pending"));
    let (_, out, _) = callrec(data, &["list", "--state", "stored"]);
    assert!(out.contains("rec-a") && !out.contains("rec-b"));

    let (ok, out, _) = callrec(data, &["show", "rec-a"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["call_id"], "call-xyz");
    assert_eq!(
        v["file_path"],
        wav.canonicalize().unwrap().to_str().unwrap()
    );
    let (ok, _, err) = callrec(data, &["show", "nope"]);
    assert!(!ok && err.contains("no recording nope"));

    let (ok, out, _) = callrec(data, &["retry", "--all-failed"]);
    assert!(ok);
    assert!(out.contains("0 failed deliveries queued again"));
}

/// `callrec recordings delete`: one recording, or every recording of a call; the file and its
/// `.json` go with the row; an unknown id exits 1.
#[test]
fn delete_by_id_and_by_call() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let dir = data.join("recordings/acc-7/2026/11/23");
    std::fs::create_dir_all(&dir).unwrap();
    let mut ids = vec![];
    for name in ["one", "two", "three"] {
        let wav = dir.join(format!("{name}.wav"));
        std::fs::write(&wav, vec![0u8; 100]).unwrap();
        let (ok, out, err) = callrec(data, &["adopt", wav.to_str().unwrap()]);
        assert!(ok, "{err}");
        let id = out.split(" as ").nth(1).unwrap().split(' ').next().unwrap();
        ids.push((wav, id.to_string()));
    }
    let (ok, out, err) = callrec(data, &["delete", &ids[0].1]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("erased {} of call ", ids[0].1)),
        "{out}"
    );
    assert!(!ids[0].0.exists());
    let (ok, _, err) = callrec(data, &["delete", &ids[0].1]);
    assert!(!ok && err.contains("no recording"), "{err}");
    // Adopted files without metadata carry the call id "unknown": both remaining go.
    let (ok, out, err) = callrec(data, &["delete", "--call-id", "unknown"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!ids[1].0.exists() && !ids[2].0.exists());
}
