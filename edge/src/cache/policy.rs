//! The one place that decides what the edge caches and serves from its cache, for both paths
//! (pingora's proxy phases and the fast hit path): which requests may be answered from the cache
//! and under which key parts, which upstream responses are stored and for how long (upstream
//! `Cache-Control`, `Set-Cookie`, `Vary`), which variant a request gets (the normalised `Accept`
//! that keeps image formats apart without exploding their number), when stale copies are served,
//! and which stored responses the fast path may answer itself.

use std::time::{Duration, SystemTime};

use pingora::cache::cache_control::CacheControl;
use pingora::cache::filters::resp_cacheable;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheMetaDefaults, NoCacheReason, RespCacheable, VarianceBuilder};
use pingora::http::{RequestHeader, ResponseHeader};

mod headers;
pub use headers::{answer_cors, drop_echoed_request_id, echo_request_id, take_over_cors};

/// Requests the cache answers and fills: `GET` and `HEAD`. Every other method passes through.
pub fn method_cacheable(method: &str) -> bool {
    method == "GET" || method == "HEAD"
}

/// Whether the cache may answer this request at all.
pub fn request_cacheable(req: &RequestHeader) -> bool {
    method_cacheable(req.method.as_str())
}

/// The path and query of an origin-form request target, split as the cache key takes them; `None`
/// for a target the two paths could read differently, which the fast path then leaves to
/// pingora: one with a fragment (`#`, which pingora's URI parser cuts off) or with any byte that
/// is not printable ASCII (which it refuses).
pub fn key_target(target: &str) -> Option<(&str, Option<&str>)> {
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) || target.contains('#') {
        return None;
    }
    Some(match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    })
}

/// Freshness when the upstream says nothing: an hour for 200/301/404 (imagehost always says
/// something; this is for other origins), 60 s stale-while-revalidate, 1 day stale-if-error.
pub const DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(default_ttl, 60, 86_400);

fn default_ttl(status: http::StatusCode) -> Option<Duration> {
    match status.as_u16() {
        200 | 203 | 301 | 308 | 404 | 410 => Some(Duration::from_secs(3600)),
        _ => None,
    }
}

/// Headers a cached response may vary on; any other `Vary` makes the response uncacheable.
const VARY_ALLOWED: [&str; 2] = ["accept", "accept-encoding"];

