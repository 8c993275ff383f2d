//! What may be cached and for how long: upstream `Cache-Control`, `Set-Cookie`, `Vary`, and the
//! normalised `Accept` that keeps image-format variants apart without exploding their number.

use std::time::Duration;

use pingora::cache::cache_control::CacheControl;
use pingora::cache::filters::resp_cacheable;
use pingora::cache::{CacheMetaDefaults, NoCacheReason, RespCacheable};
use pingora::http::ResponseHeader;

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

/// Decides cacheability of an upstream response. `authorization` is whether the request carried
/// credentials (then only explicitly public responses are shared).
pub fn response_cacheable(resp: &ResponseHeader, authorization: bool) -> RespCacheable {
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

/// imagehost (like the imagehoster's CORS middleware) echoes any `Origin` back and adds
/// `Vary: Origin`. Cached as is, that is one copy of every image per site that embeds it; instead
/// the edge strips both before caching and answers CORS itself ([`answer_cors`]) the same way.
pub fn take_over_cors(resp: &mut ResponseHeader) -> pingora::Result<()> {
    resp.remove_header(&http::header::ACCESS_CONTROL_ALLOW_ORIGIN);
    let vary: Vec<String> = vary_names(resp)
        .filter(|s| !s.eq_ignore_ascii_case("origin"))
        .map(str::to_string)
        .collect();
    resp.remove_header(&http::header::VARY);
    if !vary.is_empty() {
        resp.insert_header(http::header::VARY, vary.join(", "))?;
    }
    Ok(())
}

/// The client-facing half of [`take_over_cors`]: echo the request's `Origin`, `Vary: Origin`.
pub fn answer_cors(req: &pingora::http::RequestHeader, resp: &mut ResponseHeader) -> pingora::Result<()> {
    if let Some(origin) = req.headers.get(http::header::ORIGIN) {
        resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
    }
    resp.append_header(http::header::VARY, "Origin")?;
    Ok(())
}

/// Request-id headers an upstream echoes from its request (never stored with an object).
const ECHOED: [&str; 2] = ["x-request-id", "x-amzn-trace-id"];

/// Removes the request id imagehost echoed from the client's request before the answer is cached.
pub fn drop_echoed_request_id(resp: &mut ResponseHeader) {
    for h in ECHOED {
        resp.remove_header(h);
    }
}

/// The client's own request id (`X-Request-Id`, else `X-Amzn-Trace-Id`) on its answer, as
/// imagehost answers it; never another client's.
pub fn echo_request_id(req: &pingora::http::RequestHeader, resp: &mut ResponseHeader) -> pingora::Result<()> {
    if let Some(id) = ECHOED.iter().find_map(|h| req.headers.get(*h)) {
        resp.insert_header(ECHOED[0], id.clone())?;
    }
    Ok(())
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
            let got = matches!(
                response_cacheable(&resp(headers), *auth),
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
}
