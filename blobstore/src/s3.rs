//! The S3 backend (aws-sdk-s3): any S3-compatible server, path-style, with standard calls only.
//!
//! Small bodies (up to one part) are buffered and sent with one PutObject; larger ones go up as a
//! multipart upload of `part_size` parts, so memory stays at about one part whatever the object
//! size, and an upload that fails midway is aborted (nothing becomes visible). Retries with backoff
//! apply only to retriable failures (connection errors, timeouts, 5xx, throttling).

use std::collections::HashMap;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::store::page_size;
use crate::{
    BlobStore, BodyStream, ByteRange, DigestingWriter, GetObject, Key, Layout, ListEntry, ListPage,
    ListRequest, ObjectMeta, PutOptions, PutResult, S3Config, StoreError,
};

/// One bucket on an S3-compatible server.
#[derive(Debug, Clone)]
pub struct S3Store {
    name: String,
    client: Client,
    bucket: String,
    layout: Layout,
    part_size: usize,
    idle_timeout: Duration,
}

impl S3Store {
    pub fn new(name: &str, cfg: &S3Config, bucket: &str, layout: Layout) -> Result<Self, StoreError> {
        let refuse = |reason: String| StoreError::Backend {
            store: format!("{name}/{bucket}"),
            reason,
        };
        let (access, secret) = cfg.credentials().map_err(refuse)?;
        let mut http = aws_smithy_http_client::Builder::new();
        if !cfg.reuses_connections() {
            http = http.pool_max_idle_per_host(0);
        }
        let http = http
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .endpoint_url(cfg.endpoint.clone())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(Credentials::new(access, secret, None, None, "hive-config"))
            .force_path_style(cfg.path_style)
            // Garage (and other non-AWS servers) reject the default streaming checksum trailer.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(cfg.connect_timeout)
                    .read_timeout(cfg.read_timeout)
                    .operation_attempt_timeout(cfg.attempt_timeout)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(cfg.max_attempts.max(1))
                    .with_initial_backoff(cfg.initial_backoff)
                    .with_max_backoff(cfg.initial_backoff * 20),
            )
            .build();
        Ok(Self {
            name: format!("{name}/{bucket}"),
            client: Client::from_conf(conf),
            bucket: bucket.to_string(),
            layout,
            part_size: cfg.part_size.clamp(5 << 20, 5 << 30) as usize,
            idle_timeout: cfg.read_timeout,
        })
    }

    fn err<E>(
        &self,
        key: Option<&Key>,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        let reason = || format!("{}", DisplayErrorContext(&err));
        match &err {
            SdkError::ServiceError(_) => match (status, code.as_deref()) {
                (_, Some("NoSuchBucket")) => StoreError::Backend {
                    store: self.name.clone(),
                    reason: reason(),
                },
                (Some(404), _) | (_, Some("NoSuchKey" | "NotFound")) => StoreError::NotFound {
                    key: key.map(Key::to_string).unwrap_or_default(),
                },
                (Some(s), _) if s >= 500 || s == 429 => StoreError::Unavailable {
                    store: self.name.clone(),
                    reason: reason(),
                },
                (_, Some("SlowDown" | "RequestTimeout" | "InternalError")) => StoreError::Unavailable {
                    store: self.name.clone(),
                    reason: reason(),
                },
                _ => StoreError::Backend {
                    store: self.name.clone(),
                    reason: reason(),
                },
            },
            SdkError::ConstructionFailure(_) => StoreError::Backend {
                store: self.name.clone(),
                reason: reason(),
            },
            _ => StoreError::Unavailable {
                store: self.name.clone(),
                reason: reason(),
            },
        }
    }

    async fn put_single(
        &self,
        stored: &str,
        data: Bytes,
        opts: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        let len = data.len() as i64;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(stored)
            .content_length(len)
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata_map(opts))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.err(None, e))?;
        Ok(out.e_tag().map(unquote))
    }

    /// Uploads `first` and the rest of `body` as parts; aborts the upload on any failure.
    async fn put_multipart(
        &self,
        stored: &str,
        first: Bytes,
        body: &mut BodyStream,
        digest: &mut DigestingWriter,
        opts: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(stored)
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata_map(opts))
            .send()
            .await
            .map_err(|e| self.err(None, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(stored, &upload_id, first, body, digest).await;
        match result {
            Ok(parts) => {
                let done = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(stored)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await;
                match done {
                    Ok(out) => Ok(out.e_tag().map(unquote)),
                    Err(e) => {
                        self.abort(stored, &upload_id).await;
                        Err(self.err(None, e))
                    }
                }
            }
            Err(e) => {
                self.abort(stored, &upload_id).await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        stored: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut BodyStream,
        digest: &mut DigestingWriter,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let mut parts = Vec::new();
        let mut pending = Some(first);
        let mut number = 1i32;
        while let Some(data) = pending.take() {
            let len = data.len() as i64;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(stored)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(len)
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(|e| self.err(None, e))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(out.e_tag().map(unquote))
                    .part_number(number)
                    .build(),
            );
            number += 1;
            let next = fill_part(body, digest, self.part_size).await?;
            if !next.is_empty() {
                pending = Some(next);
            }
        }
        Ok(parts)
    }

    async fn abort(&self, stored: &str, upload_id: &str) {
        let r = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(stored)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(store = %self.name, key = stored, error = %DisplayErrorContext(&e), "could not abort multipart upload");
        }
    }
}

