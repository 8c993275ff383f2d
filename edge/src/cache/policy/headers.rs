//! The headers the edge rewrites around its cache: CORS answered by the edge instead of stored
//! per `Origin`, and request ids echoed to their own client and never stored.

use pingora::http::{RequestHeader, ResponseHeader};

use super::vary_names;

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
pub fn answer_cors(req: &RequestHeader, resp: &mut ResponseHeader) -> pingora::Result<()> {
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
pub fn echo_request_id(req: &RequestHeader, resp: &mut ResponseHeader) -> pingora::Result<()> {
    if let Some(id) = ECHOED.iter().find_map(|h| req.headers.get(*h)) {
        resp.insert_header(ECHOED[0], id.clone())?;
    }
    Ok(())
}
