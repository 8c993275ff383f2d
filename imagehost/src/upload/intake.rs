//! Reading an upload request: the multipart body streamed into a spool while hashing, with every
//! limit enforced before or while bytes arrive (§2.1 steps 3–7, D8).

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use futures::TryStreamExt;

use crate::keys::{UploadDigests, UploadHasher};
use crate::spool_budget::Budget;
use crate::upload::spool::{Spool, Spooled};
use crate::ApiError;

/// A received file: its bytes, name and digests.
pub struct Received {
    pub body: Spooled,
    pub filename: String,
    pub digests: UploadDigests,
}

impl Received {
    /// What a fileserver would compute of the bytes (with the challenge prefix as the digest
    /// prefix: the key's digest), when they are held in memory: each fileserver then records
    /// these instead of hashing the body again. A file spool is read back from disk, so the
    /// fileservers hash what they read.
    pub fn known_digests(&self) -> Option<blobstore::Digests> {
        match &self.body {
            Spooled::Memory { .. } => Some(blobstore::Digests {
                size: self.body.len(),
                sha256: self.digests.image_hash,
            }),
            Spooled::File { .. } => None,
        }
    }
}

/// Checks the headers (multipart, numeric Content-Length within the limit), then streams the
/// first file part into a spool, hashed for `checksum_route`'s signature rule. Nothing beyond
/// `max_size` bytes is ever read.
pub async fn receive(
    headers: &HeaderMap,
    body: Body,
    checksum_route: bool,
    max_size: u64,
    spool_memory: usize,
    spool_dir: Arc<Path>,
    budget: &Budget,
) -> Result<Received, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.contains("multipart/form-data") {
        return Err(ApiError::BadRequest("Request must be multipart/form-data"));
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or(ApiError::LengthRequired)?;
    if length > max_size {
        return Err(ApiError::PayloadTooLarge);
    }
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::BadRequest("Invalid multipart boundary"))?;
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max_size)
            .per_field(max_size),
    );
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, limits);

    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        // The first part with a filename is the file, whatever its field name (OH uses busboy).
        let Some(filename) = field.file_name().map(str::to_string) else {
            continue;
        };
        let mut spool = Spool::new(spool_memory, spool_dir, length, budget.clone());
        let mut hasher = UploadHasher::new(checksum_route);
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if spool.len() + chunk.len() as u64 > max_size {
                return Err(ApiError::PayloadTooLarge);
            }
            hasher.update(&chunk);
            spool.write(chunk).await.map_err(spool_error)?;
        }
        let body = spool.finish().await.map_err(spool_error)?;
        return Ok(Received {
            body,
            filename,
            digests: hasher.finish(),
        });
    }
    Err(ApiError::FileMissing)
}

fn multipart_error(e: multer::Error) -> ApiError {
    if service::http::is_timeout(&e) {
        return ApiError::RequestTimeout;
    }
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            ApiError::PayloadTooLarge
        }
        multer::Error::StreamReadFailed(_)
        | multer::Error::IncompleteStream
        | multer::Error::IncompleteFieldData { .. } => ApiError::BadRequest("Upload body incomplete"),
        _ => ApiError::BadRequest("Malformed multipart body"),
    }
}

/// A spool that cannot be written: a full disk is its own clear answer (507, retry later); the
/// spool's temporary file is gone with it.
fn spool_error(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        tracing::warn!(error = %e, "upload spool full: upload.spool_dir has no space left");
        ApiError::InsufficientStorage
    } else {
        ApiError::Internal(format!("spool: {e}"))
    }
}
