//! The cache key: host, path and a normalised query, framed so no two requests share a key by accident.
//!
//! `?width=1&mode=fit` and `?mode=fit&width=1` are one object: parameters are sorted by name (then
//! value), empty `&` segments are dropped, and percent-encoding of unreserved characters is
//! decoded so `%77idth` and `width` agree. The path is normalised the same way (RFC 3986 §6.2.2:
//! `%44Qm…` is `DQm…`, escapes in upper case), so one object has one key whatever its
//! spelling: a ban or takedown of `/DQm…` cannot be dodged by writing it `/%44Qm…`. The host is
//! lower-cased and a default port removed.

use percent_encoding::percent_decode_str;
use pingora::cache::key::CacheHashKey;
use pingora::cache::CacheKey;

/// pingora's cache key for a request, hashed once: pingora and the storage ask for the primary
/// hash several times per request. Used by the proxy and by the hit fast path alike.
pub fn cache_key(host: &str, path: &str, query: Option<&str>) -> CacheKey {
    let mut key = CacheKey::new(primary(host, path, query), "");
    key.set_primary_bin_override(key.primary_bin());
    key
}

/// The primary key bytes: `host` NUL `path` [`?` query]. A host never contains NUL, so the
/// framing is unambiguous; the URL part (after the NUL) is what bans match against.
pub fn primary(host: &str, path: &str, query: Option<&str>) -> Vec<u8> {
    let host = normalise_host(host);
    let mut out = Vec::with_capacity(host.len() + path.len() + 32);
    out.extend_from_slice(host.as_bytes());
    out.push(0);
    out.extend_from_slice(url_part(path, query).as_bytes());
    out
}

/// The normalised path and query as one string, e.g. `/p/abc?mode=fit&width=1`.
pub fn url_part(path: &str, query: Option<&str>) -> String {
    let path = normalise_path(path);
    let q = query.map(normalise_query).unwrap_or_default();
    if q.is_empty() {
        path
    } else {
        format!("{path}?{q}")
    }
}

/// RFC 3986 §6.2.2.1–2: escapes of unreserved characters decoded, other escapes in upper case;
/// everything else (reserved characters, `/` and `%2F` kept apart) as it is.
pub fn normalise_path(path: &str) -> String {
    let b = path.as_bytes();
    if !b.contains(&b'%') {
        return path.to_string();
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                let v = (h * 16 + l) as u8;
                if unreserved(v) {
                    out.push(v as char);
                } else {
                    out.push_str(&format!("%{v:02X}"));
                }
                i += 3;
            }
            (c, _, _) => {
                // The path came from a valid request line: ASCII, so byte and char agree.
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The URL part of a primary key made by [`primary`].
pub fn url_of(primary: &[u8]) -> &[u8] {
    match primary.iter().position(|&b| b == 0) {
        Some(i) => &primary[i + 1..],
        None => primary,
    }
}

/// The host as keys hold it: lower case, without a default port.
pub fn normalise_host(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    h.strip_suffix(":80")
        .or_else(|| h.strip_suffix(":443"))
        .map(str::to_string)
        .unwrap_or(h)
}

/// Sorts parameters and canonicalises their encoding; keeps repeated names in value order.
pub fn normalise_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (canonical(k), canonical(v))
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        if !v.is_empty() {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// Decodes `%XX` and `+`, then re-encodes everything outside RFC 3986's unreserved set, so every
/// spelling of a value has one form.
fn canonical(s: &str) -> String {
    let spaced = s.replace('+', " ");
    let bytes: Vec<u8> = percent_decode_str(&spaced).collect();
    let mut out = String::with_capacity(bytes.len());
    for b in bytes {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_normalisation_table() {
        let cases = [
            ("width=1&mode=fit", "mode=fit&width=1"),
            ("mode=fit&width=1", "mode=fit&width=1"),
            ("&&b=2&&a=1&", "a=1&b=2"),
            ("%77idth=100", "width=100"),
            ("a=x%2fy", "a=x%2Fy"),
            ("a=x/y", "a=x%2Fy"),
            ("a=b+c", "a=b%20c"),
            ("a=2&a=1", "a=1&a=2"),
            ("flag", "flag"),
            ("flag=", "flag"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_query(input), want, "{input:?}");
        }
    }

    #[test]
    fn path_normalisation_table() {
        let cases = [
            ("/DQmX/photo.jpg", "/DQmX/photo.jpg"),
            ("/%44Qm%58/photo.jpg", "/DQmX/photo.jpg"),
            ("/%44%51%6d%58", "/DQmX"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%20b", "/a%20b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/100%", "/100%"),
            ("/%zz%4", "/%zz%4"),
            ("/p/%7Eb58", "/p/~b58"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_path(input), want, "{input}");
        }
        assert_eq!(
            primary("h", "/%44Qm1/x.jpg", None),
            primary("h", "/DQm1/x.jpg", None),
            "one object, one key"
        );
    }

    #[test]
    fn primary_keys_frame_host_and_url() {
        let a = primary("Images.Hive.Blog:443", "/p/x", Some("width=1&mode=fit"));
        let b = primary("images.hive.blog", "/p/x", Some("mode=fit&width=1"));
        assert_eq!(a, b);
        assert_eq!(url_of(&a), b"/p/x?mode=fit&width=1");
        assert_ne!(primary("a", "/b", None), primary("a/", "b", None));
        assert_ne!(primary("h", "/x", Some("a=1")), primary("h", "/x", Some("a=2")));
        assert_eq!(url_of(&primary("h", "/x", Some(""))), b"/x");
    }
}
