//! What a `/p/` path names (§1.4 steps 1–7, D1): the base58 URL decoded and double-proxy
//! unwrapped, whether it is one of our own uploads, and the byte-exact store keys of the
//! original (`U…`) and of the variant (`_WxH` or `_Mode_Format[_w][_h]`).

use sha1::{Digest, Sha1};
use url::Url;

use super::options::{Format, Mode, Options};
use crate::ApiError;

/// Nested `/p/` wrappers unwrapped at most; deeper nesting is refused as a bad URL.
const MAX_UNWRAP: usize = 8;

/// Where the original image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One of our uploads: read from the upload store under this `D…` key, never fetched.
    Upload(String),
    /// Anything else: fetched from `url`, kept in the proxy store under `key` (`U…`).
    Remote { url: Url, key: String },
}

impl Source {
    pub fn key(&self) -> &str {
        match self {
            Source::Upload(k) => k,
            Source::Remote { key, .. } => key,
        }
    }
}

/// Base58 (Bitcoin alphabet, no checksum) of the UTF-8 URL → a WHATWG URL.
pub fn decode(b58: &str) -> Result<Url, ApiError> {
    let bytes = bs58::decode(b58)
        .into_vec()
        .map_err(|_| ApiError::InvalidProxyUrl)?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::InvalidProxyUrl)?;
    Url::parse(&text).map_err(|_| ApiError::InvalidProxyUrl)
}

pub fn encode(url: &str) -> String {
    bs58::encode(url.as_bytes()).into_string()
}

/// Step 2: while the URL points at our own `/p…`, decode the inner URL (its query is dropped:
/// the outer options apply).
pub fn unwrap(mut url: Url, service: &Url) -> Result<Url, ApiError> {
    for _ in 0..MAX_UNWRAP {
        if !ours(&url, service) || !url.path().starts_with("/p") {
            return Ok(url);
        }
        url = decode(url.path().get(3..).unwrap_or(""))?;
    }
    Err(ApiError::InvalidProxyUrl)
}

/// Whether a URL names this service: the same host on the same port, or on its scheme's default
/// port when ours is on our scheme's default (`http://images.hive.blog` and
/// `https://images.hive.blog` are one service). The reference compares whole origins, so
/// `http://images.hive.blog/DQm…` was fetched from ourselves and kept under a `U…` key that a
/// takedown of the `D…` upload never reached; here both read the upload in place. Another port
/// on our host is another service (e.g. an origin beside us on 127.0.0.1), fetched as any other.
fn ours(url: &Url, service: &Url) -> bool {
    let same_port = url.port_or_known_default() == service.port_or_known_default()
        || (url.port().is_none() && service.port().is_none());
    url.host_str().is_some() && url.host_str() == service.host_str() && same_port
}

/// Step 5: our own `/D…` uploads are read in place; everything else is keyed by SHA-1 of the href.
pub fn source(url: Url, service: &Url) -> Source {
    if ours(&url, service) && url.path().starts_with("/D") {
        let key = url.path()[1..].split('/').next().unwrap_or("").to_string();
        return Source::Upload(key);
    }
    let key = original_key(url.as_str());
    Source::Remote { url, key }
}

/// `U` + base58(0x11 0x14 ‖ SHA-1(href)): 31 characters.
pub fn original_key(href: &str) -> String {
    let mut mh = vec![0x11, 0x14];
    mh.extend_from_slice(&Sha1::digest(href.as_bytes()));
    format!("U{}", bs58::encode(mh).into_string())
}

