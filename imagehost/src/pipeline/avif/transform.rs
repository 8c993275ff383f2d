//! The primary item's `clap`, `irot` and `imir` properties (which avif-parse does not report),
//! read from the AVIF's `meta` box: a crop rectangle, and the EXIF orientation code the raster
//! already applies, in MIAF's order (crop, rotate, mirror). Anything missing or malformed here
//! means "no transform": the container itself was already validated by avif-parse.

/// ISO-BMFF boxes in `data`: (type, content). Stops at the first malformed header.
fn boxes(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as u64;
        let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
        let (header, size) = match size {
            0 => (8, data.len() as u64),
            1 => (16, u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)),
            n => (8, n),
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s >= header && *s <= data.len())?;
        let content = &data[header..size];
        data = &data[size..];
        Some((kind, content))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, c)| c)
}

fn be(data: &[u8], at: usize, len: usize) -> Option<u32> {
    let b = data.get(at..at + len)?;
    Some(b.iter().fold(0u32, |v, x| (v << 8) | *x as u32))
}

/// The 1-based `ipco` indices associated with `item` in an `ipma` box.
fn associations(ipma: &[u8], item: u32) -> Option<Vec<usize>> {
    let version = *ipma.first()?;
    let wide_index = be(ipma, 1, 3)? & 1 == 1;
    let count = be(ipma, 4, 4)?;
    let mut at = 8;
    for _ in 0..count {
        let id_len = if version < 1 { 2 } else { 4 };
        let id = be(ipma, at, id_len)?;
        at += id_len;
        let n = *ipma.get(at)? as usize;
        at += 1;
        let index_len = if wide_index { 2 } else { 1 };
        if id == item {
            let mask = if wide_index { 0x7fff } else { 0x7f };
            return (0..n)
                .map(|i| be(ipma, at + i * index_len, index_len).map(|v| (v & mask) as usize))
                .collect();
        }
        at += n * index_len;
    }
    Some(Vec::new())
}

/// The transform properties of the primary item, raw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Properties {
    /// `irot`: anti-clockwise quarter turns.
    rotation: u8,
    /// `imir`: 0 exchanges top and bottom, 1 left and right.
    mirror: Option<u8>,
    /// `clap`: width, height, horizontal and vertical offset, each as (numerator, denominator).
    clap: Option<[(i64, i64); 4]>,
}

fn properties(data: &[u8]) -> Option<Properties> {
    let meta = child(data, b"meta")?.get(4..)?;
    let pitm = child(meta, b"pitm")?;
    let primary = if *pitm.first()? == 0 {
        be(pitm, 4, 2)?
    } else {
        be(pitm, 4, 4)?
    };
    let iprp = child(meta, b"iprp")?;
    let ipco: Vec<_> = boxes(child(iprp, b"ipco")?).collect();
    let mut p = Properties::default();
    for ipma in boxes(iprp).filter(|(k, _)| k == b"ipma").map(|(_, c)| c) {
        for index in associations(ipma, primary)? {
            let Some(&(kind, c)) = index.checked_sub(1).and_then(|i| ipco.get(i)) else {
                continue;
            };
            match &kind {
                b"irot" => p.rotation = c.first()? & 3,
                b"imir" => p.mirror = Some(c.first()? & 1),
                b"clap" => {
                    // Sizes are unsigned, offsets signed (ISO/IEC 14496-12 CleanApertureBox).
                    let n = |i: usize, signed: bool| {
                        be(c, 4 * i, 4).map(|v| if signed { v as i32 as i64 } else { v as i64 })
                    };
                    p.clap = Some([
                        (n(0, false)?, n(1, false)?),
                        (n(2, false)?, n(3, false)?),
                        (n(4, true)?, n(5, false)?),
                        (n(6, true)?, n(7, false)?),
                    ]);
                }
                _ => {}
            }
        }
    }
    Some(p)
}

/// The pixel rectangle (left, top, width, height) a `clap` keeps of a `w`×`h` image, as libavif
/// computes it: centred, moved by the offsets, whole pixels only, inside the image. Anything
/// else keeps the whole image.
fn crop_rect(clap: [(i64, i64); 4], w: u32, h: u32) -> Option<(u32, u32, u32, u32)> {
    let whole = |(n, d): (i64, i64)| (d > 0 && n % d == 0).then(|| n / d);
    let (cw, ch) = (whole(clap[0])?, whole(clap[1])?);
    // left = (w - cw) / 2 + hoff, in halves so odd differences stay exact.
    let half = |(n, d): (i64, i64), full: i64, part: i64| {
        let twice = (full - part).checked_mul(d)?.checked_add(n.checked_mul(2)?)?;
        let den = 2 * d;
        (den > 0 && twice % den == 0).then(|| twice / den)
    };
    let left = half(clap[2], w as i64, cw)?;
    let top = half(clap[3], h as i64, ch)?;
    let inside = cw > 0 && ch > 0 && left >= 0 && top >= 0 && left + cw <= w as i64 && top + ch <= h as i64;
    inside.then_some((left as u32, top as u32, cw as u32, ch as u32))
}

/// What to do to a decoded `w`×`h` picture: crop first, then orient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    /// The `clap` rectangle (left, top, width, height), when it keeps less than the picture.
    pub crop: Option<(u32, u32, u32, u32)>,
    /// The EXIF orientation code (1–8) of `irot` then `imir`.
    pub orientation: u8,
}

