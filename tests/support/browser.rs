//! A real headless browser for the console's tests: Debian's `chromium`, driven through
//! `chromedriver` (WebDriver) with `fantoccini`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` a browser test is skipped with a
//! note on stderr, unless `REQUIRE_BROWSER` is set (as `scripts/test` sets it, after
//! installing both): then their absence fails the test. Waits poll the page (a condition, not
//! a duration) and fail naming what they waited for, with the page's text.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;

use super::process::{free_port, Killed};

pub struct Browser {
    pub client: Client,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

impl Browser {
    /// Starts chromedriver and a headless chromium (1280×900), or `None` (see the module note).
    pub async fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(DRIVER).exists() {
            assert!(
                std::env::var_os("REQUIRE_BROWSER").is_none(),
                "REQUIRE_BROWSER is set but {CHROMIUM} or {DRIVER} is missing"
            );
            eprintln!("chromium or chromedriver not installed: browser test skipped");
            return None;
        }
        let port = free_port();
        let driver = Killed(
            Command::new(DRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--mute-audio",
                    "--window-size=1280,900", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                // chromedriver is on loopback: plain HTTP, no TLS stack.
                let http = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(http)
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(c) => return c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
        .expect("chromedriver answers and starts chromium");
        Some(Browser {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Polls `f` until it gives `Some` (60 s at most, then fails naming `what`).
    pub async fn until<T>(&self, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        let r = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(v) = f().await {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match r {
            Ok(v) => v,
            Err(_) => panic!(
                "timed out waiting for {what}; the page says:\n{}",
                self.page_text().await
            ),
        }
    }

    pub async fn wait_present(&self, css: &str) {
        self.until(&format!("{css} to be present"), async || {
            self.client.find(Locator::Css(css)).await.ok().map(|_| ())
        })
        .await
    }

    pub async fn wait_text(&self, css: &str, text: &str) {
        self.until(&format!("{css} to show {text:?}"), async || {
            let e = self.client.find(Locator::Css(css)).await.ok()?;
            e.text().await.ok().filter(|t| t.contains(text)).map(|_| ())
        })
        .await
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    pub async fn wait_count(&self, css: &str, n: usize) {
        self.until(&format!("{n} of {css}"), async || {
            (self.count(css).await == n).then_some(())
        })
        .await
    }

    pub async fn fill(&self, css: &str, text: &str) {
        self.wait_present(css).await;
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.wait_present(css).await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.wait_present(css).await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }

    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Saves a PNG of the window at `path` (relative to the crate), for the README; the window
    /// is made as tall as the page for it (at most 2,400 px), then 900 px again.
    pub async fn screenshot(&self, path: &str) {
        let height = self
            .eval("return document.documentElement.scrollHeight", vec![])
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(900, 2400) as u32;
        self.client
            .set_window_size(1280, height + 90)
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(1280, 900).await.unwrap();
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
