//! Getting a `/p/` original: the hot cache, then the upload store for our own `D…` uploads (never
//! fetched, never copied into the proxy store), else the proxy store, else a guarded fetch whose
//! result is kept in the proxy store. Concurrent misses for one original share one load.

use std::sync::Arc;

use blobstore::{collect_body, Key};
use bytes::Bytes;

use super::target::Source;
use crate::inputs::{Full, Held};
use crate::sniff::accepted_image;
use crate::state::{AppState, Inner};
pub use crate::state::{Original, OriginalFrom as From};
use crate::stores::Raced;
use crate::ApiError;

/// Largest object read back from a store (variants of huge PNGs can exceed the fetch cap).
const MAX_STORED: u64 = 64 << 20;

/// The user metadata a fetched original is kept in the proxy store with: its content digest
/// (`keys::upload_digest_of`, hex), so that another node rendering it need not hash it again for
/// its takedown key. Only this service writes the proxy bucket (and blobsync copies metadata
/// with the bytes), and a directory fileserver checks a cache object's bytes against their
/// recorded hash before serving them.
pub const CONTENT_DIGEST: &str = "content-digest";

fn typed(key: &str, bytes: Bytes, from: From, held: Held) -> Result<Original, ApiError> {
    let mime = accepted_image(&bytes).ok_or(ApiError::InvalidImage)?;
    Ok(Original {
        key: key.to_string(),
        bytes,
        mime,
        from,
        held: Arc::new(held),
        content_digest: None,
    })
}

fn busy(_: Full) -> ApiError {
    ApiError::Unavailable("originals in memory at their budget".into())
}

/// After a successful render: keep the original in the hot cache and, if it was fetched, in the
/// proxy store (each with its content digest, when the render computed it).
pub async fn keep(state: &AppState, original: &Original, content_digest: Option<[u8; 32]>) {
    let s = state.inner();
    if original.from == From::HotCache {
        return;
    }
    if let Some(cache) = &s.hotcache {
        cache
            .put_with_digest(&original.key, &original.bytes, content_digest)
            .await;
    }
    if original.from == From::Fetch {
        super::store_in_background(
            state,
            &original.key,
            &original.bytes,
            original.mime,
            content_digest,
        );
    }
}

pub async fn get(state: &AppState, source: &Source) -> Result<Original, ApiError> {
    let s = state.inner();
    let key = source.key().to_string();
    if let Some(cache) = &s.hotcache {
        if let Some(cached) = cache.get_with_digest(&key).await {
            let held = Held::default();
            s.inputs
                .hold(&held, cached.bytes.len() as u64)
                .await
                .map_err(busy)?;
            let mut original = typed(&key, cached.bytes, From::HotCache, held)?;
            original.content_digest = cached.digest;
            return Ok(original);
        }
    }
    let (state2, source2) = (state.clone(), source.clone());
    s.originals
        .run(&key, async move { load(&state2, &source2).await })
        .await
        .unwrap_or_else(|| Err(ApiError::Internal("original load panicked".into())))
}

async fn load(state: &AppState, source: &Source) -> Result<Original, ApiError> {
    let s = state.inner();
    let held = Held::default();
    match source {
        Source::Upload(key) => {
            let bytes = from_upload_stores(s, key, &held).await?;
            typed(key, bytes, From::Store, held)
        }
        Source::Remote { url, key } => match read_proxy_stores(s, key, Some(&held)).await? {
            Some((b, digest)) => {
                let mut original = typed(key, b, From::Store, held)?;
                original.content_digest = digest;
                Ok(original)
            }
            None => {
                let fetched = s
                    .fetcher
                    .fetch(url, &s.inputs, &held)
                    .await
                    .map_err(|e| e.to_api())?;
                typed(key, fetched.bytes, From::Fetch, held)
            }
        },
    }
}

async fn from_upload_stores(s: &Inner, key: &str, held: &Held) -> Result<Bytes, ApiError> {
    const MISSING: ApiError = ApiError::BadRequest("Upload not found");
    let k = Key::new(key).map_err(|_| MISSING)?;
    match read_whole(s, &k, Bucket::Uploads, Some(held)).await? {
        Raced::Found(_, (b, _)) => Ok(b),
        Raced::NotFound => Err(MISSING),
        Raced::Unavailable | Raced::Final(_) => Err(ApiError::Unavailable(format!(
            "no reachable fileserver had {key}"
        ))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Bucket {
    Uploads,
    Proxy,
}

/// One object read whole from the fileservers, hedged: a fileserver that stalls before or
/// while sending the body is overtaken by the next. With `held`, room for the body is taken in
/// the input budget first (a wait for room counts as this fileserver's time). With the bytes:
/// the content digest recorded with them, if any ([`CONTENT_DIGEST`]).
async fn read_whole(
    s: &Inner,
    key: &Key,
    bucket: Bucket,
    held: Option<&Held>,
) -> Result<Raced<(Bytes, Option<[u8; 32]>)>, ApiError> {
    let busy_seen = std::sync::atomic::AtomicBool::new(false);
    let read = |fs: &crate::stores::Fileserver| {
        let store = match bucket {
            Bucket::Uploads => fs.uploads.clone(),
            Bucket::Proxy => fs.proxy.clone(),
        };
        let (key, busy_seen) = (key.clone(), &busy_seen);
        async move {
            let obj = match store.get(&key, None).await {
                Ok(obj) => obj,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(held) = held {
                if s.inputs.hold(held, obj.meta.size.min(MAX_STORED)).await.is_err() {
                    busy_seen.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
            }
            let digest = obj
                .meta
                .metadata
                .get(CONTENT_DIGEST)
                .and_then(|h| <[u8; 32]>::try_from(hex::decode(h).ok()?).ok());
            collect_body(obj.body, MAX_STORED)
                .await
                .map(|b| Some((b, digest)))
        }
    };
    let raced = crate::stores::race(&s.stores.health, &s.stores.servers, read, |_| false).await;
    if busy_seen.load(std::sync::atomic::Ordering::Relaxed) && !matches!(raced, Raced::Found(..)) {
        return Err(busy(Full));
    }
    Ok(raced)
}

/// The first fileserver's copy of `key` in the proxy bucket, if any answers with it.
pub async fn from_proxy_stores(s: &Inner, key: &str) -> Option<Bytes> {
    read_proxy_stores(s, key, None)
        .await
        .ok()
        .flatten()
        .map(|(b, _)| b)
}

/// As [`from_proxy_stores`], holding room for an original's bytes in `held`; with the content
/// digest recorded with them, if any.
async fn read_proxy_stores(
    s: &Inner,
    key: &str,
    held: Option<&Held>,
) -> Result<Option<(Bytes, Option<[u8; 32]>)>, ApiError> {
    let Ok(k) = Key::new(key) else {
        return Ok(None);
    };
    Ok(match read_whole(s, &k, Bucket::Proxy, held).await? {
        Raced::Found(_, found) => Some(found),
        // The proxy bucket is a cache: missing or unreachable, the original is fetched again.
        Raced::NotFound | Raced::Unavailable | Raced::Final(_) => None,
    })
}
