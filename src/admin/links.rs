//! Short-lived signed links to a recording's audio, so a browser's `<audio>` element can load
//! (and seek in) a file without the API token in its URL.
//!
//! `POST /v2/accounts/{a}/recordings/{id}/link` (token checked as for every route) answers a
//! path `…/recordings/{id}/audio?expires=<unix s>&sig=<base64url>`; `GET` of that path serves the
//! file, with `Range` requests (`206`), to whoever holds the link until it expires.
//!
//! On a shared database the file is on the node that recorded it: a link asked of another node
//! is made by the recording's node (the request forwarded with the caller's token) and carries
//! `&node=<it>`; this node then relays the audio from that node's API (its address as the node
//! wrote it; `Range` passed on), and that node checks its own signature.
//!
//! Why a signed link rather than fetching the file with the token into a blob: the element
//! streams and seeks with range requests instead of holding a whole hour (57.6 MB of WAV) in
//! the page first; the link names one recording of one account and dies after [`TTL_S`]
//! seconds; the token itself never appears in a URL, a history or a log.
//!
//! Invariants: the signature is HMAC-SHA256 over account, recording and expiry with a key
//! made at random when the process starts and never written anywhere (a restart, or another
//! node, invalidates every link: the console asks again); a link is checked in constant time
//! before anything is read; an encrypted recording is never served for playing (callrec holds
//! no private key: its bytes are not audio).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::envelope::{success, ApiError};
use super::handlers::{authorize, recording_of, ApiResult};
use super::ApiState;
use crate::uploader::spool;

/// How long a link works.
pub const TTL_S: u64 = 300;

/// The process's link key: one HMAC-SHA256 block, so keying cannot fail.
#[derive(Clone)]
pub struct LinkKey(std::sync::Arc<[u8; 64]>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(REDACTED)")
    }
}

impl Default for LinkKey {
    /// A fresh random key (version 4 UUIDs: the operating system's randomness).
    fn default() -> Self {
        let mut k = [0u8; 64];
        for part in k.chunks_mut(16) {
            part.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        LinkKey(std::sync::Arc::new(k))
    }
}

impl LinkKey {
    fn mac(&self, account_id: &str, id: &str, expires: u64) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&(*self.0).into());
        m.update(account_id.as_bytes());
        m.update(b"\n");
        m.update(id.as_bytes());
        m.update(b"\n");
        m.update(expires.to_string().as_bytes());
        m
    }

    /// The signature of a link (URL-safe base64).
    pub fn sign(&self, account_id: &str, id: &str, expires: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(account_id, id, expires).finalize().into_bytes())
    }

    /// Whether `sig` signs this link (constant time; a signature of the wrong length or
    /// alphabet never does).
    pub fn verify(&self, account_id: &str, id: &str, expires: u64, sig: &str) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        self.mac(account_id, id, expires).verify_slice(&raw).is_ok()
    }
}

/// A path segment, percent-encoded (RFC 3986's unreserved characters stay as they are).
fn enc(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

fn now_s() -> u64 {
    crate::store::now_us() / 1_000_000
}

/// 409 for a recording whose bytes are not audio callrec can play (encrypted).
pub(super) fn playable(item: &spool::Item) -> Result<(), ApiError> {
    if item.meta.encryption.is_some() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: "this recording is encrypted to the account's recording_public_key; callrec holds no private key, so it cannot be played here: download it and decrypt it with age".into(),
            data: json!({"encrypted": true}),
        });
    }
    Ok(())
}

/// `POST /v2/accounts/{a}/recordings/{id}/link`.
pub async fn make_link(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&state, &headers, Some(&account_id)).await?;
    let item = recording_of(&state, &account_id, &id).await?;
    playable(&item)?;
    if item.node != state.store.node() {
        return remote_link(&state, &headers, &account_id, &id, &item.node).await;
    }
    let expires = now_s() + TTL_S;
    let sig = state.links.sign(&account_id, &id, expires);
    let url = format!(
        "/v2/accounts/{}/recordings/{}/audio?expires={expires}&sig={sig}",
        enc(&account_id),
        enc(&id)
    );
    Ok(success(
        StatusCode::OK,
        json!({"url": url, "expires": expires, "content_type": item.meta.mime()}),
        None,
    ))
}

/// A link made by `node` (which holds the file), pointed back at this node's relay.
async fn remote_link(
    state: &ApiState,
    headers: &HeaderMap,
    account_id: &str,
    id: &str,
    node: &str,
) -> ApiResult {
    let token = super::erasure::raw_token(headers);
    let empty = axum::body::Bytes::new();
    let req = super::control::Forward {
        method: reqwest::Method::POST,
        path: format!(
            "/v2/accounts/{}/recordings/{}/link",
            enc(account_id),
            enc(id)
        ),
        token: &token,
        body: &empty,
        forwarded: headers.contains_key(super::control::FORWARDED),
    };
    let resp = super::control::forward(state, node, req).await?;
    if !resp.status().is_success() {
        return Ok(resp);
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("node {node}: {e}")))?;
    let mut v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("node {node}: {e}")))?;
    let Some(url) = v["data"]["url"].as_str().map(str::to_string) else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("node {node} answered without a link"),
        ));
    };
    v["data"]["url"] = json!(format!("{url}&node={}", enc(node)));
    v["data"]["node"] = json!(node);
    Ok(success(StatusCode::OK, v["data"].take(), None))
}

