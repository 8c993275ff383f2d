//! `GET /:hash/:filename?` (§1.9, D2): an upload streamed from the first fileserver that has it.
//!
//! Fileservers are read hedged (`stores::hedge`): the best recent one first, the next as well
//! when it is slow to answer; not-found and unavailable both fall through to the next (and are
//! counted). Answers carry the sniffed type, the immutable Cache-Control, a strong
//! ETag derived from the key, 304 for a matching If-None-Match and 206 for a single Range. A
//! missing upload is a bare 404; when a server that might hold it is down, a 503 instead, so a
//! transient outage is never cached as "gone".

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use blobstore::{BodyStream, ByteRange, GetObject, Key, StoreError};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::keys::UPLOAD_KEY_LEN;
use crate::metrics::SERVED;
use crate::sniff::{serve_type, ACCEPTED_IMAGES, SNIFF_LEN};
use crate::state::AppState;
use crate::stores::Raced;
use crate::ApiError;

pub const IMMUTABLE: &str = "public,max-age=29030400,immutable";

/// The source keys an answer was derived from, for caches in front (the edge bans by them when a
/// key is taken down, whatever the URL it was cached under). Space separated, as Fastly's.
pub static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// `GET /:hash/:filename?` and `HEAD` of it (the filename is never read).
pub async fn serve(
    State(state): State<AppState>,
    hash: String,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let s = state.inner();
    if hash.len() != UPLOAD_KEY_LEN {
        return ApiError::InvalidParam("hash").into_response();
    }
    if s.blacklist.has_image_hash(&hash) || s.takedowns.covers(&hash) {
        return ApiError::Blacklisted.into_response();
    }
    let Ok(key) = Key::new(hash.as_str()) else {
        return bare_status(StatusCode::NOT_FOUND);
    };
    let etag = format!("\"{hash}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag || t.trim() == "*" || t.trim() == format!("W/{etag}"))
        })
    {
        // The key names the bytes, so a matching tag is enough to say "unchanged", but only
        // for an object that exists: a 304 for a missing one would be cached as present.
        return match exists(&s.stores, &key).await {
            Some(true) => {
                SERVED.with_label_values(&["304"]).inc();
                (
                    [
                        (header::ETAG, etag.as_str()),
                        (header::CACHE_CONTROL, IMMUTABLE),
                        (SURROGATE_KEY.clone(), hash.as_str()),
                    ],
                    StatusCode::NOT_MODIFIED,
                )
                    .into_response()
            }
            Some(false) => {
                SERVED.with_label_values(&["404"]).inc();
                bare_status(StatusCode::NOT_FOUND)
            }
            None => {
                SERVED.with_label_values(&["503"]).inc();
                ApiError::Unavailable(format!("no reachable fileserver had {key}")).into_response()
            }
        };
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);

    let head = method == Method::HEAD;
    let read = |fs: &crate::stores::Fileserver| {
        let (store, key) = (fs.uploads.clone(), key.clone());
        async move {
            let found = if head {
                store.head(&key).await.map(|meta| GetObject {
                    meta,
                    range: None,
                    body: empty(),
                })
            } else {
                store.get(&key, range).await
            };
            match found {
                Ok(obj) => Ok(Some(obj)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    let is_final = |e: &StoreError| matches!(e, StoreError::InvalidRange { .. });
    match crate::stores::race(&s.stores.health, &s.stores.servers, read, is_final).await {
        Raced::Found(i, obj) => respond(&s.stores.servers[i], &key, obj, etag, head).await,
        Raced::Final(StoreError::InvalidRange { size }) => {
            SERVED.with_label_values(&["416"]).inc();
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response()
        }
        Raced::Final(_) | Raced::Unavailable => {
            SERVED.with_label_values(&["503"]).inc();
            ApiError::Unavailable(format!("no reachable fileserver had {key}")).into_response()
        }
        Raced::NotFound => {
            SERVED.with_label_values(&["404"]).inc();
            bare_status(StatusCode::NOT_FOUND)
        }
    }
}

/// Whether a fileserver holds `key`: `Some(false)` only when every one answered that it does not.
async fn exists(stores: &crate::stores::Stores, key: &Key) -> Option<bool> {
    let read = |fs: &crate::stores::Fileserver| {
        let (store, key) = (fs.uploads.clone(), key.clone());
        async move {
            match store.head(&key).await {
                Ok(_) => Ok(Some(())),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    match crate::stores::race(&stores.health, &stores.servers, read, |_| false).await {
        Raced::Found(..) => Some(true),
        Raced::NotFound => Some(false),
        Raced::Unavailable | Raced::Final(_) => None,
    }
}

fn bare_status(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

fn empty() -> BodyStream {
    Box::pin(futures::stream::empty())
}

async fn respond(
    fs: &crate::stores::Fileserver,
    key: &Key,
    obj: GetObject,
    etag: String,
    head_only: bool,
) -> Response {
    let GetObject { meta, range, body } = obj;
    // The type comes from the bytes. Uploads store the type sniffed when they arrived, so a HEAD
    // or a range can reuse it; objects from elsewhere (an old store) are sniffed here.
    let stored = meta
        .content_type
        .as_deref()
        .and_then(|t| ACCEPTED_IMAGES.iter().find(|a| **a == t))
        .copied();
    let (content_type, body) = match (stored, range) {
        (Some(t), _) if head_only || range.is_some() => (t, body),
        (_, None) if !head_only => {
            let (head, body) = peek(body, SNIFF_LEN).await;
            (serve_type(&head), body)
        }
        _ => {
            let head = match fs
                .uploads
                .get(
                    key,
                    Some(ByteRange::From {
                        start: 0,
                        end: Some(SNIFF_LEN as u64 - 1),
                    }),
                )
                .await
            {
                Ok(o) => blobstore::collect_body(o.body, SNIFF_LEN as u64)
                    .await
                    .unwrap_or_default(),
                Err(_) => Bytes::new(),
            };
            (serve_type(&head), body)
        }
    };
    let (status, length) = match range {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, last - first + 1),
        None => (StatusCode::OK, meta.size),
    };
    SERVED.with_label_values(&[status.as_str()]).inc();
    let mut resp = Response::new(if head_only {
        Body::empty()
    } else {
        Body::from_stream(body)
    });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(key.as_str()) {
        h.insert(SURROGATE_KEY.clone(), v);
    }
    if let Some((first, last)) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{}", meta.size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// Reads until `n` bytes (or the end) are buffered; returns them and a stream that still yields
/// every byte from the start.
async fn peek(mut body: BodyStream, n: usize) -> (Bytes, BodyStream) {
    let mut buf = BytesMut::new();
    let mut failed = None;
    while buf.len() < n {
        match body.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => break,
        }
    }
    let head = buf.freeze();
    let first = futures::stream::once({
        let head = head.clone();
        async move { Ok(head) }
    });
    let rest: BodyStream = match failed {
        Some(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        None => body,
    };
    (head, Box::pin(first.chain(rest)))
}

/// A single `bytes=` range; anything else (several ranges, other units, bad syntax) is ignored,
/// and the whole object is served, as RFC 9110 allows.
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    match (a.trim(), b.trim()) {
        ("", "") => None,
        ("", n) => n.parse().ok().map(ByteRange::Suffix),
        (s, "") => s.parse().ok().map(|start| ByteRange::From { start, end: None }),
        (s, e) => {
            let (start, end): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
            (end >= start).then_some(ByteRange::From {
                start,
                end: Some(end),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_header_table() {
        let f = |start, end| Some(ByteRange::From { start, end });
        let cases = [
            ("bytes=0-99", f(0, Some(99))),
            ("bytes=100-", f(100, None)),
            ("bytes=-5", Some(ByteRange::Suffix(5))),
            (" bytes= 3 - 4 ", f(3, Some(4))),
            ("bytes=5-1", None),
            ("bytes=0-1,4-5", None),
            ("items=0-1", None),
            ("bytes=-", None),
            ("bytes=a-b", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_range(v), want, "{v}");
        }
    }

    #[tokio::test]
    async fn peek_keeps_every_byte() {
        let chunks: Vec<std::io::Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cdef"))];
        let (head, body) = peek(Box::pin(futures::stream::iter(chunks)), 3).await;
        assert_eq!(&head[..], b"abcdef");
        let all: Vec<Bytes> = body.map(|c| c.unwrap()).collect().await;
        assert_eq!(all.concat(), b"abcdef");
    }
}
