//! An in-process HTTP receiver with scripted faults (5xx, 429, resets, silence), recording
//! every request it got. One request per connection (`Connection: close`).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub enum Act {
    /// Read the whole body, answer with this status, extra headers and body.
    Respond(u16, Vec<(String, String)>, String),
    /// Read some of the body, then drop the connection.
    ResetMidBody,
    /// Read the request and never answer.
    Silence,
}

#[derive(Debug, Clone)]
pub struct Got {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub complete: bool,
    pub at: SystemTime,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    pub got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<Vec<Act>>>,
}

impl Receiver {
    /// Listens on `addr` (use port 0 for a free one); acts by `script`, then answers 201.
    pub async fn start_on(addr: &str, script: Vec<Act>) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let r = Receiver {
            base,
            got: Arc::new(Mutex::new(vec![])),
            script: Arc::new(Mutex::new(script)),
        };
        let rr = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    break;
                };
                let rr = rr.clone();
                tokio::spawn(async move { rr.serve(sock).await });
            }
        });
        r
    }

    pub async fn start(script: Vec<Act>) -> Receiver {
        Receiver::start_on("127.0.0.1:0", script).await
    }

    /// Replaces what is left of the script.
    pub fn set_script(&self, script: Vec<Act>) {
        *self.script.lock().unwrap() = script;
    }

    pub fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or("").to_string();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        let act = {
            let mut s = self.script.lock().unwrap();
            if s.is_empty() {
                Act::Respond(201, vec![], String::new())
            } else {
                s.remove(0)
            }
        };
        let wanted = match act {
            Act::ResetMidBody => len / 2,
            _ => len,
        };
        while body.len() < wanted {
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&tmp[..n]),
            }
        }
        let complete = body.len() >= len;
        self.got.lock().unwrap().push(Got {
            method,
            target,
            headers,
            body,
            complete,
            at: SystemTime::now(),
        });
        match act {
            Act::Respond(status, extra, text) => {
                let mut resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    text.len()
                );
                for (k, v) in extra {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&text);
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
            Act::ResetMidBody => {
                // A zero linger makes the close a TCP reset; it does not block.
                #[allow(deprecated)]
                let _ = sock.set_linger(Some(Duration::from_secs(0)));
                drop(sock);
            }
            Act::Silence => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
    }
}
