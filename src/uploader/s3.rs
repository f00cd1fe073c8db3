//! Object storage destinations: a `url` of the form `s3://bucket/prefix/` uploads each recording
//! as the object `prefix/<file name>`, the file name being the one the HTTP URL format gives it
//! (`call_recording_<call id>.<ext>`; `<call id>.<ext>` for `record_caller`), with the call's
//! metadata as object metadata (`x-amz-meta-*`, the HTTP format's query fields).
//!
//! Endpoint, region and credentials come from callrec's configuration (`s3_*` keys) or else the
//! standard `AWS_*` environment variables; never from the URL or a document, and they are never
//! logged. A file larger than the multipart threshold goes up in parts (at most two in flight,
//! so memory stays at a few parts per upload); a failed multipart upload is aborted.
//!
//! Invariant: the client does not retry by itself: every failure is one attempt's outcome,
//! scheduled again by the same backoff, give-up and durability rules as HTTP deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};

use super::spool::{Claim, Outcome};
use super::url;

/// Where object storage is and who callrec is to it. Unset fields fall back to `AWS_*`.
#[derive(Clone)]
pub struct S3Config {
    /// `http://host:port` of an S3-compatible server; unset: AWS (`AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// Never logged (`Debug` hides it).
    pub secret_access_key: Option<String>,
    /// Files larger than this go up in parts of `part_size` bytes.
    pub multipart_threshold: u64,
    pub part_size: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "REDACTED"),
            )
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// S3's smallest part but the last.
pub const MIN_PART: usize = 5 * 1024 * 1024;

pub use crate::settings::destination::{parse_s3 as parse, Bucket};

/// The object key of a delivery: the prefix's segments, then the file name (each segment
/// percent-encoded where object stores would misread it).
pub fn key(prefix: &str, claim: &Claim) -> ObjectPath {
    let name = match claim.meta.kind {
        crate::values::RecordingKind::Call => url::file_name(&claim.meta),
        crate::values::RecordingKind::Caller => {
            format!("{}.{}", claim.meta.call.call_id, claim.meta.ext())
        }
    };
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .map(PathPart::from)
        .chain(std::iter::once(PathPart::from(name.as_str())))
        .collect()
}

/// The clients, one per bucket, made on first use.
pub struct S3 {
    cfg: S3Config,
    clients: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl S3 {
    pub fn new(cfg: S3Config) -> S3 {
        S3 {
            cfg,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, bucket: &str, timeout: Duration) -> Result<Arc<AmazonS3>, String> {
        let mut clients = self.clients.lock().map_err(|_| "client cache poisoned")?;
        if let Some(c) = clients.get(bucket) {
            return Ok(c.clone());
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: Duration::ZERO,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(Duration::from_secs(10)),
            );
        if let Some(e) = &self.cfg.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &self.cfg.region {
            b = b.with_region(r);
        }
        if let Some(k) = &self.cfg.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &self.cfg.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        // The builder's errors name settings, never secrets.
        let c = Arc::new(b.build().map_err(|e| format!("object storage: {e}"))?);
        clients.insert(bucket.to_string(), c.clone());
        Ok(c)
    }

    /// Makes one attempt; `retry` turns a retryable error into the next attempt's schedule.
    pub async fn attempt(
        &self,
        claim: &Claim,
        timeout: impl Fn(u64) -> Duration,
        retry: impl Fn(String) -> Outcome,
    ) -> Outcome {
        let Some(dest) = parse(&claim.url) else {
            return Outcome::Failed {
                error: "not an s3://bucket/prefix/ URL".into(),
                status: None,
            };
        };
        let path = claim.meta.file_path.clone();
        let size = match tokio::fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) => {
                return Outcome::Failed {
                    error: format!("recording file unreadable: {e}"),
                    status: None,
                }
            }
        };
        let multipart = size > self.cfg.multipart_threshold;
        let per_request = if multipart {
            self.cfg.part_size.max(MIN_PART) as u64
        } else {
            size
        };
        let client = match self.client(dest.bucket, timeout(per_request)) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Failed {
                    error: e,
                    status: None,
                }
            }
        };
        let key = key(dest.prefix, claim);
        let attributes = attributes(claim);
        let sent = if multipart {
            self.put_parts(&client, &key, &path, attributes).await
        } else {
            match tokio::fs::read(&path).await {
                Ok(bytes) => client
                    .put_opts(
                        &key,
                        PutPayload::from(bytes),
                        PutOptions {
                            attributes,
                            ..PutOptions::default()
                        },
                    )
                    .await
                    .map(|_| ())
                    .map_err(Failure::Store),
                Err(e) => Err(Failure::File(e)),
            }
        };
        match sent {
            Ok(()) => Outcome::Delivered { status: 200 },
            Err(Failure::File(e)) => Outcome::Failed {
                error: format!("recording file unreadable: {e}"),
                status: None,
            },
            Err(Failure::Store(e)) => {
                let error = describe(&e);
                if permanent(&e) {
                    Outcome::Failed {
                        error,
                        status: None,
                    }
                } else {
                    retry(error)
                }
            }
        }
    }

    async fn put_parts(
        &self,
        client: &AmazonS3,
        key: &ObjectPath,
        path: &str,
        attributes: Attributes,
    ) -> Result<(), Failure> {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path).await.map_err(Failure::File)?;
        let upload = client
            .put_multipart_opts(
                key,
                PutMultipartOptions {
                    attributes,
                    ..PutMultipartOptions::default()
                },
            )
            .await
            .map_err(Failure::Store)?;
        let part = self.cfg.part_size.max(MIN_PART);
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Failure::File(e));
                }
            };
            if n == 0 {
                break;
            }
            // At most two parts in flight: memory stays bounded whatever the file's size.
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(Failure::Store(e));
            }
            writer.write(&buf[..n]);
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        writer.finish().await.map(|_| ()).map_err(Failure::Store)
    }
}

enum Failure {
    File(std::io::Error),
    Store(object_store::Error),
}

/// The call's metadata as object metadata, and the format's content type.
fn attributes(claim: &Claim) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::ContentType, claim.meta.mime().to_string().into());
    for pair in url::metadata_query(&claim.meta).split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            if !k.is_empty() {
                a.insert(
                    Attribute::Metadata(k.to_string().into()),
                    v.to_string().into(),
                );
            }
        }
    }
    a
}

/// Errors no retry can mend: refused credentials or permissions, a missing bucket.
fn permanent(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::NotFound { .. }
            | object_store::Error::NotImplemented
            | object_store::Error::UnknownConfigurationKey { .. }
    )
}

/// The error's text; object_store's messages name the request, never the credentials.
fn describe(e: &object_store::Error) -> String {
    crate::telemetry::error_chain(e).chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls() {
        assert_eq!(
            parse("s3://rec-ordings/a/b/"),
            Some(Bucket {
                bucket: "rec-ordings",
                prefix: "a/b"
            })
        );
        assert_eq!(
            parse("s3://recordings"),
            Some(Bucket {
                bucket: "recordings",
                prefix: ""
            })
        );
        for bad in [
            "s3://AK:SK@recordings/x/",
            "s3://Recordings/",
            "s3://ab/",
            "s3://rec/x?y",
            "http://rec/",
            "s3://-rec/",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
