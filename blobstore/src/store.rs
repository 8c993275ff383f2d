//! The `BlobStore` trait and the request/response types every backend shares.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::{Digests, Key, StoreError};

/// A streamed object body. Errors are I/O errors; a truncated stream must end with an error.
pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// A body from bytes already in memory.
pub fn body_from_bytes(data: impl Into<Bytes>) -> BodyStream {
    let data = data.into();
    Box::pin(futures::stream::once(async move { Ok(data) }))
}

/// Reads a whole body into memory, refusing more than `limit` bytes. For small objects and tests.
pub async fn collect_body(mut body: BodyStream, limit: u64) -> Result<Bytes, StoreError> {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StoreError::Body)?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Options for [`BlobStore::put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Refuse (and store nothing) once the body exceeds this many bytes.
    pub max_size: Option<u64>,
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*` on S3). Names: lower-case ASCII letters, digits and `-`.
    pub metadata: BTreeMap<String, String>,
    /// A rebuildable cache entry (the proxy bucket): a store may skip what makes the put survive
    /// a crash (a directory store's fsyncs). A crash may then lose it, never have it served torn:
    /// reads check such an object against what its put recorded and answer `NotFound` if it
    /// does not match.
    pub cache: bool,
    /// The body's digests, when the caller computed them over these very bytes and holds them
    /// in memory: a directory store records them instead of hashing the body again (an upload
    /// written to two fileservers is then hashed once, not once more per fileserver). The size
    /// is still counted, and a body of another size is refused with nothing stored.
    pub known: Option<crate::Digests>,
    /// What the put's SHA-256 covers before the body: a put computes, records and returns
    /// sha256(prefix ‖ body), and `known` digests must be of that form. Empty (the default): the
    /// body's plain SHA-256. Uploads give the imagehoster's challenge prefix, since their key is
    /// that digest: one pass over an upload then gives its key, what its signature signs, and what
    /// each fileserver records to check it by.
    pub digest_prefix: &'static str,
    /// Store nothing if the key is held already at the body's `known` size (keys that are
    /// content hashes: a re-upload), and say so ([`PutResult::present`]). A directory store looks
    /// in the same blocking call that would write; an S3 store asks for a head first. Without
    /// `known` digests a store may write anyway.
    pub if_absent: bool,
}

/// What a successful put stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub digests: Digests,
    /// The server's ETag (MD5 hex for single-part puts; `…-N` for multipart on S3).
    pub etag: Option<String>,
    /// The key was held already (`PutOptions::if_absent`): nothing was written, and `digests`
    /// are the body's as given.
    pub present: bool,
}

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    /// Size of the whole object in bytes.
    pub size: u64,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub last_modified: Option<SystemTime>,
    pub metadata: BTreeMap<String, String>,
}

/// A byte range of an object, as in an HTTP `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=start-` or `bytes=start-end` (end inclusive).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The inclusive `(first, last)` byte positions within an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), StoreError> {
        let bad = StoreError::InvalidRange { size };
        match self {
            ByteRange::From { start, end } => {
                if start >= size || end.is_some_and(|e| e < start) {
                    return Err(bad);
                }
                Ok((start, end.map_or(size - 1, |e| e.min(size - 1))))
            }
            ByteRange::Suffix(n) => {
                if n == 0 || size == 0 {
                    return Err(bad);
                }
                Ok((size.saturating_sub(n), size - 1))
            }
        }
    }

    /// The `Range` header value for this range.
    pub fn header_value(self) -> String {
        match self {
            ByteRange::From {
                start,
                end: Some(end),
            } => format!("bytes={start}-{end}"),
            ByteRange::From { start, end: None } => format!("bytes={start}-"),
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

/// A body being read, with the object's metadata and the part of it the body covers.
pub struct GetObject {
    pub meta: ObjectMeta,
    /// Inclusive `(first, last)` positions when a range was requested; `None` for the whole object.
    pub range: Option<(u64, u64)>,
    pub body: BodyStream,
}

impl fmt::Debug for GetObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetObject")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// One page of a listing request.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Only stored names starting with this.
    pub prefix: String,
    /// Only stored names sorting strictly after this (resume point: the previous page's `next`).
    pub start_after: Option<String>,
    /// At most this many entries (capped at 1000).
    pub max_keys: usize,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub key: Key,
    /// The name the layout stores it under; listings are sorted by this, byte-wise.
    pub stored_name: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// A page of results; `next` is `Some(start_after)` while more may follow.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub entries: Vec<ListEntry>,
    pub next: Option<String>,
}

pub(crate) const MAX_LIST_KEYS: usize = 1000;

pub(crate) fn page_size(req: &ListRequest) -> usize {
    match req.max_keys {
        0 => MAX_LIST_KEYS,
        n => n.min(MAX_LIST_KEYS),
    }
}

/// A bucket on a fileserver.
///
/// Puts are atomic: a reader sees the old object, or the new one whole, never a mix or a prefix; a
/// failed or refused put leaves nothing behind. Deletes are idempotent. Listings are sorted
/// byte-wise by stored name and paginate with `start_after`.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// `fileserver/bucket`, for logs and metrics.
    fn describe(&self) -> &str;

    /// How this bucket names keys (what a listing's `prefix` is matched against).
    fn layout(&self) -> crate::Layout;

    /// Streams `body` in, hashing as it goes; returns the digests once the object is stored whole.
    async fn put(&self, key: &Key, body: BodyStream, opts: &PutOptions) -> Result<PutResult, StoreError>;

    /// Streams an object (or a range of it) out.
    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<GetObject, StoreError>;

    async fn head(&self, key: &Key) -> Result<ObjectMeta, StoreError>;

    /// Whether a get costs about what a head does: a local file opened in one call, no transfer
    /// (a small one is read whole by it, so a caller that finds every replica present pays those
    /// reads). A caller about to read from whichever replica holds an object may then get where
    /// it would head, and read from what it got.
    fn local(&self) -> bool {
        false
    }

    /// Removes an object; succeeds when it was already absent.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    async fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage, StoreError>;

    /// Whether the bucket answers, at a cost that does not grow with what it holds (health
    /// checks and readiness probes). By default a one-key listing, which is that on S3.
    async fn probe(&self) -> Result<(), StoreError> {
        let req = ListRequest {
            max_keys: 1,
            ..ListRequest::default()
        };
        self.list(&req).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(range, object size, resolved inclusive span or None for unsatisfiable)`.
    type RangeCase = (ByteRange, u64, Option<(u64, u64)>);

    #[test]
    fn range_resolution_table() {
        let f = |start, end| ByteRange::From { start, end };
        let cases: &[RangeCase] = &[
            (f(0, Some(0)), 10, Some((0, 0))),
            (f(0, None), 10, Some((0, 9))),
            (f(5, Some(100)), 10, Some((5, 9))),
            (f(9, Some(9)), 10, Some((9, 9))),
            (f(10, None), 10, None),
            (f(3, Some(2)), 10, None),
            (f(0, None), 0, None),
            (ByteRange::Suffix(3), 10, Some((7, 9))),
            (ByteRange::Suffix(30), 10, Some((0, 9))),
            (ByteRange::Suffix(0), 10, None),
            (ByteRange::Suffix(1), 0, None),
        ];
        for (range, size, want) in cases {
            assert_eq!(range.resolve(*size).ok(), *want, "{range:?} of {size}");
        }
        assert_eq!(f(1, Some(2)).header_value(), "bytes=1-2");
        assert_eq!(f(1, None).header_value(), "bytes=1-");
        assert_eq!(ByteRange::Suffix(4).header_value(), "bytes=-4");
    }
}