/// Reads from `body` until `size` bytes are buffered or the body ends, hashing as it goes.
async fn fill_part(
    body: &mut BodyStream,
    digest: &mut DigestingWriter,
    size: usize,
) -> Result<Bytes, StoreError> {
    let mut buf = BytesMut::new();
    while buf.len() < size {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(StoreError::Body)?;
                digest.update(&chunk)?;
                buf.extend_from_slice(&chunk);
            }
            None => break,
        }
    }
    // A chunk may overshoot the part size; parts need not be equal, only ≥ 5 MiB except the last.
    Ok(buf.freeze())
}

/// What GET and HEAD responses say about an object.
fn object_meta(
    size: u64,
    etag: Option<&str>,
    content_type: Option<&str>,
    modified: Option<&aws_smithy_types::DateTime>,
    metadata: Option<&HashMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        size,
        etag: etag.map(unquote),
        content_type: content_type.map(str::to_string),
        last_modified: modified.and_then(to_system_time),
        metadata: metadata
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

/// S3 servers quote ETags (`"9e10…"`); callers compare the bare hex.
fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn metadata_map(opts: &PutOptions) -> Option<HashMap<String, String>> {
    (!opts.metadata.is_empty()).then(|| {
        opts.metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn to_system_time(dt: &aws_smithy_types::DateTime) -> Option<SystemTime> {
    u64::try_from(dt.secs())
        .ok()
        .map(|s| UNIX_EPOCH + Duration::new(s, dt.subsec_nanos()))
}

/// Parses `bytes first-last/total`.
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// Ends a body with a `TimedOut` error if no bytes arrive for `idle`.
fn with_idle_timeout(inner: BodyStream, idle: Duration) -> BodyStream {
    Box::pin(futures::stream::unfold(Some(inner), move |state| async move {
        let mut s = state?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(item)) => Some((item, Some(s))),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(io::ErrorKind::TimedOut, "object body stalled")),
                None,
            )),
        }
    }))
}

#[async_trait]
impl BlobStore for S3Store {
    fn describe(&self) -> &str {
        &self.name
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    async fn put(&self, key: &Key, mut body: BodyStream, opts: &PutOptions) -> Result<PutResult, StoreError> {
        let stored = self.layout.stored_name(key)?;
        if let (true, Some(known)) = (opts.if_absent, opts.known) {
            match self.head(key).await {
                Ok(meta) if meta.size == known.size => {
                    return Ok(PutResult {
                        digests: known,
                        etag: meta.etag,
                        present: true,
                    })
                }
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut digest = DigestingWriter::trusting(opts.max_size, None, opts.digest_prefix);
        let first = fill_part(&mut body, &mut digest, self.part_size).await?;
        let etag = if first.len() < self.part_size {
            self.put_single(&stored, first, opts).await?
        } else {
            self.put_multipart(&stored, first, &mut body, &mut digest, opts)
                .await?
        };
        Ok(PutResult {
            digests: digest.finish(),
            etag,
            present: false,
        })
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<GetObject, StoreError> {
        let stored = self.layout.stored_name(key)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&stored)
            .set_range(range.map(|r| r.header_value()));
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                let size = self.head(key).await?.size;
                return Err(StoreError::InvalidRange { size });
            }
            Err(e) => return Err(self.err(Some(key), e)),
        };
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let (resolved, size) = match out.content_range().and_then(parse_content_range) {
            Some((first, last, total)) if range.is_some() => (Some((first, last)), total),
            _ => (None, length),
        };
        let meta = object_meta(
            size,
            out.e_tag(),
            out.content_type(),
            out.last_modified(),
            out.metadata(),
        );
        let stream: BodyStream = Box::pin(futures::stream::unfold(out.body, |mut b| async move {
            b.next().await.map(|r| (r.map_err(io::Error::other), b))
        }));
        Ok(GetObject {
            meta,
            range: resolved,
            body: with_idle_timeout(stream, self.idle_timeout),
        })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta, StoreError> {
        let stored = self.layout.stored_name(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&stored)
            .send()
            .await
            .map_err(|e| self.err(Some(key), e))?;
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        Ok(object_meta(
            size,
            out.e_tag(),
            out.content_type(),
            out.last_modified(),
            out.metadata(),
        ))
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let stored = self.layout.stored_name(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&stored)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.err(Some(key), e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage, StoreError> {
        let limit = page_size(req);
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix((!req.prefix.is_empty()).then(|| req.prefix.clone()))
            .set_start_after(req.start_after.clone())
            .max_keys(limit as i32)
            .send()
            .await
            .map_err(|e| self.err(None, e))?;
        let mut entries = Vec::with_capacity(out.contents().len());
        let mut last = None;
        for obj in out.contents() {
            let Some(name) = obj.key() else { continue };
            last = Some(name.to_string());
            let Some(key) = self.layout.key_of(name) else {
                tracing::debug!(store = %self.name, name, "skipping an object that is not a key of this layout");
                continue;
            };
            entries.push(ListEntry {
                key,
                stored_name: name.to_string(),
                size: obj.size().unwrap_or(0).max(0) as u64,
                etag: obj.e_tag().map(unquote),
            });
        }
        let next = if out.is_truncated().unwrap_or(false) {
            last
        } else {
            None
        };
        Ok(ListPage { entries, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(parse_content_range("bytes 5-5/6"), Some((5, 5, 6)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
