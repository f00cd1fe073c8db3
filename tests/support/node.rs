//! One `callrec serve` process beside a simulated FreeSWITCH: its configuration, directories,
//! ports, CLI and API; a recorded call on it; waiting for a condition.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use callrec_sim::CallSpec;
use serde_json::Value;

use super::pg::TestDb;
use super::process::{free_port, Killed};

/// One node's callrec: its configuration, directories and ports.
pub struct Node {
    pub id: &'static str,
    pub data: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub listen: u16,
    pub api: u16,
}

impl Node {
    pub fn new(tmp: &Path, id: &'static str, db: &TestDb) -> Node {
        Node::with_url(tmp, id, &db.url)
    }

    pub fn with_url(tmp: &Path, id: &'static str, url: &str) -> Node {
        Node::with_config(tmp, id, &format!("database_url = \"{url}\"\n"))
    }

    /// A node on its own SQLite file (no `database_url`), with `extra` TOML lines.
    pub fn sqlite(tmp: &Path, id: &'static str, extra: &str) -> Node {
        Node::with_config(tmp, id, extra)
    }

    /// `extra`: more TOML lines (a `database_url`, timeouts…).
    pub fn with_config(tmp: &Path, id: &'static str, extra: &str) -> Node {
        let dir = tmp.join(id);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let (listen, api) = (free_port(), free_port());
        let config = dir.join("callrec.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{listen}\"\napi_listen = \"127.0.0.1:{api}\"\n\
                 data_dir = \"{}\"\nnode_id = \"{id}\"\n\
                 freeswitch_esl = \"\"\ndisk_poll_ms = 50\nupload_retry_base_ms = 100\n\
                 upload_retry_cap_ms = 200\n{extra}",
                data.display(),
            ),
        )
        .unwrap();
        Node {
            id,
            data,
            log: dir.join("callrec.log"),
            config,
            listen,
            api,
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_callrec"));
        c.env_remove("RUST_LOG");
        c
    }

    /// Starts `callrec serve`; returns once both its listeners answer.
    pub async fn serve(&self) -> Killed {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .args(["serve", "--config"])
            .arg(&self.config)
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let child = Killed(child);
        tokio::time::timeout(Duration::from_secs(30), async {
            for port in [self.listen, self.api] {
                while tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not start: {}",
                self.id,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        child
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// A new admin token, made with the CLI.
    pub fn admin_token(&self) -> String {
        let out = self.cli(&["token", "create", "--admin"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub async fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = reqwest::Client::new()
            .request(m, format!("http://127.0.0.1:{}{path}", self.api))
            .header("X-Auth-Token", token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "{method} {path} on {}: {status} {v}",
            self.id
        );
        v
    }
}

/// A recorded call on node `n`'s switch: answered, 3 s of recording, hung up.
pub async fn recorded_call(n: &Node) -> String {
    let call = callrec_sim::dial(
        format!("127.0.0.1:{}", n.listen).parse().unwrap(),
        CallSpec::new("15550001111", "1000").var("callrec_account_id", "acc"),
    )
    .await
    .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    let report = call.closed().await;
    assert_eq!(
        report.recordings.len(),
        1,
        "the call on {} was recorded",
        n.id
    );
    call.uuid.clone()
}

/// Waits until `f` gives `Some`.
pub async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