/// The header names a response's `Vary` headers list, trimmed.
fn vary_names(resp: &ResponseHeader) -> impl Iterator<Item = &str> {
    resp.headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Whether an upstream response is stored, and its freshness. A request that carried credentials
/// (`Authorization`) shares only explicitly public responses.
pub fn response_cacheable(resp: &ResponseHeader, req: &RequestHeader) -> RespCacheable {
    let authorization = req.headers.contains_key(http::header::AUTHORIZATION);
    if resp.headers.contains_key(http::header::SET_COOKIE) {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let vary: Vec<String> = vary_names(resp).map(str::to_ascii_lowercase).collect();
    if !vary_is_supported(&vary) {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let cc = CacheControl::from_resp_headers(resp);
    resp_cacheable(cc.as_ref(), resp.clone(), authorization, &DEFAULTS)
}

/// `Vary: *` and headers outside the allow-list cannot be served correctly from a shared cache.
pub fn vary_is_supported(names: &[String]) -> bool {
    names.iter().all(|n| VARY_ALLOWED.contains(&n.as_str()))
}

/// Whether the cached response's `Vary` names `name`.
pub fn varies_on(resp: &ResponseHeader, name: &str) -> bool {
    vary_names(resp).any(|s| s.eq_ignore_ascii_case(name))
}

/// The variant of a stored response that a request gets: its `Accept` class when the response
/// varies on `Accept`, its encoding class when on `Accept-Encoding` (no others are stored).
pub fn variance(resp: &ResponseHeader, req: &http::HeaderMap) -> Option<HashBinary> {
    let mut v = VarianceBuilder::new();
    if varies_on(resp, "accept") {
        v.add_value("accept", accept_bucket(req));
    }
    if varies_on(resp, "accept-encoding") {
        let header = req
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok());
        v.add_value("accept-encoding", encoding_bucket(header));
    }
    v.finalize()
}

/// Whether a stale copy may be served: while it is revalidated (`error` is `None`; the stored
/// stale-while-revalidate window decides), and when the upstream failed (stale-if-error), never
/// for the edge's own errors.
pub fn serve_stale(error: Option<&pingora::Error>) -> bool {
    error.is_none_or(|e| e.esource() == &pingora::ErrorSource::Upstream)
}

/// Whether the fast path may answer with a stored response as it is, judged once per stored
/// object: a 200 with no `Vary` (variants are left to pingora), no transfer coding, and a
/// `Content-Length` that matches the body. Anything else is served by pingora from the same store.
pub fn fast_path_servable(resp: &ResponseHeader, body_len: usize) -> bool {
    let h = &resp.headers;
    if resp.status != http::StatusCode::OK
        || h.contains_key(http::header::VARY)
        || h.contains_key(http::header::TRANSFER_ENCODING)
    {
        return false;
    }
    let length = h
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    length == Some(body_len)
}

/// …and judged at each hit: fresh at `now`, and the only variant (the primary slot of an object
/// with variants holds one of them, which only pingora's variance lookup may pick).
pub fn fast_path_servable_now(fresh_until: SystemTime, varies: bool, now: SystemTime) -> bool {
    fresh_until >= now && !varies
}

/// The few classes of `Accept` an image CDN distinguishes: which modern formats the client takes,
/// read from every `Accept` line exactly as imagehost's format negotiation reads them, so a
/// variant never lands in a bucket whose clients cannot decode it.
pub fn accept_bucket(headers: &http::HeaderMap) -> &'static str {
    let takes = |ty: &str| service::accept::header_takes(headers, ty);
    match (takes("image/avif"), takes("image/webp")) {
        (true, true) => "avif,webp",
        (true, false) => "avif",
        (false, true) => "webp",
        (false, false) => "",
    }
}

/// The `Accept-Encoding` classes: gzip or identity (images are rarely compressed further).
pub fn encoding_bucket(accept_encoding: Option<&str>) -> &'static str {
    match accept_encoding {
        Some(v) if v.split(',').any(|p| p.trim().starts_with("br")) => "br",
        Some(v) if v.split(',').any(|p| p.trim().starts_with("gzip")) => "gzip",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn cacheability_table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, bool);
        let cases: &[Case] = &[
            (&[("cache-control", "public, max-age=60")], false, true),
            (&[], false, true),
            (&[("cache-control", "private, max-age=60")], false, false),
            (&[("cache-control", "no-store")], false, false),
            (
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                false,
                false,
            ),
            (
                &[("cache-control", "max-age=60"), ("vary", "Accept")],
                false,
                true,
            ),
            (&[("cache-control", "max-age=60"), ("vary", "*")], false, false),
            (
                &[("cache-control", "max-age=60"), ("vary", "Cookie")],
                false,
                false,
            ),
            (&[("cache-control", "max-age=60")], true, false),
            (&[("cache-control", "public, max-age=60")], true, true),
        ];
        for (headers, auth, want) in cases {
            let mut req = RequestHeader::build("GET", b"/DQmX", None).unwrap();
            if *auth {
                req.insert_header("authorization", "Bearer x").unwrap();
            }
            let got = matches!(
                response_cacheable(&resp(headers), &req),
                RespCacheable::Cacheable(_)
            );
            assert_eq!(got, *want, "{headers:?} auth={auth}");
        }
    }

    #[test]
    fn accept_buckets() {
        let cases = [
            (None, ""),
            (Some("*/*"), ""),
            (Some("image/webp,*/*"), "webp"),
            (
                Some("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),
                "avif,webp",
            ),
            (Some("image/avif;q=0, image/webp;q=0.9"), "webp"),
            (Some("IMAGE/AVIF"), "avif"),
            (Some("text/html"), ""),
        ];
        for (input, want) in cases {
            let mut headers = http::HeaderMap::new();
            if let Some(v) = input {
                headers.insert(http::header::ACCEPT, v.parse().expect("header value"));
            }
            assert_eq!(accept_bucket(&headers), want, "{input:?}");
        }
        assert_eq!(encoding_bucket(Some("gzip, deflate, br")), "br");
        assert_eq!(encoding_bucket(Some("gzip")), "gzip");
        assert_eq!(encoding_bucket(None), "");
    }

    #[test]
    fn what_is_stored_and_what_the_fast_path_answers_itself() {
        // Headers, body length: stored by pingora, then answered by the fast path as it is.
        type Case<'a> = (&'a [(&'a str, &'a str)], usize, bool, bool);
        let cases: &[Case] = &[
            (
                &[("cache-control", "public, max-age=60"), ("content-length", "5")],
                5,
                true,
                true,
            ),
            (
                &[("cache-control", "public, max-age=60"), ("content-length", "5")],
                4,
                true,
                false,
            ),
            (&[("cache-control", "public, max-age=60")], 5, true, false),
            (
                &[
                    ("cache-control", "public, max-age=60"),
                    ("content-length", "5"),
                    ("vary", "Accept"),
                ],
                5,
                true,
                false,
            ),
            (
                &[
                    ("cache-control", "public, max-age=60"),
                    ("transfer-encoding", "chunked"),
                ],
                5,
                true,
                false,
            ),
            (
                &[("cache-control", "no-store"), ("content-length", "5")],
                5,
                false,
                true,
            ),
        ];
        let req = RequestHeader::build("GET", b"/DQmX", None).unwrap();
        for (headers, len, stored, fast) in cases {
            let r = resp(headers);
            let got = matches!(response_cacheable(&r, &req), RespCacheable::Cacheable(_));
            assert_eq!(got, *stored, "stored: {headers:?}");
            // Only what was stored is ever looked at by the fast path; the second rule is
            // about the stored form alone.
            assert_eq!(
                fast_path_servable(&r, *len),
                *fast,
                "fast path: {headers:?} body {len}"
            );
        }
        let mut not_found = resp(&[("content-length", "5")]);
        not_found.set_status(404).unwrap();
        assert!(!fast_path_servable(&not_found, 5));
    }

    #[test]
    fn requests_and_key_targets() {
        for (method, want) in [("GET", true), ("HEAD", true), ("POST", false), ("PURGE", false)] {
            assert_eq!(method_cacheable(method), want, "{method}");
        }
        type Split<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: &[(&str, Split)] = &[
            ("/DQmX/a.jpg", Some(("/DQmX/a.jpg", None))),
            (
                "/p/abc?width=64&mode=fit",
                Some(("/p/abc", Some("width=64&mode=fit"))),
            ),
            ("/a?", Some(("/a", Some("")))),
            ("/DQmX/a.jpg?w=1#x", None),
            ("/DQmX/a#b.jpg", None),
            ("/caf\u{e9}.jpg", None),
            ("/a b", None),
            ("http://h/a", None),
            ("*", None),
        ];
        for (target, want) in cases {
            assert_eq!(key_target(target), *want, "{target}");
        }
    }

    #[test]
    fn variants_follow_vary_and_the_request_class() {
        let mut req = http::HeaderMap::new();
        req.insert(http::header::ACCEPT, "image/webp,*/*".parse().unwrap());
        let plain = resp(&[]);
        assert_eq!(variance(&plain, &req), None);
        let by_accept = resp(&[("vary", "Accept")]);
        let webp = variance(&by_accept, &req);
        assert!(webp.is_some());
        let mut other = http::HeaderMap::new();
        other.insert(
            http::header::ACCEPT,
            "image/webp;q=0.9, text/html".parse().unwrap(),
        );
        assert_eq!(variance(&by_accept, &other), webp, "same class, same variant");
        assert_ne!(variance(&by_accept, &http::HeaderMap::new()), webp);
    }
}