#[derive(Debug, serde::Deserialize)]
pub struct LinkQuery {
    pub expires: u64,
    pub sig: String,
    /// The node whose link this is, when not this one (see the module note).
    pub node: Option<String>,
}

/// Relays a link's audio from `node`, which checks its own signature.
async fn relay(
    state: &ApiState,
    headers: &HeaderMap,
    node: &str,
    account_id: &str,
    id: &str,
    q: &LinkQuery,
) -> ApiResult {
    let unreachable = |why: String| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("the file is on node {node}, which cannot be reached: {why}"),
        data: json!({"node": node}),
    };
    if headers.contains_key(super::control::FORWARDED) {
        return Err(unreachable(
            "the request came from another node already".into(),
        ));
    }
    let Some(base) = super::handlers::stored(state.store.node_api(node)).await? else {
        return Err(unreachable("it never said where its API answers".into()));
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut req = client
        .get(format!(
            "{base}/v2/accounts/{}/recordings/{}/audio?expires={}&sig={}",
            enc(account_id),
            enc(id),
            q.expires,
            enc(&q.sig)
        ))
        .header(super::control::FORWARDED, state.store.node());
    if let Some(r) = headers.get(header::RANGE) {
        req = req.header(header::RANGE, r.clone());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| unreachable(crate::telemetry::error_chain(&e)))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = axum::http::Response::builder().status(status);
    for h in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        header::CACHE_CONTROL,
    ] {
        if let Some(v) = resp.headers().get(h.as_str()) {
            if let Ok(v) = axum::http::HeaderValue::from_bytes(v.as_bytes()) {
                out = out.header(h, v);
            }
        }
    }
    out.body(Body::from_stream(resp.bytes_stream()))
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))
}

/// The byte range a `Range: bytes=a-b` header asks of a `len`-byte file (one range only);
/// `Err` when it cannot be satisfied.
fn range(h: &str, len: u64) -> Result<(u64, u64), ()> {
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') || len == 0 {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (len.saturating_sub(n), len - 1)
        }
        (s, "") => (s.parse().map_err(|_| ())?, len - 1),
        (s, e) => (
            s.parse().map_err(|_| ())?,
            e.parse::<u64>().map_err(|_| ())?.min(len - 1),
        ),
    };
    if start > end || start >= len {
        return Err(());
    }
    Ok((start, end))
}

/// `GET /v2/accounts/{a}/recordings/{id}/audio?expires=&sig=`.
pub async fn audio(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(String, String)>,
    Query(q): Query<LinkQuery>,
    headers: HeaderMap,
) -> ApiResult {
    if let Some(node) = q.node.as_deref().filter(|n| *n != state.store.node()) {
        return relay(&state, &headers, node, &account_id, &id, &q).await;
    }
    if !state.links.verify(&account_id, &id, q.expires, &q.sig) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not a valid link (made by another node or before a restart?): ask for a new one",
        ));
    }
    if q.expires < now_s() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the link has expired: ask for a new one",
        ));
    }
    let item = recording_of(&state, &account_id, &id).await?;
    playable(&item)?;
    let mut file = tokio::fs::File::open(&item.meta.file_path)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the file is not stored on this node ({}): delivered and not kept, or removed",
                    item.node
                ),
            )
        })?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let common = [
        (header::CONTENT_TYPE, item.meta.mime().to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CACHE_CONTROL, "private, no-store".to_string()),
    ];
    let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
        return Ok((
            StatusCode::OK,
            common,
            [(header::CONTENT_LENGTH, len.to_string())],
            body,
        )
            .into_response());
    };
    let Ok((start, end)) = range(r, len) else {
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response());
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the file: {e}"),
            )
        })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        file.take(end - start + 1),
    ));
    Ok((
        StatusCode::PARTIAL_CONTENT,
        common,
        [
            (header::CONTENT_LENGTH, (end - start + 1).to_string()),
            (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_only_for_their_recording_account_and_expiry() {
        let k = LinkKey::default();
        let sig = k.sign("a", "r1", 100);
        assert!(k.verify("a", "r1", 100, &sig));
        assert!(!k.verify("a", "r1", 101, &sig));
        assert!(!k.verify("a", "r2", 100, &sig));
        assert!(!k.verify("b", "r1", 100, &sig));
        assert!(
            !LinkKey::default().verify("a", "r1", 100, &sig),
            "another process's key"
        );
        assert!(!k.verify("a", "r1", 100, "zz"));
        assert!(!k.verify("a", "r1", 100, &"é".repeat(32)));
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-", 10), Ok((0, 9)));
        assert_eq!(range("bytes=2-4", 10), Ok((2, 4)));
        assert_eq!(range("bytes=2-40", 10), Ok((2, 9)));
        assert_eq!(range("bytes=-3", 10), Ok((7, 9)));
        assert_eq!(range("bytes=10-", 10), Err(()));
        assert_eq!(range("bytes=0-1,3-4", 10), Err(()));
        assert_eq!(range("items=0-1", 10), Err(()));
        assert_eq!(range("bytes=5-2", 10), Err(()));
    }
}
