//! Fresh memory hits for the fast path ([`crate::hits`]): a cached object's status line and
//! headers in HTTP/1.1 wire form, made once per object, and its body; the LRU is told of the
//! access as pingora does on a hit, so fast-path hits keep objects warm.

use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use pingora::cache::eviction::CacheEntryKey;
use pingora::cache::key::CacheHashKey;
use pingora::cache::CacheKey;
use pingora::http::ResponseHeader;

use super::Store;
use crate::cache::policy;

/// One object the fast path may answer with as it is.
pub struct MemoryHit {
    /// The status line and the stored headers, each line ending in CRLF (no blank line yet).
    pub head: Bytes,
    pub body: Bytes,
    /// Seconds since the object was stored or last revalidated (the `Age` header).
    pub age_secs: u64,
}

/// The status line the fast path answers with.
pub(super) const STATUS_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// Headers that describe one connection, that every answer sets itself, or that stay inside
/// the cluster (surrogate keys).
const DROPPED: [&str; 8] = [
    "server",
    "connection",
    "keep-alive",
    "proxy-connection",
    "age",
    "x-cache",
    "access-control-allow-origin",
    super::tags::HEADER,
];

/// The wire form of a stored response the fast path may serve unchanged
/// ([`policy::fast_path_servable`] decides which).
pub(super) fn wire_head(resp: &ResponseHeader, body_len: usize) -> Option<Bytes> {
    if !policy::fast_path_servable(resp, body_len) {
        return None;
    }
    let mut kept = resp.clone();
    for name in DROPPED {
        kept.remove_header(name);
    }
    let mut out = BytesMut::with_capacity(64 + 48 * kept.headers.len());
    out.put_slice(STATUS_LINE);
    kept.header_to_h1_wire(&mut out);
    // Its own allocation of its own size: what the entry's charge reserved for it.
    Some(Bytes::copy_from_slice(&out))
}

impl Store {
    /// The object under `key` if it is in memory, fresh at `now`, and one the fast path can
    /// serve as it is; `None` sends the request through pingora instead (misses, stale objects,
    /// variants, the disk tier).
    pub fn memory_hit(&self, key: &CacheKey, now: SystemTime) -> Option<MemoryHit> {
        let entry = self.get(&key.primary_bin(), None)?;
        if !policy::fast_path_servable_now(entry.head.fresh_until, entry.head.variance.is_some(), now) {
            return None;
        }
        let head = entry
            .wire
            .get_or_init(|| {
                let meta = entry.meta()?;
                wire_head(meta.response_header(), entry.body.len())
            })
            .clone()?;
        self.frequency
            .record(&crate::cache::disk::Id::of(&(key.primary_bin(), None)));
        if let Some(lru) = *self.eviction.read() {
            let k = CacheEntryKey::from_entry_id(key.to_compact(), None);
            lru.access(&k, entry.weight(), entry.head.fresh_until);
        }
        Some(MemoryHit {
            head,
            body: entry.body.clone(),
            age_secs: now
                .duration_since(entry.head.epoch())
                .unwrap_or_default()
                .as_secs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).expect("header");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("append");
        }
        r
    }

    /// Status, stored headers, body length, served by the fast path.
    type Case<'a> = (u16, &'a [(&'a str, &'a str)], usize, bool);

    #[test]
    fn which_stored_responses_the_fast_path_serves() {
        let ok = [("Content-Type", "image/jpeg"), ("Content-Length", "5")];
        let cases: &[Case] = &[
            (200, &ok, 5, true),
            (200, &ok, 6, false),
            (404, &[("Content-Length", "5")], 5, false),
            (200, &[("Content-Type", "image/jpeg")], 5, false),
            (200, &[("Content-Length", "5"), ("Vary", "Accept")], 5, false),
            (
                200,
                &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                5,
                false,
            ),
        ];
        for (status, headers, len, served) in cases {
            assert_eq!(
                wire_head(&resp(*status, headers), *len).is_some(),
                *served,
                "{status} {headers:?} body {len}"
            );
        }
    }

    #[test]
    fn the_wire_head_keeps_stored_headers_and_drops_per_connection_ones() {
        let r = resp(
            200,
            &[
                ("Content-Type", "image/png"),
                ("Cache-Control", "public, max-age=60"),
                ("Content-Length", "3"),
                ("Server", "imagehost"),
                ("Connection", "close"),
                ("Age", "99"),
            ],
        );
        let head = wire_head(&r, 3).expect("served");
        let text = std::str::from_utf8(&head).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Type: image/png\r\n"), "{text}");
        assert!(text.contains("Cache-Control: public, max-age=60\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(text.ends_with("\r\n") && !text.ends_with("\r\n\r\n"), "{text}");
        for gone in ["Server", "Connection", "Age"] {
            assert!(!text.contains(gone), "{gone} dropped: {text}");
        }
    }
}
