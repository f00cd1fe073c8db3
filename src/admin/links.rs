//! Short-lived signed links to a recording's audio, so a browser's `<audio>` element can load
//! (and seek in) a file without the API token in its URL.
//!
//! `POST /v2/accounts/{a}/recordings/{id}/link` (token checked as for every route) answers a
//! path `…/recordings/{id}/audio?expires=<unix s>&sig=<hex>`; `GET` of that path serves the
//! file, with `Range` requests (`206`), to whoever holds the link until it expires.
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
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::console::recording_of;
use super::envelope::{success, ApiError};
use super::handlers::{authorize, ApiResult};
use super::ApiState;
use crate::uploader::spool;

/// How long a link works.
pub const TTL_S: u64 = 300;

/// The process's link key.
#[derive(Clone)]
pub struct LinkKey(std::sync::Arc<[u8; 32]>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(REDACTED)")
    }
}

impl Default for LinkKey {
    /// A fresh random key.
    fn default() -> Self {
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        LinkKey(std::sync::Arc::new(k))
    }
}

impl LinkKey {
    fn mac(&self, account_id: &str, id: &str, expires: u64) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0[..]).expect("HMAC takes any key length");
        m.update(account_id.as_bytes());
        m.update(b"\n");
        m.update(id.as_bytes());
        m.update(b"\n");
        m.update(expires.to_string().as_bytes());
        m
    }

    /// The signature of a link (hex).
    pub fn sign(&self, account_id: &str, id: &str, expires: u64) -> String {
        hex(&self.mac(account_id, id, expires).finalize().into_bytes())
    }

    /// Whether `sig` signs this link (constant time).
    pub fn verify(&self, account_id: &str, id: &str, expires: u64, sig: &str) -> bool {
        let Some(raw) = unhex(sig) else { return false };
        self.mac(account_id, id, expires).verify_slice(&raw).is_ok()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
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

#[derive(Debug, serde::Deserialize)]
pub struct LinkQuery {
    pub expires: u64,
    pub sig: String,
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
