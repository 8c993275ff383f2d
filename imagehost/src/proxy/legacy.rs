//! `GET /{W}x{H}/{url}` (§1.6): a 301 to `/p/` with OH's exact relative Location, parameter order
//! and Cache-Control, and Koa's redirect body. The target is everything from the first `http` of
//! the raw request (its own query included), with `token` moved to the outer query.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::target::encode;
use crate::serve::IMMUTABLE;
use crate::ApiError;

/// `Some` when `raw` (path and query as received) is a legacy `/{W}x{H}/…` request.
pub fn location(raw: &str) -> Option<Result<(String, bool), ApiError>> {
    let rest = raw.strip_prefix('/')?;
    let (size, target) = rest.split_once('/')?;
    let (w, h) = size.split_once('x')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(w) || !digits(h) {
        return None;
    }
    Some(build(w, h, target))
}

fn build(w: &str, h: &str, target: &str) -> Result<(String, bool), ApiError> {
    if target.is_empty() || target.starts_with('?') {
        return Err(ApiError::MissingParam("url"));
    }
    let start = target.find("http").ok_or(ApiError::InvalidProxyUrl)?;
    let text = target[start..].replacen("steemit.com/ipfs/", "ipfs.io/ipfs/", 1);
    let mut url = url::Url::parse(&text).map_err(|_| ApiError::InvalidProxyUrl)?;
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    if token.is_some() {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    let num = |s: &str| {
        s.trim_start_matches('0')
            .parse::<u64>()
            .unwrap_or(if s.trim_start_matches('0').is_empty() {
                0
            } else {
                u64::MAX
            })
    };
    let mut loc = format!("/p/{}?format=match&mode=fit", encode(url.as_str()));
    if num(w) > 0 {
        loc.push_str(&format!("&width={}", num(w)));
    }
    if num(h) > 0 {
        loc.push_str(&format!("&height={}", num(h)));
    }
    if let Some(t) = &token {
        loc.push_str("&token=");
        loc.extend(url::form_urlencoded::byte_serialize(t.as_bytes()));
    }
    Ok((loc, token.is_some()))
}

pub fn redirect(raw: &str, accept: Option<&str>) -> Option<Response> {
    Some(match location(raw)? {
        Ok((loc, token)) => {
            let cc = if token { "private,no-store" } else { IMMUTABLE };
            koa_redirect(StatusCode::MOVED_PERMANENTLY, &loc, cc, accept)
        }
        Err(e) => {
            let mut r = e.into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
            r
        }
    })
}

/// Koa's `ctx.redirect`: an HTML body when the client accepts HTML (or says nothing), else text.
pub fn koa_redirect(
    status: StatusCode,
    location: &str,
    cache_control: &'static str,
    accept: Option<&str>,
) -> Response {
    let html = accept.is_none_or(|a| a.contains("text/html") || a.contains("*/*") || a.contains("text/*"));
    let (ctype, body) = if html {
        let esc = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        (
            "text/html; charset=utf-8",
            format!("Redirecting to <a href=\"{esc}\">{esc}</a>."),
        )
    } else {
        ("text/plain; charset=utf-8", format!("Redirecting to {location}."))
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_table() {
        let b = |u: &str| encode(u);
        let cases: Vec<(&str, String)> = vec![
            (
                "/100x0/http://127.0.0.1:8092/test.jpg",
                "/p/MvwLKy3Sfu9sc8RhWvkWkaZ2nYs6obQqoHRDGgsHx?format=match&mode=fit&width=100".into(),
            ),
            (
                "/0x0/https://a.b/c.png",
                format!("/p/{}?format=match&mode=fit", b("https://a.b/c.png")),
            ),
            (
                "/00x010/https://a.b/c.png",
                format!("/p/{}?format=match&mode=fit&height=10", b("https://a.b/c.png")),
            ),
            (
                "/768x0/https://a.b/c.png?x=1&y=2",
                format!(
                    "/p/{}?format=match&mode=fit&width=768",
                    b("https://a.b/c.png?x=1&y=2")
                ),
            ),
            (
                "/64x64/https://steemit.com/ipfs/Qm1/a.png",
                format!(
                    "/p/{}?format=match&mode=fit&width=64&height=64",
                    b("https://ipfs.io/ipfs/Qm1/a.png")
                ),
            ),
            (
                "/0x0/https://a.b/c.png?token=T1",
                format!("/p/{}?format=match&mode=fit&token=T1", b("https://a.b/c.png")),
            ),
            (
                "/1x2/junk/https://a.b/c.png",
                format!(
                    "/p/{}?format=match&mode=fit&width=1&height=2",
                    b("https://a.b/c.png")
                ),
            ),
        ];
        for (raw, want) in cases {
            let (loc, _) = location(raw).expect("legacy").expect(raw);
            assert_eq!(loc, want, "{raw}");
        }
        assert!(matches!(
            location("/0x0/"),
            Some(Err(ApiError::MissingParam("url")))
        ));
        assert!(matches!(
            location("/0x0/nothing"),
            Some(Err(ApiError::InvalidProxyUrl))
        ));
        assert!(matches!(
            location("/0x0/http:"),
            Some(Err(ApiError::InvalidProxyUrl))
        ));
        for not in [
            "/p/abc",
            "/DQmabc/x.jpg",
            "/axb/http://x/",
            "/10x/http://x/",
            "/10x10",
        ] {
            assert!(location(not).is_none(), "{not}");
        }
    }
}
