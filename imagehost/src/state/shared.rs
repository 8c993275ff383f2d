//! What concurrent requests share while one of them loads an original or renders a variant.

use std::sync::Arc;

use bytes::Bytes;

use crate::inputs::Held;

/// A rendered (or passed-through) image, shared by every request that waited for it.
#[derive(Debug)]
pub struct Variant {
    pub bytes: Bytes,
    pub content_type: &'static str,
    /// The upload key of a fetched original's bytes, when this render saw them: named in
    /// `Surrogate-Key` beside the source key so that a takedown of that upload reaches this
    /// answer in every edge.
    pub content_key: Option<String>,
}

/// An original image's bytes, held in memory for the renders waiting on it.
#[derive(Debug, Clone)]
pub struct Original {
    pub key: String,
    pub bytes: Bytes,
    pub mime: &'static str,
    /// Room in the input budget for `bytes`, given back when the last copy of this is dropped
    /// (after the render that waited for it).
    pub held: Arc<Held>,
    /// Where it came from: only fetched originals are written to the proxy store, and only once
    /// they rendered (a file that fails the pipeline is never kept).
    pub from: OriginalFrom,
    /// `keys::upload_digest_of(bytes)`, when known without hashing them again (the hot cache
    /// keeps it with a fetched original).
    pub content_digest: Option<[u8; 32]>,
}

/// Where an [`Original`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalFrom {
    HotCache,
    Store,
    Fetch,
}
