//! A cached object's `CacheMeta` kept compact: its times, variance and status, and its response
//! header as one buffer of HTTP/1.1 header lines. A parsed header kept instead (two header maps,
//! an allocation per name and per value) cost about 1.5 KiB an object, most of a thumbnail's own
//! size; these lines are the size of the header. A hit through pingora gets a `CacheMeta` rebuilt
//! from them, its names and values slices of the buffer, not copies.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Version};
use pingora::cache::key::HashBinary;
use pingora::cache::CacheMeta;
use pingora::http::ResponseHeader;

use super::weight::allocated;

pub(super) struct Head {
    pub(super) fresh_until: SystemTime,
    created: SystemTime,
    /// When it was last revalidated (`created` if never).
    updated: SystemTime,
    epoch_override: Option<SystemTime>,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    pub(super) variance: Option<HashBinary>,
    status: u16,
    version: Version,
    /// A reason phrase other than the status's own.
    reason: Option<Box<str>>,
    /// `Name: value\r\n` for each header, in order, names in the case they came in.
    lines: Bytes,
}

impl Head {
    pub(super) fn of(meta: &CacheMeta) -> Head {
        let h = meta.response_header();
        let mut lines = BytesMut::with_capacity(32 * h.headers.len());
        h.header_to_h1_wire(&mut lines);
        let reason = h
            .get_reason_phrase()
            .filter(|r| Some(*r) != h.status.canonical_reason())
            .map(Box::from);
        Head {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            updated: meta.updated(),
            epoch_override: meta.epoch_override(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            variance: meta.variance(),
            status: h.status.as_u16(),
            version: h.version,
            reason,
            // Its own allocation, not a share of a larger buffer.
            lines: Bytes::copy_from_slice(&lines),
        }
    }

    /// What its age counts from.
    pub(super) fn epoch(&self) -> SystemTime {
        self.epoch_override.unwrap_or(self.updated)
    }

    /// Bytes it holds besides itself, as allocated.
    pub(super) fn bytes(&self) -> usize {
        allocated(self.lines.len()) + self.reason.as_ref().map_or(0, |r| allocated(r.len()))
    }

    /// Bytes of its header lines.
    pub(super) fn lines_len(&self) -> usize {
        self.lines.len()
    }

    /// The `CacheMeta` it was made of, as far as pingora lets one be made (`None` only if its
    /// header no longer parses). As with a clone before: `updated` comes back as `created` with
    /// the epoch override carrying the revalidation, `provenance` as `created` (pingora sets it
    /// itself), and extensions empty.
    pub(super) fn meta(&self) -> Option<CacheMeta> {
        let lines = self.lines.iter().filter(|b| **b == b'\n').count();
        let mut header = ResponseHeader::build(self.status, Some(lines)).ok()?;
        header.set_version(self.version);
        if let Some(r) = &self.reason {
            header.set_reason_phrase(Some(r)).ok()?;
        }
        let mut at = 0;
        while at < self.lines.len() {
            let end = at + self.lines[at..].windows(2).position(|w| w == b"\r\n")?;
            let colon = at + self.lines[at..end].iter().position(|b| *b == b':')?;
            let name = self.lines.slice(at..colon);
            let value = HeaderValue::from_maybe_shared(self.lines.slice((colon + 2).min(end)..end)).ok()?;
            header.append_header(name, value).ok()?;
            at = end + 2;
        }
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate,
            self.stale_if_error,
            header,
        );
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        // A revalidated object's age counts from its revalidation.
        match self.epoch_override {
            Some(e) => meta.set_epoch_override(e),
            None if self.updated != self.created => meta.set_epoch_override(self.updated),
            None => {}
        }
        Some(meta)
    }
}

/// The status line and header lines of `h` as one buffer.
#[cfg(test)]
fn wire(h: &ResponseHeader) -> Vec<u8> {
    use bytes::BufMut;
    let mut out = BytesMut::new();
    out.put_slice(format!("{} {}\r\n", h.status, h.get_reason_phrase().unwrap_or("")).as_bytes());
    h.header_to_h1_wire(&mut out);
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Status, reason, every header in order and case, freshness, stale windows, variance and age
    /// come back as they went in.
    #[test]
    fn a_meta_is_rebuilt_as_it_was() {
        let now = SystemTime::now() - Duration::from_secs(100);
        let mut h = ResponseHeader::build(203, None).expect("header");
        h.set_reason_phrase(Some("Rebuilt Here")).expect("reason");
        for (k, v) in [
            ("Content-Type", "image/webp"),
            ("cache-control", "public, max-age=3600"),
            ("X-Many", "one"),
            ("X-Many", "two, three"),
            ("Surrogate-Key", "DQmA p"),
            ("X-Empty", ""),
        ] {
            h.append_header(k.to_string(), v).expect("append");
        }
        let mut meta = CacheMeta::new(now + Duration::from_secs(3600), now, 30, 60, h);
        meta.set_variance([7; 16]);
        meta.set_epoch_override(now + Duration::from_secs(40));
        let head = Head::of(&meta);
        let back = head.meta().expect("parses");
        assert_eq!(wire(back.response_header()), wire(meta.response_header()));
        assert_eq!(
            (back.fresh_until(), back.created(), back.epoch()),
            (meta.fresh_until(), meta.created(), meta.epoch())
        );
        assert_eq!(
            (
                back.stale_while_revalidate_sec(),
                back.stale_if_error_sec(),
                back.variance()
            ),
            (30, 60, Some([7; 16]))
        );
        assert_eq!(back.response_header().headers.get_all("x-many").iter().count(), 2);
        assert!(head.bytes() < 200, "{} bytes", head.bytes());
    }
}
