//! Getting a `/p/` original: the hot cache, then the upload store for our own `D…` uploads (never
//! fetched, never copied into the proxy store), else the proxy store, else a guarded fetch whose
//! result is kept in the proxy store. Concurrent misses for one original share one load.

use std::sync::Arc;

use blobstore::{collect_body, Key};
use bytes::Bytes;

use super::target::Source;
use crate::http::{AppState, Inner};
use crate::inputs::{Full, Held};
use crate::sniff::accepted_image;
use crate::ApiError;

/// Largest object read back from a store (variants of huge PNGs can exceed the fetch cap).
const MAX_STORED: u64 = 64 << 20;

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
    pub from: From,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    HotCache,
    Store,
    Fetch,
}

fn typed(key: &str, bytes: Bytes, from: From, held: Held) -> Result<Original, ApiError> {
    let mime = accepted_image(&bytes).ok_or(ApiError::InvalidImage)?;
    Ok(Original {
        key: key.to_string(),
        bytes,
        mime,
        from,
        held: Arc::new(held),
    })
}

fn busy(_: Full) -> ApiError {
    ApiError::Unavailable("originals in memory at their budget".into())
}

/// After a successful render: keep the original in the hot cache and, if it was fetched, in the
/// proxy store.
pub async fn keep(state: &AppState, original: &Original) {
    let s = state.inner();
    if original.from == From::HotCache {
        return;
    }
    if let Some(cache) = &s.hotcache {
        cache.put(&original.key, &original.bytes).await;
    }
    if original.from == From::Fetch {
        super::store_in_background(state, &original.key, &original.bytes, original.mime);
    }
}

pub async fn get(state: &AppState, source: &Source) -> Result<Original, ApiError> {
    let s = state.inner();
    let key = source.key().to_string();
    if let Some(cache) = &s.hotcache {
        if let Some(bytes) = cache.get(&key).await {
            let held = Held::default();
            s.inputs.hold(&held, bytes.len() as u64).await.map_err(busy)?;
            return typed(&key, bytes, From::HotCache, held);
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
            Some(b) => typed(key, b, From::Store, held),
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
    let mut unavailable = false;
    for fs in &s.stores.servers {
        match fs.uploads.get(&k, None).await {
            Ok(obj) => match hold_then_collect(s, obj, held).await? {
                Ok(b) => return Ok(b),
                Err(e) => {
                    unavailable = true;
                    tracing::warn!(fileserver = %fs.name, key, error = %e, "upload read failed; trying the next fileserver");
                }
            },
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                unavailable = true;
                tracing::warn!(fileserver = %fs.name, key, error = %e, "upload read failed; trying the next fileserver");
            }
        }
    }
    if unavailable {
        return Err(ApiError::Unavailable(format!(
            "no reachable fileserver had {key}"
        )));
    }
    Err(MISSING)
}

/// An object's body once room for its size is held (none asked for `held == None`: variants,
/// which go straight out as the answer).
async fn hold_then_collect(
    s: &Inner,
    obj: blobstore::GetObject,
    held: &Held,
) -> Result<Result<Bytes, blobstore::StoreError>, ApiError> {
    s.inputs
        .hold(held, obj.meta.size.min(MAX_STORED))
        .await
        .map_err(busy)?;
    Ok(collect_body(obj.body, MAX_STORED).await)
}

/// The first fileserver's copy of `key` in the proxy bucket, if any answers with it.
pub async fn from_proxy_stores(s: &Inner, key: &str) -> Option<Bytes> {
    read_proxy_stores(s, key, None).await.ok().flatten()
}

/// As [`from_proxy_stores`], holding room for an original's bytes in `held`.
async fn read_proxy_stores(s: &Inner, key: &str, held: Option<&Held>) -> Result<Option<Bytes>, ApiError> {
    let Ok(k) = Key::new(key) else {
        return Ok(None);
    };
    for fs in &s.stores.servers {
        match fs.proxy.get(&k, None).await {
            Ok(obj) => {
                let body = match held {
                    Some(held) => hold_then_collect(s, obj, held).await?,
                    None => collect_body(obj.body, MAX_STORED).await,
                };
                match body {
                    Ok(b) => return Ok(Some(b)),
                    Err(e) => {
                        tracing::warn!(fileserver = %fs.name, key, error = %e, "proxy store read failed")
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(fileserver = %fs.name, key, error = %e, "proxy store read failed"),
        }
    }
    Ok(None)
}
