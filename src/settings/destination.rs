//! Destinations as written in settings: an `http(s)://` URL, or object storage as
//! `s3://bucket/prefix/`. Parsing is pure; delivering is the uploader's.
//!
//! Invariant: an `s3://` destination names a valid bucket and no credentials (they belong in
//! the configuration, never in a document).

/// An `s3://` destination: the bucket, and the key prefix without surrounding slashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
}

/// `s3://bucket/prefix/…` → bucket and prefix; `None` when it is not such a URL or names
/// credentials (they belong in the configuration).
pub fn parse_s3(url: &str) -> Option<Bucket<'_>> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket || prefix.contains(['?', '#']) {
        return None;
    }
    Some(Bucket {
        bucket,
        prefix: prefix.trim_matches('/'),
    })
}
