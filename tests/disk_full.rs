//! A full disk, for real: callrec's data directory on a small tmpfs, filled to the last byte
//! while callrec serves. The log says so once, `GET /readyz` turns false, `disk_low` is 1, a call
//! arriving meanwhile is still handed back to the dialplan (never dropped), the process keeps
//! serving; when space returns the log says so, readiness comes back, the store passes SQLite's
//! integrity check, and every recording the rules asked for is accounted for: kept (in the store)
//! or discarded with a log line naming it — none silently lost.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN), which this project's test machines and CI have;
//! elsewhere the test says so on stderr and does nothing (RELIABILITY.md records a run).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use callrec::store::{RecordingState, Store};
use callrec::uploader::spool;
use callrec_sim::CallSpec;
use support::process::{free_port, Killed};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes until the filesystem refuses: returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    // Small writes can still fit in partly used blocks: fill those too.
    while f.write_all(&[0u8; 512]).is_ok() {}
    while f.write_all(&[0u8; 1]).is_ok() {}
    p
}

async fn readyz(api: u16) -> (u16, serde_json::Value) {
    match reqwest::get(format!("http://127.0.0.1:{api}/readyz")).await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or_default())
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// The states of a call's recordings in the store (none while the store cannot be read).
async fn states(data: &Path, call_id: &str) -> Vec<RecordingState> {
    let filter = spool::Filter {
        call_id: Some(call_id.to_string()),
        ..Default::default()
    };
    let Ok(s) = Store::open(data) else {
        return Vec::new();
    };
    spool::list(&s, &filter)
        .await
        .map(|r| r.into_iter().map(|i| i.state).collect())
        .unwrap_or_default()
}

fn log_has(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle))
}

#[tokio::test]
async fn a_full_recordings_disk_is_reported_survived_and_recovered_from() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&tmp.path().join("mnt"), "8m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); see RELIABILITY.md");
        return;
    };
    let data = fs.0.join("data");
    let (listen, api) = (free_port(), free_port());
    let config = tmp.path().join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{listen}\"\napi_listen = \"127.0.0.1:{api}\"\ndata_dir = \"{}\"\n\
             min_free_mb = 1\ndisk_poll_ms = 50\n[record_call]\nformat = \"wav\"\n",
            data.display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("callrec.log");
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    wait_for("ready", async || readyz(api).await.0 == 200).await;
    let out = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["token", "create", "--admin", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let disk_low = async || -> Option<u64> {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{api}/metrics"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .ok()?;
        let text = r.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("callrec_disk_low "))
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(disk_low().await, Some(0));
    let ctl: std::net::SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();

    // The disk fills up.
    let filler = fill(&fs.0);
    wait_for("the out-of-space log line", async || {
        log_has(&log, "recordings directory is out of space")
    })
    .await;
    let (s, v) = readyz(api).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["checks"]["recordings_free_enough"], false, "{v}");
    assert_eq!(disk_low().await, Some(1), "the disk_low gauge");

    // A call arrives: it is set up and handed back as always; FreeSWITCH cannot write much.
    let during = callrec_sim::dial(ctl, CallSpec::new("15550001111", "1000"))
        .await
        .unwrap();
    during.wait_for_command("sendmsg").await;
    during.answer();
    let r = during
        .wait_until(|r| r.transferred_to.is_some() || r.closed)
        .await;
    assert!(
        r.transferred_to.is_some(),
        "the call is handed back to the dialplan, never dropped"
    );
    during.advance(Duration::from_secs(3));
    during.hangup("NORMAL_CLEARING");
    during.closed().await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "callrec keeps serving"
    );

    // Space returns.
    std::fs::remove_file(&filler).unwrap();
    wait_for("the space-returned log line", async || {
        log_has(&log, "recordings directory has room again")
    })
    .await;
    wait_for("ready again", async || readyz(api).await.0 == 200).await;
    assert_eq!(disk_low().await, Some(0));

    // The recording asked for during the outage is accounted for: in the store, or discarded
    // with a log line that names it.
    let uuid = during.uuid.clone();
    wait_for("the outage's recording accounted for", async || {
        let kept = states(&data, &uuid)
            .await
            .iter()
            .any(|s| *s != RecordingState::Recording);
        let discarded = std::fs::read_to_string(&log).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains(&uuid) && l.contains("recording discarded"))
        });
        kept || discarded
    })
    .await;

    // A call after recovery is recorded and kept as usual.
    let after = callrec_sim::dial(ctl, CallSpec::new("15550002222", "1000"))
        .await
        .unwrap();
    after.wait_for_command("sendmsg").await;
    after.answer();
    after.wait_for_command("api uuid_record").await;
    after.advance(Duration::from_secs(2));
    after.hangup("NORMAL_CLEARING");
    after.closed().await;
    let uuid = after.uuid.clone();
    wait_for("the later call's recording kept", async || {
        states(&data, &uuid).await == [RecordingState::Stored]
    })
    .await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "callrec kept serving"
    );
    let store = callrec::store::Store::open(&data).unwrap();
    assert_eq!(
        store.integrity_check().await.unwrap(),
        "ok",
        "no spool corruption"
    );
    if std::env::var_os("SHOW_TEST_LOG").is_some() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
}
