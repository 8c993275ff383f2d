//! Whether an `Accept` header names a media type, read the same way by the edge (to pick a cache
//! variant) and imagehost (to pick the output format): every `Accept` line, case-insensitive,
//! `q=0` means "not this". Wildcards do not count: `*/*` is no promise that a client decodes WebP
//! or AVIF.

use axum::http::{header, HeaderMap};

/// True when any `Accept` line of `headers` lists `media` with a non-zero quality.
pub fn header_takes(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| takes(v, media))
}

/// True when `accept` lists `media` (exactly, in any case) with a non-zero quality.
pub fn takes(accept: &str, media: &str) -> bool {
    accept.split(',').any(|part| {
        let mut it = part.split(';');
        let named = it.next().unwrap_or("").trim();
        let refused = it.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        named.eq_ignore_ascii_case(media) && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_table() {
        let cases = [
            ("image/webp", "image/webp", true),
            ("image/avif,image/webp,*/*;q=0.8", "image/webp", true),
            ("IMAGE/WEBP", "image/webp", true),
            (" image/webp ; q=0.5 ", "image/webp", true),
            ("image/webp;q=0", "image/webp", false),
            ("image/webp;q=0.0, image/jpeg", "image/webp", false),
            ("*/*", "image/webp", false),
            ("image/*", "image/webp", false),
            ("image/webpx", "image/webp", false),
            ("", "image/webp", false),
            ("image/avif;q=0, image/webp;q=0.9", "image/avif", false),
        ];
        for (accept, media, want) in cases {
            assert_eq!(takes(accept, media), want, "{accept:?} {media}");
        }
    }

    #[test]
    fn every_accept_line_counts() {
        let mut h = HeaderMap::new();
        assert!(!header_takes(&h, "image/webp"));
        h.append(header::ACCEPT, "image/jpeg".parse().unwrap());
        h.append(header::ACCEPT, "image/webp".parse().unwrap());
        assert!(header_takes(&h, "image/webp"));
        assert!(!header_takes(&h, "image/avif"));
    }
}
