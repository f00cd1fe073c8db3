//! One upload attempt: the file streamed from disk in 256 KiB reads (a file no larger than one
//! read is read whole; a larger one is never held whole in memory) with
//! `Content-Type` and `Content-Length`, PUT or POST, redirects followed (at most 10), a timeout
//! scaled to the file's size, credentials from the URL sent as Basic auth.

use std::time::Duration;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use tokio_util::io::ReaderStream;

use super::s3::{S3Config, S3};
use super::spool::{now_us, Claim, Outcome};
use super::url;
use crate::net::guard::Guard;
use crate::net::retry::{self, Policy};
use crate::values::UploadMethod;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Every attempt gets at least this long…
    pub min_timeout: Duration,
    /// …plus the time to send the file at this rate (bytes/s).
    pub min_rate: u64,
    pub policy: Policy,
    /// `s3://` destinations.
    pub s3: S3Config,
    /// Which addresses a URL an account token wrote may reach when it connects.
    pub destination_policy: crate::settings::policy::DestinationPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            min_timeout: Duration::from_secs(30),
            min_rate: 256 * 1024,
            policy: Policy::default(),
            s3: S3Config::default(),
            destination_policy: Default::default(),
        }
    }
}

pub struct Http {
    /// For URLs the operator or an admin token wrote: [`Guard::everyone`].
    client: reqwest::Client,
    /// For URLs an account token wrote: the account row of the destination policy.
    account_client: reqwest::Client,
    account_guard: Guard,
    pub cfg: HttpConfig,
    s3: S3,
}

const MAX_REDIRECTS: usize = 10;

/// Read buffer of a streamed upload, and the size up to which a file is read whole (each read
/// is a trip to the blocking pool; `upload_concurrency` × this bounds the memory).
const CHUNK: usize = 256 * 1024;

