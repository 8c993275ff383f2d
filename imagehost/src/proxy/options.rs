//! `/p/` query options (§1.4 `parseOptions`): width, height, mode and format, with OH's parsing
//! quirks kept (parseInt, first value wins, `0` = unset) and D3's fix (negative or non-numeric = 400).

pub use crate::pipeline::geometry::Mode;
use crate::ApiError;

/// The requested output format. `Auto` (D11, opt-in) negotiates AVIF or WebP from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Match,
    Jpeg,
    Png,
    Webp,
    Avif,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The requested integers, unclamped: they name the variant key.
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub mode: Mode,
    pub format: Format,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            width: None,
            height: None,
            mode: Mode::Cover,
            format: Format::Match,
        }
    }
}

/// Parses a raw query string. Only the first occurrence of each parameter counts.
pub fn parse(query: Option<&str>) -> Result<Options, ApiError> {
    let mut opts = Options::default();
    let (mut w, mut h, mut m, mut f) = (None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match k.as_ref() {
            "width" => &mut w,
            "height" => &mut h,
            "mode" => &mut m,
            "format" => &mut f,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    opts.width = dimension(w.as_deref(), "width")?;
    opts.height = dimension(h.as_deref(), "height")?;
    opts.mode = match m.as_deref() {
        None => Mode::Cover,
        Some("cover") => Mode::Cover,
        Some("fit") => Mode::Fit,
        Some(_) => return Err(ApiError::InvalidParam("mode")),
    };
    opts.format = match f.as_deref() {
        None | Some("match") => Format::Match,
        Some("jpeg") | Some("jpg") => Format::Jpeg,
        Some("png") => Format::Png,
        Some("webp") => Format::Webp,
        Some("avif") => Format::Avif,
        Some("auto") => Format::Auto,
        Some(_) => return Err(ApiError::InvalidParam("format")),
    };
    Ok(opts)
}

/// JavaScript `parseInt(x) || undefined`, except that a negative or non-numeric value that is
/// present is refused (D3) instead of crashing the resizer later.
fn dimension(raw: Option<&str>, name: &'static str) -> Result<Option<u64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let s = raw.trim_start();
    if s.is_empty() {
        return Ok(None);
    }
    let (negative, digits) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    if end == 0 {
        return Err(ApiError::InvalidParam(name));
    }
    // Past 18 digits the value is absurd anyway; saturate rather than overflow.
    let n: u64 = digits[..end.min(18)].parse().unwrap_or(u64::MAX);
    match (negative, n) {
        (_, 0) => Ok(None),
        (true, _) => Err(ApiError::InvalidParam(name)),
        (false, n) => Ok(Some(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_table() {
        let ok = |q: &str| parse(Some(q)).expect(q);
        type Case<'a> = (&'a str, Option<u64>, Option<u64>, Mode, Format);
        let cases: Vec<Case> = vec![
            ("", None, None, Mode::Cover, Format::Match),
            ("width=300", Some(300), None, Mode::Cover, Format::Match),
            ("width=100.7", Some(100), None, Mode::Cover, Format::Match),
            ("width=0&height=0", None, None, Mode::Cover, Format::Match),
            ("width=&height=", None, None, Mode::Cover, Format::Match),
            ("width=10&width=20", Some(10), None, Mode::Cover, Format::Match),
            ("height=100&mode=fit", None, Some(100), Mode::Fit, Format::Match),
            ("format=jpg", None, None, Mode::Cover, Format::Jpeg),
            ("format=jpeg", None, None, Mode::Cover, Format::Jpeg),
            ("format=png&width=50", Some(50), None, Mode::Cover, Format::Png),
            ("format=webp", None, None, Mode::Cover, Format::Webp),
            ("format=auto", None, None, Mode::Cover, Format::Auto),
            ("format=avif", None, None, Mode::Cover, Format::Avif),
            ("width=9000", Some(9000), None, Mode::Cover, Format::Match),
            ("width=12abc", Some(12), None, Mode::Cover, Format::Match),
            ("other=1&width=5", Some(5), None, Mode::Cover, Format::Match),
        ];
        for (q, w, h, m, f) in cases {
            assert_eq!(
                ok(q),
                Options {
                    width: w,
                    height: h,
                    mode: m,
                    format: f
                },
                "{q}"
            );
        }
        let bad: Vec<(&str, &str)> = vec![
            ("width=-5", "width"),
            ("height=abc", "height"),
            ("mode=Cover", "mode"),
            ("mode=crop", "mode"),
            ("format=gif", "format"),
            ("format=JPEG", "format"),
            ("format=heic", "format"),
        ];
        for (q, param) in bad {
            match parse(Some(q)) {
                Err(ApiError::InvalidParam(p)) => assert_eq!(p, param, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }
}