/// Reads the meta box once for both transforms of a `w`×`h` primary image.
pub fn read(data: &[u8], w: u32, h: u32) -> Transform {
    let p = properties(data).unwrap_or_default();
    Transform {
        crop: p
            .clap
            .and_then(|clap| crop_rect(clap, w, h))
            .filter(|rect| *rect != (0, 0, w, h)),
        orientation: orientation(p),
    }
}

/// The EXIF orientation (1–8) equivalent to `irot` then `imir` (libavif's order), where `imir`
/// mode 0 exchanges top and bottom and mode 1 left and right (ISO/IEC 23008-12:2022).
fn orientation(p: Properties) -> u8 {
    let (ccw, mirror) = (p.rotation, p.mirror);
    // As "rotate clockwise by r quarter turns, then flip left-right if f".
    let r = (4 - ccw) % 4;
    let (r, f) = match mirror {
        None => (r, false),
        Some(1) => (r, true),
        // Top-bottom is left-right after a half turn.
        Some(_) => ((r + 2) % 4, true),
    };
    match (r, f) {
        (0, false) => 1,
        (1, false) => 6,
        (2, false) => 3,
        (3, false) => 8,
        (0, true) => 2,
        (1, true) => 5,
        (2, true) => 4,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fn_box(kind: &[u8; 4], content: &[u8]) -> Vec<u8> {
        let mut b = ((content.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(content);
        b
    }

    /// A minimal meta box: primary item 1 with the given properties (plus an unrelated `ispe`
    /// first, and an `irot` of item 2 that must not count).
    fn file(props: &[(&[u8; 4], u8)]) -> Vec<u8> {
        let mut ipco = fn_box(b"ispe", &[0; 12]);
        for (k, v) in props {
            ipco.extend(fn_box(k, &[*v]));
        }
        ipco.extend(fn_box(b"irot", &[1]));
        let other = props.len() as u8 + 2;
        let mut ipma = vec![0, 0, 0, 0, 0, 0, 0, 2];
        ipma.extend_from_slice(&[0, 1, props.len() as u8 + 1, 0x81]);
        ipma.extend((0..props.len() as u8).map(|i| 0x80 | (i + 2)));
        ipma.extend_from_slice(&[0, 2, 1, other]);
        let iprp = [fn_box(b"ipco", &ipco), fn_box(b"ipma", &ipma)].concat();
        let meta = [
            vec![0, 0, 0, 0],
            fn_box(b"hdlr", &[0; 20]),
            fn_box(b"pitm", &[0, 0, 0, 0, 0, 1]),
            fn_box(b"iprp", &iprp),
        ]
        .concat();
        [fn_box(b"ftyp", b"avif\0\0\0\0avifmif1"), fn_box(b"meta", &meta)].concat()
    }

    #[test]
    fn orientation_table() {
        type Props<'a> = &'a [(&'a [u8; 4], u8)];
        let cases: &[(Props, u8)] = &[
            (&[], 1),
            (&[(b"irot", 0)], 1),
            (&[(b"irot", 1)], 8),
            (&[(b"irot", 2)], 3),
            (&[(b"irot", 3)], 6),
            (&[(b"imir", 1)], 2),
            (&[(b"imir", 0)], 4),
            (&[(b"irot", 1), (b"imir", 1)], 7),
            (&[(b"irot", 3), (b"imir", 1)], 5),
            (&[(b"irot", 1), (b"imir", 0)], 5),
        ];
        for (props, want) in cases {
            assert_eq!(read(&file(props), 1, 1).orientation, *want, "{props:?}");
        }
    }

    #[test]
    fn clean_aperture_table() {
        let f = |v: i64| (v, 1);
        // (clap, picture size, rectangle kept)
        type Case = ([(i64, i64); 4], (u32, u32), Option<(u32, u32, u32, u32)>);
        let cases: &[Case] = &[
            // Centred 60×40 of 100×50: left 20, top 5.
            ([f(60), f(40), f(0), f(0)], (100, 50), Some((20, 5, 60, 40))),
            // Moved by the offsets (−10 px, +5 px).
            ([f(60), f(40), f(-10), f(5)], (100, 50), Some((10, 10, 60, 40))),
            // Offsets in halves: (100 − 61) / 2 + 1/2 = 20.
            ([f(61), f(40), (1, 2), f(0)], (100, 50), Some((20, 5, 61, 40))),
            // Not whole pixels, outside the image, zero, a zero denominator: whole image kept.
            ([(121, 2), f(40), f(0), f(0)], (100, 50), None),
            ([f(60), f(40), f(30), f(0)], (100, 50), None),
            ([f(0), f(40), f(0), f(0)], (100, 50), None),
            ([(60, 0), f(40), f(0), f(0)], (100, 50), None),
            ([f(61), f(40), f(0), f(0)], (100, 50), None),
        ];
        for (clap, (w, h), want) in cases {
            assert_eq!(crop_rect(*clap, *w, *h), *want, "{clap:?} of {w}×{h}");
        }
    }

    #[test]
    fn malformed_means_no_transform() {
        let good = file(&[(b"irot", 1)]);
        for cut in [0, 7, 20, good.len() - 3] {
            assert!((1..=8).contains(&read(&good[..cut], 1, 1).orientation));
        }
        assert_eq!(read(b"\0\0\0\x01meta", 1, 1).orientation, 1);
        assert_eq!(read(&[0xff; 40], 1, 1).orientation, 1);
    }
}
