//! A running HTTP API over a real socket with its own store, and a client for it.
#![allow(dead_code)]

use callrec::admin::{self, ApiState};
use callrec::store::{Scope, Store};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct Api {
    pub base: String,
    pub admin: String,
    pub store: Store,
    pub http: Client,
    pub _dir: tempfile::TempDir,
}

pub async fn start() -> Api {
    start_with(None).await
}

/// An API that reaches the live calls of `live` (a running server's registry).
pub async fn start_with(live: Option<std::sync::Arc<callrec::outbound::live::LiveCalls>>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admin = store.create_token(&Scope::Admin).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(admin::serve(
        listener,
        ApiState {
            store: store.clone(),
            readiness: None,
            live,
            policy: Default::default(),
            links: Default::default(),
        },
        CancellationToken::new(),
    ));
    Api {
        base,
        admin,
        store,
        http: Client::new(),
        _dir: dir,
    }
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }

    /// Sends a prepared request; the status and the JSON body (`null` when it is not JSON).
    pub async fn send(&self, r: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.admin.clone()), body)
            .await
    }
}