/// Step 7. `format` is the resolved one (`auto` already negotiated; it never names a key).
pub fn variant_key(orig: &str, opts: &Options, format: Format) -> String {
    let (w, h) = (opts.width, opts.height);
    if opts.mode == Mode::Fit && format == Format::Match {
        return format!("{orig}_{}x{}", w.unwrap_or(0), h.unwrap_or(0));
    }
    let f = match format {
        Format::Match | Format::Auto => "Match",
        Format::Jpeg => "JPEG",
        Format::Png => "PNG",
        Format::Webp => "WEBP",
        Format::Avif => "AVIF",
    };
    let mut key = format!("{orig}_{}_{f}", opts.mode.key_name());
    if let Some(w) = w {
        key.push_str(&format!("_{w}"));
    }
    if let Some(h) = h {
        key.push_str(&format!("_{h}"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Url {
        Url::parse("https://images.hive.blog").unwrap()
    }

    #[test]
    fn legacy_vector_and_round_trip() {
        // §1.6's verified example.
        assert_eq!(
            encode("http://127.0.0.1:8092/test.jpg"),
            "MvwLKy3Sfu9sc8RhWvkWkaZ2nYs6obQqoHRDGgsHx"
        );
        let url = decode("MvwLKy3Sfu9sc8RhWvkWkaZ2nYs6obQqoHRDGgsHx").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8092/test.jpg");
    }

    #[test]
    fn decode_table() {
        let bad = [
            "0OIl",
            "",
            &encode("not a url"),
            &bs58::encode([0xff, 0xfe]).into_string(),
        ];
        for b in bad {
            assert!(matches!(decode(b), Err(ApiError::InvalidProxyUrl)), "{b}");
        }
        // WHATWG serialisation: host lower-cased, default port dropped, path normalised.
        let u = decode(&encode("HTTP://Example.COM:80/a/../b.jpg?x=1")).unwrap();
        assert_eq!(u.as_str(), "http://example.com/b.jpg?x=1");
    }

    #[test]
    fn double_proxy_unwrap() {
        let inner = "https://example.com/cat.png";
        let once = format!("https://images.hive.blog/p/{}?width=10", encode(inner));
        let twice = format!("https://images.hive.blog/p/{}", encode(&once));
        for outer in [once.as_str(), twice.as_str()] {
            let u = unwrap(Url::parse(outer).unwrap(), &svc()).unwrap();
            assert_eq!(u.as_str(), inner);
        }
        // Other hosts' proxies and legacy URLs are proxied as they are.
        let other = format!("https://other.host/p/{}", encode(inner));
        assert_eq!(
            unwrap(Url::parse(&other).unwrap(), &svc()).unwrap().as_str(),
            other
        );
        let legacy = "https://images.hive.blog/0x0/https://example.com/cat.png";
        assert_eq!(
            unwrap(Url::parse(legacy).unwrap(), &svc()).unwrap().as_str(),
            legacy
        );
        // Our own /p with garbage inside is a bad URL, not a fetch of ourselves.
        let junk = Url::parse("https://images.hive.blog/photos/x.jpg").unwrap();
        assert!(matches!(unwrap(junk, &svc()), Err(ApiError::InvalidProxyUrl)));
    }

    #[test]
    fn sources_and_keys() {
        let up = "https://images.hive.blog/DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4/avatar.png";
        assert_eq!(
            source(Url::parse(up).unwrap(), &svc()),
            Source::Upload("DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4".into())
        );
        // Every spelling of our host is ours: scheme, default port and case make no second copy.
        for alias in [
            "http://images.hive.blog/DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4/a.png",
            "https://IMAGES.hive.blog:443/DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4",
            "http://images.hive.blog:80/DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4/x",
        ] {
            assert_eq!(
                source(Url::parse(alias).unwrap(), &svc()),
                Source::Upload("DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4".into()),
                "{alias}"
            );
        }
        for other in [
            "https://images.hive.blog.example.com/DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4",
            "http://images.hive.blog:8080/DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4",
        ] {
            assert!(
                matches!(source(Url::parse(other).unwrap(), &svc()), Source::Remote { .. }),
                "{other}"
            );
        }
        // Another service on our host (an origin beside us on 127.0.0.1) whose path starts with
        // `/p`: fetched, never unwrapped as one of our `/p/` URLs.
        let local = Url::parse("http://127.0.0.1:8080").unwrap();
        let origin = Url::parse("http://127.0.0.1:9000/photo.jpg").unwrap();
        assert_eq!(unwrap(origin.clone(), &local).unwrap(), origin);
        assert!(matches!(source(origin, &local), Source::Remote { .. }));
        let remote = source(Url::parse("https://example.com/a.jpg").unwrap(), &svc());
        let key = remote.key().to_string();
        assert!(key.starts_with('U') && key.len() == 31, "{key}");
        assert_eq!(key, original_key("https://example.com/a.jpg"));

        let o = |w, h, mode, format| Options {
            width: w,
            height: h,
            mode,
            format,
        };
        let k = "U5du4XL9BgydEutnbj3tA6FGGRnbNbf";
        let cases = [
            (
                o(Some(100), Some(100), Mode::Cover, Format::Match),
                Format::Match,
                "_Cover_Match_100_100",
            ),
            (
                o(Some(100), Some(100), Mode::Cover, Format::Webp),
                Format::Webp,
                "_Cover_WEBP_100_100",
            ),
            (
                o(Some(2000), None, Mode::Fit, Format::Match),
                Format::Match,
                "_2000x0",
            ),
            (
                o(None, Some(100), Mode::Fit, Format::Match),
                Format::Match,
                "_0x100",
            ),
            (
                o(None, None, Mode::Cover, Format::Match),
                Format::Match,
                "_Cover_Match",
            ),
            (
                o(None, Some(5), Mode::Fit, Format::Png),
                Format::Png,
                "_Fit_PNG_5",
            ),
            (
                o(Some(7), None, Mode::Cover, Format::Jpeg),
                Format::Jpeg,
                "_Cover_JPEG_7",
            ),
            (
                o(Some(7), None, Mode::Fit, Format::Auto),
                Format::Webp,
                "_Fit_WEBP_7",
            ),
        ];
        for (opts, resolved, suffix) in cases {
            assert_eq!(
                variant_key(k, &opts, resolved),
                format!("{k}{suffix}"),
                "{opts:?}"
            );
        }
    }
}
