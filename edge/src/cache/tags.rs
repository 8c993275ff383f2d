//! Surrogate keys ("tags"): imagehost names the source keys an answer was derived from in a
//! `Surrogate-Key` header (space separated, as Fastly's; Varnish's xkey reads the same idea), so
//! a tag ban removes every cached answer derived from a key whatever its URL: each filename of
//! `/DQm…/…`, every `/p/` size and format, avatars and covers. The header is kept with the object
//! and never sent to clients. An object without it is still tagged by its URL when the URL's
//! first segment is a key (`/DQm…/photo.jpg`: answers cached before imagehost tagged them).

use pingora::http::ResponseHeader;

pub const HEADER: &str = "surrogate-key";
/// Tags kept per object at most (imagehost sends one or two).
const MAX_TAGS: usize = 8;

/// The tags of a stored response.
pub fn of(resp: &ResponseHeader) -> Box<[Box<str>]> {
    resp.headers
        .get_all(HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_whitespace)
        .filter(|t| t.len() <= 256)
        .take(MAX_TAGS)
        .map(Into::into)
        .collect()
}

/// The tags written with an object on disk (space separated).
pub fn join(tags: &[Box<str>]) -> String {
    tags.join(" ")
}

pub fn split(joined: &str) -> Box<[Box<str>]> {
    joined.split_whitespace().take(MAX_TAGS).map(Into::into).collect()
}

/// The first segment of `url` (a URL part, `/seg/…?q`) when it names an upload key, as the
/// first segment of `/DQm…/…` URLs does: `D` then letters and digits only (as imagehost's `/D…`
/// route reads it), so that a tag such as `p` or `0x0` never reaches every URL of a route.
pub fn first_segment(url: &[u8]) -> Option<&str> {
    let rest = url.strip_prefix(b"/")?;
    let end = rest
        .iter()
        .position(|b| *b == b'/' || *b == b'?')
        .unwrap_or(rest.len());
    let seg = &rest[..end];
    (seg.first() == Some(&b'D') && seg.iter().all(u8::is_ascii_alphanumeric))
        .then(|| std::str::from_utf8(seg).ok())
        .flatten()
}

/// Whether a key can be a tag: what [`of`] keeps from a header (1 to 256 bytes, no spaces).
pub fn is_taggable(key: &str) -> bool {
    !key.is_empty() && key.len() <= 256 && !key.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_from_headers_and_urls() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("Surrogate-Key", "DQmA  Ub").unwrap();
        r.append_header("surrogate-key", "DQmC").unwrap();
        let t = of(&r);
        assert_eq!(t.iter().map(|s| &**s).collect::<Vec<_>>(), ["DQmA", "Ub", "DQmC"]);
        assert_eq!(&*split(&join(&t)), &*t);
        for (url, tag, want) in [
            (&b"/DQmA/photo.jpg"[..], "DQmA", true),
            (b"/DQmA", "DQmA", true),
            (b"/DQmA?x=1", "DQmA", true),
            (b"/DQmAB/photo.jpg", "DQmA", false),
            (b"/p/DQmA", "DQmA", false),
            (b"DQmA", "DQmA", false),
            // Only a key-like first segment stands for a tag: never a route's own name.
            (b"/p/2Zx", "p", false),
            (b"/0x0/https://x", "0x0", false),
            (b"/webp/DQmA/x.jpg", "webp", false),
            (b"/D%51mA/x.jpg", "D%51mA", false),
        ] {
            let tagged = first_segment(url) == Some(tag);
            assert_eq!(tagged, want, "{}", String::from_utf8_lossy(url));
        }
        for (key, ok) in [("DQmA", true), ("", false), ("a b", false)] {
            assert_eq!(is_taggable(key), ok, "{key:?}");
        }
        assert!(is_taggable(&"k".repeat(256)) && !is_taggable(&"k".repeat(257)));
    }
}
