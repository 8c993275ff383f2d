//! Scrub (fixity): every stored copy re-read and re-hashed, rate-limited. Upload keys must hash
//! to their key; other objects must match their MD5 ETag where the server gives one. A copy that
//! fails, or that its server cannot read while it still answers for the object, is queued to be
//! replaced from a verified replica.

use md5::Md5;
use sha2::Digest;

use blobstore::{BlobStore, ListRequest, StoreError};
use futures::StreamExt;

use crate::copy::{expected_digest, KeyHasher, Server};
use crate::limit::RateLimiter;
use crate::metrics::{SCRUB_CHECKED, SCRUB_CORRUPT};
use crate::queue::{Action, Queue};

enum Verdict {
    Good,
    Corrupt(String),
    Gone,
}

async fn verify(
    store: &dyn BlobStore,
    key: &blobstore::Key,
    limiter: Option<&RateLimiter>,
) -> Result<Verdict, String> {
    let got = match store.get(key, None).await {
        Ok(g) => g,
        Err(StoreError::NotFound { .. }) => return Ok(Verdict::Gone),
        Err(e) => return unreadable(store, key, e.to_string()).await,
    };
    let mut h = KeyHasher::default();
    let mut md5 = Md5::new();
    let mut body = got.body;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return unreadable(store, key, e.to_string()).await,
        };
        if let Some(l) = limiter {
            l.acquire(chunk.len() as u64).await;
        }
        h.update(&chunk);
        md5.update(&chunk);
    }
    if let Some(want) = expected_digest(key.as_str()) {
        return Ok(if h.matches(&want) {
            Verdict::Good
        } else {
            Verdict::Corrupt("content does not hash to the key".into())
        });
    }
    let md5 = hex::encode(md5.finalize());
    match got.meta.etag {
        Some(e) if e.len() == 32 && e.chars().all(|c| c.is_ascii_hexdigit()) && e != md5 => {
            Ok(Verdict::Corrupt(format!("MD5 {md5} differs from the ETag {e}")))
        }
        _ => Ok(Verdict::Good),
    }
}

/// A read failed: if the server still answers for the object, the copy is unreadable (corrupt);
/// if it does not answer at all, the server is down and the scrub of it stops.
async fn unreadable(store: &dyn BlobStore, key: &blobstore::Key, why: String) -> Result<Verdict, String> {
    match store.head(key).await {
        Ok(_) => Ok(Verdict::Corrupt(format!("unreadable: {why}"))),
        Err(StoreError::NotFound { .. }) => Ok(Verdict::Gone),
        Err(e) => Err(e.to_string()),
    }
}

/// One full pass over every bucket of every server. Returns (checked, corrupt).
pub async fn pass(
    servers: &[Server],
    buckets: &[String],
    queue: &Queue,
    limiter: Option<&RateLimiter>,
) -> Result<(u64, u64), String> {
    let (mut checked, mut corrupt) = (0, 0);
    for (i, bucket) in buckets.iter().enumerate() {
        for server in servers {
            let Some(store) = server.buckets.get(bucket) else {
                continue;
            };
            let mut req = ListRequest {
                max_keys: 1000,
                ..ListRequest::default()
            };
            loop {
                let page = store
                    .list(&req)
                    .await
                    .map_err(|e| format!("{}: {e}", store.describe()))?;
                for e in &page.entries {
                    match verify(store.as_ref(), &e.key, limiter).await? {
                        Verdict::Good | Verdict::Gone => {}
                        Verdict::Corrupt(why) => {
                            corrupt += 1;
                            SCRUB_CORRUPT.inc();
                            tracing::warn!(server = %server.name, bucket, key = %e.key, why, "scrub: bad copy; queued for repair");
                            queue
                                .enqueue(
                                    bucket,
                                    e.key.as_str(),
                                    Action::Copy,
                                    i as u8 + 1,
                                    std::slice::from_ref(&server.name),
                                )
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    checked += 1;
                    SCRUB_CHECKED.inc();
                }
                match page.next {
                    Some(n) => req.start_after = Some(n),
                    None => break,
                }
            }
        }
    }
    queue.flush().await.map_err(|e| e.to_string())?;
    Ok((checked, corrupt))
}
