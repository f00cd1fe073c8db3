//! Encryption at rest (README "Encryption at rest"): an account with a `recording_public_key`
//! gets its recordings encrypted with age before they enter the spool; the uploads are the
//! encrypted bytes, decrypted here with the standard `age` tool (Debian's, installed by the
//! test command); a SIGKILL mid-encryption resumes from the plain file, which is then removed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use callrec::store::documents::Expect;
use callrec::store::{Kind, Store};
use callrec::uploader::journal::JournalEntry;
use callrec::uploader::{spool, CallMeta, FinishedRecording};
use serde_json::json;
use support::node::{until, Node};
use support::receiver::Receiver;

/// A new age identity: (key file, public key).
fn keypair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    (
        key,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

/// `age -d -i key file`.
fn decrypt(key: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_call_of_an_account_with_a_public_key_is_kept_and_uploaded_encrypted() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keypair(tmp.path());
    let upload = Receiver::start(vec![]).await;
    let n = Node::sqlite(tmp.path(), "fs-1", "keep_local_after_upload = true\n");
    let _serve = n.serve().await;
    let admin = n.admin_token();
    let data = json!({"data": {"record_call": {"format": "wav", "url": format!("{}/rec/", upload.base)},
                              "recording_public_key": "age1notakey"}});
    let v = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{}/v2/accounts/acc", n.api))
        .header("X-Auth-Token", &admin)
        .json(&data)
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), 400);
    let v: serde_json::Value = v.json().await.unwrap();
    assert!(v["data"]["recording_public_key"].is_object(), "{v}");
    let data = json!({"data": {"record_call": {"format": "wav", "url": format!("{}/rec/", upload.base)},
                              "recording_public_key": public}});
    n.api("PUT", "/v2/accounts/acc", &admin, Some(data)).await;
    let call_id = support::node::recorded_call(&n).await;
    let got = until("the upload", async || upload.requests().first().cloned()).await;
    assert!(
        got.target
            .contains(&format!("call_recording_{call_id}.wav.age")),
        "{}",
        got.target
    );
    assert_eq!(got.header("content-type"), Some("application/age"));
    let sent = tmp.path().join("sent.age");
    std::fs::write(&sent, &got.body).unwrap();
    let wav = decrypt(&key, &sent);
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert!(wav.len() > 44 + 8000, "3 s of audio: {} bytes", wav.len());
    // On disk: the encrypted file and its metadata only; the plain WAV is gone.
    let local = files_under(&n.data.join("recordings"));
    assert!(
        local.iter().all(|p| !p.to_string_lossy().ends_with(".wav")),
        "{local:?}"
    );
    let kept = local
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".wav.age"))
        .expect("the encrypted file is kept locally");
    assert_eq!(decrypt(&key, kept), wav);
    let listed = n
        .api(
            "GET",
            &format!("/v2/accounts/acc/recordings?call_id={call_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(listed["data"][0]["encryption"]["scheme"], "age");
    assert_eq!(listed["data"][0]["encryption"]["recipient"], public);
}

/// A journaled recording the node re-adopts at start (its call long over): it is judged final
/// from the file, encrypted, and the process is killed while the encrypted file is still being
/// written. The next start encrypts it again from the plain file, then removes the plain file.
#[tokio::test]
async fn a_kill_mid_encryption_resumes_from_the_plain_file_which_is_then_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keypair(tmp.path());
    let n = Node::sqlite(tmp.path(), "fs-1", "");
    let dir = n.data.join("recordings/acc/2026/12/04");
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("big.wav");
    {
        // 16 MiB of audio: long enough to encrypt that the kill lands in the middle.
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&plain, spec).unwrap();
        for i in 0..(8u32 << 20) {
            w.write_sample((i.wrapping_mul(2_654_435_761) >> 16) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
    let original = std::fs::read(&plain).unwrap();
    {
        let store = Store::open(&n.data)
            .unwrap()
            .for_node("fs-1")
            .await
            .unwrap();
        store
            .put(
                Kind::Account,
                "acc",
                "acc",
                json!({"recording_public_key": public}),
                Expect::Any,
            )
            .await
            .unwrap();
        let rec = FinishedRecording {
            call: CallMeta {
                call_id: "gone-call".into(),
                account_id: Some("acc".into()),
                user_id: None,
                device_id: None,
                caller_id_name: String::new(),
                caller_id_number: "1555".into(),
                callee_number: "1000".into(),
                callee_name: String::new(),
                direction: "inbound".into(),
                interaction_id: None,
            },
            recording_id: "big".into(),
            // Long over: FreeSWITCH can no longer write it.
            start_us: callrec::store::now_us() - 7_200_000_000,
            duration_ms: 0,
            format: callrec::rules::AudioFormat::Wav,
            sample_rate: Some(8000),
            stereo: false,
            file_path: plain.to_string_lossy().into_owned(),
            size: 0,
            destinations: vec![],
            keep_local: false,
            origin: "test".into(),
            completion_cause: "recording".into(),
            sequence: 0,
            kind: Default::default(),
            may_grow_until_us: None,
            pauses: vec![],
            encryption: None,
            // As the session journals it: the account's key when the call was planned.
            encrypt_to: Some(public.clone()),
        };
        callrec::uploader::journal::record(
            &store,
            &JournalEntry {
                rec,
                record_min_sec: 0,
                time_limit: 60,
                write_buffer: 0,
            },
        )
        .await
        .unwrap();
    }
    let part = PathBuf::from(format!("{}.age.part", plain.display()));
    let age_file = PathBuf::from(format!("{}.age", plain.display()));
    let serve = n.serve().await;
    until("encryption under way", async || part.exists().then_some(())).await;
    drop(serve); // SIGKILL
    assert!(
        part.exists() && !age_file.exists(),
        "killed while the encrypted file was being written"
    );
    assert!(
        plain.exists(),
        "the plain file is still there to start again from"
    );
    let _serve = n.serve().await;
    let store = Store::open(&n.data).unwrap();
    let item = until("kept after the restart", async || {
        spool::get(&store, "big")
            .await
            .unwrap()
            .filter(|i| i.state.as_str() == "stored")
    })
    .await;
    assert_eq!(item.meta.file_path, age_file.to_string_lossy());
    assert!(item.meta.encryption.is_some());
    until("the plain file removed", async || {
        (!plain.exists()).then_some(())
    })
    .await;
    assert!(!part.exists(), "no partial file left");
    assert_eq!(
        decrypt(&key, &age_file),
        original,
        "the whole recording, decrypted"
    );
}
