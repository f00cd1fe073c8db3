//! A real S3-compatible server for the object-storage tests: `s3s-fs` (the s3s project's
//! file-system backed server), which `scripts/test` builds once and names in `S3S_FS_BIN`; and a
//! relay in front of it that fails the first connections and notes the requests it forwards.
//!
//! Without `S3S_FS_BIN` the tests are skipped with a note, unless `REQUIRE_S3` is set (as
//! `scripts/test` sets it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{free_port, Killed};

pub const ACCESS_KEY: &str = "callrec-test";
pub const SECRET_KEY: &str = "callrec-test-secret-9f8e7d";

pub struct S3Server {
    pub endpoint: String,
    pub addr: std::net::SocketAddr,
    pub root: tempfile::TempDir,
    _child: Killed,
}

/// Starts s3s-fs on a free port with `buckets` created; `None` when it is not available.
pub async fn start(buckets: &[&str]) -> Option<S3Server> {
    let bin = match std::env::var("S3S_FS_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            assert!(
                std::env::var_os("REQUIRE_S3").is_none(),
                "REQUIRE_S3 is set but S3S_FS_BIN is not"
            );
            eprintln!("S3S_FS_BIN not set: object storage test skipped");
            return None;
        }
    };
    let root = tempfile::tempdir().unwrap();
    for b in buckets {
        std::fs::create_dir_all(root.path().join(b)).unwrap();
    }
    let port = free_port();
    let child = std::process::Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run s3s-fs");
    let child = Killed(child);
    tokio::time::timeout(Duration::from_secs(20), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("s3s-fs listens");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Some(S3Server {
        endpoint: format!("http://{addr}"),
        addr,
        root,
        _child: child,
    })
}

/// A TCP relay that answers its first `fail_first` connections with `503 Slow Down` (without
/// reaching the server) and forwards the rest, noting each forwarded request line.
pub struct FaultRelay {
    pub endpoint: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub refused: Arc<Mutex<usize>>,
}

impl FaultRelay {
    pub async fn start(target: std::net::SocketAddr, fail_first: usize) -> FaultRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0usize));
        let (reqs, refs) = (requests.clone(), refused.clone());
        tokio::spawn(async move {
            let mut accepted = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                accepted += 1;
                if accepted <= fail_first {
                    *refs.lock().unwrap() += 1;
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut b = [0u8; 4096];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match inbound.read(&mut b).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&b[..n]),
                            }
                        }
                        let body = "<Error><Code>SlowDown</Code></Error>";
                        let resp = format!(
                            "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = inbound.write_all(resp.as_bytes()).await;
                    });
                    continue;
                }
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let Ok(out) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = out.into_split();
                    let up = async {
                        let mut b = vec![0u8; 64 * 1024];
                        loop {
                            let n = match ri.read(&mut b).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            note_request_lines(&b[..n], &reqs);
                            if wo.write_all(&b[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = wo.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut ro, &mut wi).await;
                        let _ = wi.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        FaultRelay {
            endpoint,
            requests,
            refused,
        }
    }
}

/// Notes `METHOD /path HTTP/1.1` lines starting in `chunk` (request heads start a read in
/// practice; a body that happens to hold such a line would only add a note).
fn note_request_lines(chunk: &[u8], reqs: &Mutex<Vec<String>>) {
    let text = String::from_utf8_lossy(chunk);
    for line in text.split("\r\n") {
        let starts = ["PUT /", "POST /", "GET /", "HEAD /", "DELETE /"];
        if starts.iter().any(|s| line.starts_with(s)) && line.ends_with(" HTTP/1.1") {
            reqs.lock().unwrap().push(line.to_string());
        }
    }
}