impl Http {
    pub fn new(cfg: HttpConfig) -> Result<Http, reqwest::Error> {
        let client = |guard: Guard| {
            reqwest::Client::builder()
                .dns_resolver(std::sync::Arc::new(guard))
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("callrec/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let account_guard = Guard {
            policy: cfg.destination_policy,
            writer: crate::settings::policy::Writer::Account,
            ..Guard::everyone()
        };
        let s3 = S3::new(cfg.s3.clone());
        Ok(Http {
            client: client(Guard::everyone())?,
            account_client: client(account_guard.clone())?,
            account_guard,
            cfg,
            s3,
        })
    }

    /// Where this delivery goes.
    pub fn target(claim: &Claim) -> String {
        if let Some(dest) = super::s3::parse(&claim.url) {
            let key = super::s3::key(dest.prefix, claim);
            return format!("s3://{}/{key}", dest.bucket);
        }
        match claim.meta.kind {
            crate::values::RecordingKind::Call => url::upload_url(&claim.url, &claim.meta),
            crate::values::RecordingKind::Caller => {
                url::caller_url(&claim.url, &claim.meta.call.call_id, &claim.meta.ext())
            }
        }
    }

    /// The time one request carrying `bytes` may take.
    fn timeout_for(&self, bytes: u64) -> Duration {
        self.cfg.min_timeout
            + Duration::from_secs_f64(bytes as f64 / self.cfg.min_rate.max(1) as f64)
    }

    /// Makes one attempt and classifies it.
    pub async fn attempt(&self, claim: &Claim) -> Outcome {
        if claim.url.starts_with("s3://") {
            return self
                .s3
                .attempt(
                    claim,
                    |bytes| self.timeout_for(bytes),
                    |error| self.retry(claim, error, None, None),
                )
                .await;
        }
        let path = &claim.meta.file_path;
        // Opened and measured in one trip to the blocking pool; a redirect opens it again.
        let p = path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&p)?;
            let size = f.metadata()?.len();
            // A file no larger than one read buffer is read in the same trip.
            let whole = if size <= CHUNK as u64 {
                let mut v = Vec::with_capacity(size as usize);
                std::io::Read::read_to_end(&mut f, &mut v)?;
                Some(bytes::Bytes::from(v))
            } else {
                None
            };
            Ok::<_, std::io::Error>((f, size, whole))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let (mut first, size, whole) = match opened {
            // The open file serves the first streamed attempt; a file read whole needs it no more.
            Ok((f, size, whole)) => (
                whole.is_none().then(|| tokio::fs::File::from_std(f)),
                size,
                whole,
            ),
            Err(e) => {
                return Outcome::Failed {
                    error: format!("recording file unreadable: {e}"),
                    status: None,
                }
            }
        };
        let timeout = self.timeout_for(size);
        let (mut target, creds) = url::split_userinfo(&Self::target(claim));
        // An account's URL connects under the account row of the policy (and so do its
        // redirects); every other under the row every writer has.
        let by_account = claim
            .meta
            .destinations
            .iter()
            .any(|d| d.by_account && d.url == claim.url && d.method == claim.method);
        let everyone = Guard::everyone();
        let (client, guard) = if by_account {
            (&self.account_client, &self.account_guard)
        } else {
            (&self.client, &everyone)
        };
        let origin_host = host_of(&target);
        let method = match claim.method {
            UploadMethod::Put => reqwest::Method::PUT,
            UploadMethod::Post => reqwest::Method::POST,
        };
        for _ in 0..=MAX_REDIRECTS {
            let body = match &whole {
                Some(b) => reqwest::Body::from(b.clone()),
                None => {
                    let reopened = match first.take() {
                        Some(f) => Ok(f),
                        None => tokio::fs::File::open(path).await,
                    };
                    match reopened {
                        Ok(f) => reqwest::Body::wrap_stream(ReaderStream::with_capacity(f, CHUNK)),
                        Err(e) => {
                            return Outcome::Failed {
                                error: format!("recording file unreadable: {e}"),
                                status: None,
                            }
                        }
                    }
                }
            };
            if let Some(why) = guard.literal_refused(&target) {
                return Outcome::Failed {
                    error: format!("refused by destination_policy: {why}"),
                    status: None,
                };
            }
            let mut req = client
                .request(method.clone(), &target)
                .header(CONTENT_TYPE, claim.meta.mime())
                .header(CONTENT_LENGTH, size)
                .timeout(timeout)
                .body(body);
            // Credentials only go to the host they were given for.
            if let Some((user, pass)) = &creds {
                if host_of(&target) == origin_host {
                    req = req.basic_auth(user, pass.as_ref());
                }
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return self.retry(claim, describe(&e), None, None),
            };
            let status = resp.status().as_u16();
            if resp.status().is_success() || status == 303 {
                return Outcome::Delivered { status };
            }
            if matches!(status, 301 | 302 | 307 | 308) {
                let Some(loc) = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok()) else {
                    return Outcome::Failed {
                        error: format!("HTTP {status} without Location"),
                        status: Some(status),
                    };
                };
                match reqwest::Url::parse(&target).and_then(|b| b.join(loc)) {
                    Ok(next) => {
                        target = next.to_string();
                        continue;
                    }
                    Err(_) => {
                        return Outcome::Failed {
                            error: format!("HTTP {status} with an invalid Location"),
                            status: Some(status),
                        }
                    }
                }
            }
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    retry::parse_retry_after(v, time::OffsetDateTime::now_utc().unix_timestamp())
                });
            let excerpt = body_excerpt(resp).await;
            let error = format!("HTTP {status}: {excerpt}");
            if retry::retryable_status(status) {
                return self.retry(claim, error, Some(status), retry_after);
            }
            return Outcome::Failed {
                error,
                status: Some(status),
            };
        }
        Outcome::Failed {
            error: format!("more than {MAX_REDIRECTS} redirects"),
            status: None,
        }
    }

    /// A retryable failure: schedule the next attempt, or give up when too old.
    fn retry(
        &self,
        claim: &Claim,
        error: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    ) -> Outcome {
        let now = now_us();
        let attempts = claim.attempts + 1;
        let age = Duration::from_micros(now.saturating_sub(claim.since_us));
        if age >= self.cfg.policy.give_up_after {
            return Outcome::Failed {
                error: format!("gave up after {attempts} attempts over {age:?}: {error}"),
                status,
            };
        }
        // The receiver's Retry-After wins (up to an hour); else exponential backoff.
        let delay = match retry_after {
            Some(d) => d.min(Duration::from_secs(3600)),
            None => self.cfg.policy.delay(attempts, retry::jitter()),
        };
        Outcome::Retry {
            next_us: now + delay.as_micros() as u64,
            error,
            status,
        }
    }
}

fn host_of(u: &str) -> Option<String> {
    reqwest::Url::parse(u).ok().and_then(|u| {
        u.host_str()
            .map(|h| format!("{h}:{:?}", u.port_or_known_default()))
    })
}

/// An error description without the URL (which may carry credentials).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_request() {
        "connection broken while sending"
    } else {
        "request failed"
    };
    let mut msg = format!("{kind}: {}", e.without_url_ref());
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

async fn body_excerpt(resp: reqwest::Response) -> String {
    let bytes = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        // Display of a reqwest error names the URL; rebuild it without.
        let s = self.to_string();
        match self.url() {
            Some(u) => s
                .replace(u.as_str(), "<url>")
                .replace(&url::redact(u.as_str()), "<url>"),
            None => s,
        }
    }
}
