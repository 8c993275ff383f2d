//! Which requests the hit fast path may answer itself: a complete HTTP/1.1 `GET` or `HEAD` with
//! a `Host`, no body, and nothing that needs pingora's logic (ranges, conditional requests,
//! upgrades). Everything else, malformed or partial input included, goes to pingora untouched.

use crate::cache::policy;

/// A request the fast path can look up; borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub head_only: bool,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// `Origin`, echoed back as the edge answers CORS ([`crate::cache::policy::answer_cors`]).
    pub origin: Option<&'a [u8]>,
    /// The client's own request id (`X-Request-Id`, else `X-Amzn-Trace-Id`), echoed back.
    pub request_id: Option<&'a [u8]>,
    /// The client asked to close after this response.
    pub close: bool,
    /// Bytes of the request head (the next request starts after them).
    pub len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Candidate(Candidate<'a>),
    /// The head is not complete yet.
    Partial,
    /// Not for the fast path: pingora answers it.
    Other,
}

/// Request headers that need pingora: ranges, validators, bodies, protocol changes.
const DEFERRED: [&str; 10] = [
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "transfer-encoding",
    "expect",
    "upgrade",
    "content-length",
];

pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let Some(method) = req.method.filter(|m| policy::method_cacheable(m)) else {
        return Parsed::Other;
    };
    let head_only = method == "HEAD";
    // The cache key's path and query, split as pingora's path would split them.
    let Some((path, query)) = req.path.and_then(policy::key_target) else {
        return Parsed::Other;
    };
    if req.version != Some(1) {
        return Parsed::Other;
    }
    let (mut host, mut origin, mut close) = (None, None, false);
    let (mut request_id, mut trace_id) = (None, None);
    let mut hosts = 0;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            // Two Host lines (even if one is not UTF-8) are pingora's to judge.
            hosts += 1;
            if hosts > 1 {
                return Parsed::Other;
            }
            host = std::str::from_utf8(h.value).ok();
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-request-id") {
            request_id = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-amzn-trace-id") {
            trace_id = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "upgrade") {
                return Parsed::Other;
            }
            close |= v.split(',').any(|t| t.trim() == "close");
        } else if DEFERRED.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            if name.eq_ignore_ascii_case("content-length") && h.value == b"0" {
                continue;
            }
            return Parsed::Other;
        }
    }
    let Some(host) = host else {
        return Parsed::Other;
    };
    Parsed::Candidate(Candidate {
        head_only,
        host,
        path,
        query,
        origin,
        request_id: request_id.or(trace_id),
        close,
        len,
    })
}

/// Where the first request head in `buf` ends (just past its empty line), if it is complete;
/// the first `scanned` bytes are known to hold no end. `buf` starts at the request line (no
/// leading empty lines). Lines may end in CRLF or a bare LF, as pingora's parser takes them.
pub fn head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    // An end is `\n\n` or `\n\r\n`: one that straddles the scanned part starts 2 bytes back.
    let from = scanned.saturating_sub(2).min(buf.len());
    memchr::memchr_iter(b'\n', &buf[from..])
        .map(|i| from + i)
        .find(|&i| buf[..i].ends_with(b"\n") || buf[..i].ends_with(b"\n\r"))
        .map(|i| i + 1)
}

/// Whether a complete request head announces a body (or cannot be read: then pingora gets
/// every byte and answers it).
pub fn has_body(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return true;
    }
    req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.iter().any(|b| *b != b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(raw: &str) -> Candidate<'_> {
        match parse(raw.as_bytes()) {
            Parsed::Candidate(c) => c,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn plain_gets_and_heads_are_candidates() {
        let raw =
            "GET /DQmX/photo.jpg?width=1&mode=fit HTTP/1.1\r\nHost: images.hive.blog\r\nAccept: */*\r\n\r\n";
        let c = candidate(raw);
        assert_eq!(
            c,
            Candidate {
                head_only: false,
                host: "images.hive.blog",
                path: "/DQmX/photo.jpg",
                query: Some("width=1&mode=fit"),
                origin: None,
                request_id: None,
                close: false,
                len: raw.len(),
            }
        );
        let c = candidate(
            "HEAD /a HTTP/1.1\r\nhost: h\r\nOrigin: https://peakd.com\r\nConnection: close\r\n\r\nGET /next",
        );
        assert!(c.head_only && c.close);
        assert_eq!(c.origin, Some(&b"https://peakd.com"[..]));
        assert_eq!(
            c.len,
            "HEAD /a HTTP/1.1\r\nhost: h\r\nOrigin: https://peakd.com\r\nConnection: close\r\n\r\n".len()
        );
        assert!(matches!(
            parse(b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
            Parsed::Candidate(_)
        ));
    }

    #[test]
    fn everything_else_is_left_to_pingora() {
        let cases: &[(&str, Parsed)] = &[
            ("GET /a HTTP/1.1\r\nHost: h\r\n", Parsed::Partial),
            ("GET /a HTTP/1.1\r\nHost: h\r\n\r", Parsed::Partial),
            (
                "POST /u/sig HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
                Parsed::Other,
            ),
            ("PURGE /a HTTP/1.1\r\nHost: h\r\n\r\n", Parsed::Other),
            ("GET /a HTTP/1.0\r\nHost: h\r\n\r\n", Parsed::Other),
            ("GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n", Parsed::Other),
            // Targets pingora's URI parser reads differently (cuts the fragment) or refuses.
            ("GET /a?w=1#x HTTP/1.1\r\nHost: h\r\n\r\n", Parsed::Other),
            ("GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n", Parsed::Other),
            ("POST /a HTTP/1.1\r\nHost: h\r\n\r\n", Parsed::Other),
            ("GET /a HTTP/1.1\r\n\r\n", Parsed::Other),
            ("GET /a HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", Parsed::Other),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n\r\n",
                Parsed::Other,
            ),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n",
                Parsed::Other,
            ),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: x\r\n\r\n",
                Parsed::Other,
            ),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                Parsed::Other,
            ),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
                Parsed::Other,
            ),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
                Parsed::Other,
            ),
            ("G\0T /a HTTP/1.1\r\nHost: h\r\n\r\n", Parsed::Other),
        ];
        for (raw, want) in cases {
            assert_eq!(&parse(raw.as_bytes()), want, "{raw:?}");
        }
        let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            parse(format!("GET /a HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes()),
            Parsed::Other,
            "more headers than the fast path parses"
        );
    }

    #[test]
    fn heads_end_at_their_empty_line_and_bodies_are_announced() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next", Some(27)),
            (b"GET / HTTP/1.1\nHost: h\n\n", Some(24)),
            (b"GET / HTTP/1.1\r\nHost: h\r\n", None),
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r", None),
            (b"", None),
        ];
        for (buf, want) in cases {
            assert_eq!(head_end(buf, 0), *want, "{}", String::from_utf8_lossy(buf));
            // Trickled in at any split: what was scanned before is not scanned again, and the
            // end is found all the same.
            for k in 0..=buf.len() {
                if head_end(&buf[..k], 0).is_none() {
                    assert_eq!(
                        head_end(buf, k),
                        *want,
                        "split at {k}: {}",
                        String::from_utf8_lossy(buf)
                    );
                }
            }
        }
        assert!(!has_body(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!has_body(b"GET / HTTP/1.1\r\nContent-Length: 00\r\n\r\n"));
        assert!(has_body(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"));
        assert!(has_body(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(
            has_body(b"G\0T / HTTP/1.1\r\n\r\n"),
            "unreadable: all of it to pingora"
        );
        let c = candidate("GET /a HTTP/1.1\r\nHost: h\r\nX-Amzn-Trace-Id: t\r\nX-Request-Id: r\r\n\r\n");
        assert_eq!(c.request_id, Some(&b"r"[..]), "X-Request-Id wins");
    }

    #[test]
    fn a_second_host_after_one_that_is_not_utf8_is_left_to_pingora() {
        assert_eq!(
            parse(b"GET /a HTTP/1.1\r\nHost: \xff\r\nHost: i\r\n\r\n"),
            Parsed::Other
        );
    }

    /// Seeded mutations of real request heads: never a panic, and a candidate never claims more
    /// bytes than were read or a head that does not end the way HTTP heads end.
    #[test]
    fn mutated_heads_never_panic() {
        use rand::{Rng, SeedableRng};
        let seeds = [
            "GET /DQmX/photo.jpg?width=1 HTTP/1.1\r\nHost: images.hive.blog\r\nOrigin: https://peakd.com\r\nAccept: image/webp,*/*\r\nConnection: keep-alive\r\n\r\n",
            "HEAD /a HTTP/1.1\r\nhost: h\r\nContent-Length: 0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for i in 0..20_000 {
            let mut v = seeds[i % 2].as_bytes().to_vec();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..v.len());
                match rng.random_range(0..3) {
                    0 => v[at] = rng.random(),
                    1 => v.truncate(at.max(1)),
                    _ => v.insert(at, [b'\r', b'\n', b':', b' ', 0][rng.random_range(0..5)]),
                }
            }
            if let Parsed::Candidate(c) = parse(&v) {
                assert!(c.len <= v.len() && v[..c.len].ends_with(b"\n"), "{v:?}");
                assert!(c.path.starts_with('/'), "{v:?}");
            }
        }
    }
}
