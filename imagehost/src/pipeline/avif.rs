//! AVIF input: the container read by `avif-parse`, the AV1 colour (and alpha) images decoded by
//! dav1d on one thread with its frame-size cap set, sizes checked from the AV1 sequence header
//! before anything is decoded, and YCbCr (8 to 12 bits, any subsampling, either range, the
//! matrix the stream names) turned into 8-bit gray, RGB or RGBA here; `clap`, `irot`, `imir` applied.

mod transform;

use std::io::Cursor;

use dav1d::{Decoder, Picture, PixelLayout, PlanarImageComponent, Plane};

use super::raster::Raster;
use super::{check_size, PipelineError, Settings};

/// Safety stop for the send/receive loop with dav1d (one still frame needs two or three turns).
const DECODER_TURNS: usize = 64;

/// What the AV1 sequence header says, read before decoding.
#[derive(Debug, Clone, Copy)]
struct Sequence {
    width: u32,
    height: u32,
    /// ISO/IEC 23091-4 MatrixCoefficients.
    matrix: u32,
    full_range: bool,
}

/// The size, and the bytes of the pictures dav1d will return (colour planes at the stream's bit
/// depth, the widest chroma layout assumed, plus alpha), from the headers alone.
pub fn probe(data: &[u8]) -> Result<(u32, u32, u64), PipelineError> {
    let avif = avif_parse::read_avif(&mut Cursor::new(data))
        .map_err(|e| PipelineError::Corrupt(format!("avif container: {e}")))?;
    let seq = sequence(&avif.primary_item)?;
    if let Some(alpha) = &avif.alpha_item {
        alpha_fits(&seq, &sequence(alpha)?)?;
    }
    let px = seq.width as u64 * seq.height as u64;
    // Two bytes a sample past 8 bits; 4:4:4 at worst; an alpha plane (no larger than the colour
    // image, checked above) if there is one.
    let planes = px * 2 * (3 + avif.alpha_item.is_some() as u64);
    Ok((seq.width, seq.height, planes))
}

/// Decodes an AVIF still image (the primary item, plus its alpha item if there is one).
pub fn decode(data: &[u8], s: &Settings) -> Result<Raster, PipelineError> {
    let avif = avif_parse::read_avif(&mut Cursor::new(data))
        .map_err(|e| PipelineError::Corrupt(format!("avif container: {e}")))?;
    let color_obu = avif.primary_item.to_vec();
    let seq = sequence(&color_obu)?;
    check_size(s, seq.width as u64, seq.height as u64)?;
    let alpha = match &avif.alpha_item {
        Some(item) => {
            let obu = item.to_vec();
            let aseq = sequence(&obu)?;
            alpha_fits(&seq, &aseq)?;
            Some((obu, aseq))
        }
        None => None,
    };
    let limit = u32::try_from(s.max_pixels).unwrap_or(u32::MAX);
    let color = picture(color_obu, limit)?;
    let alpha = match alpha {
        Some((obu, aseq)) => Some((picture(obu, limit)?, aseq)),
        None => None,
    };
    let (w, h) = (color.width(), color.height());
    check_size(s, w as u64, h as u64)?;
    if let Some((a, _)) = &alpha {
        if (a.width(), a.height()) != (w, h) {
            return Err(PipelineError::Corrupt(format!(
                "avif alpha is {}×{}, the image {w}×{h}",
                a.width(),
                a.height()
            )));
        }
    }
    let mut raster = to_raster(&color, &seq, alpha.as_ref().map(|(p, q)| (p, q.full_range)))?;
    if avif.premultiplied_alpha && raster.channels == 4 {
        unpremultiply(&mut raster.data);
    }
    // MIAF's order: clean aperture, then rotation, then mirror.
    let t = transform::read(data, raster.width, raster.height);
    if let Some(rect) = t.crop {
        raster = raster.crop(rect);
    }
    raster.orient(t.orientation)
}

/// An alpha item may not be larger than the colour image it belongs to: its size is read from
/// its own sequence header before either is decoded, so a small image cannot carry a huge
/// alpha plane past the memory estimate.
fn alpha_fits(color: &Sequence, alpha: &Sequence) -> Result<(), PipelineError> {
    if alpha.width > color.width || alpha.height > color.height {
        return Err(PipelineError::Corrupt(format!(
            "avif alpha is up to {}×{}, the image up to {}×{}",
            alpha.width, alpha.height, color.width, color.height
        )));
    }
    Ok(())
}

/// The sequence header of an AV1 OBU stream, through dav1d's own parser.
#[allow(unsafe_code)]
fn sequence(obu: &[u8]) -> Result<Sequence, PipelineError> {
    // SAFETY: dav1d_parse_sequence_header only reads `sz` bytes from `buf`, which is a live
    // slice, and writes one Dav1dSequenceHeader (plain integers, so all-zero is a valid value)
    // into `out`, which is a live local.
    let (ret, hdr) = unsafe {
        let mut hdr: dav1d_sys::Dav1dSequenceHeader = std::mem::zeroed();
        let ret = dav1d_sys::dav1d_parse_sequence_header(&mut hdr, obu.as_ptr(), obu.len());
        (ret, hdr)
    };
    if ret < 0 {
        return Err(PipelineError::Corrupt("no AV1 sequence header".into()));
    }
    let side = |v: i32| u32::try_from(v).ok().filter(|v| *v > 0);
    let (Some(width), Some(height)) = (side(hdr.max_width), side(hdr.max_height)) else {
        return Err(PipelineError::Corrupt(
            "AV1 sequence header without a size".into(),
        ));
    };
    Ok(Sequence {
        width,
        height,
        matrix: hdr.mtrx,
        full_range: hdr.color_range != 0,
    })
}

/// One decoded picture from a still AV1 stream.
fn picture(obu: Vec<u8>, frame_size_limit: u32) -> Result<Picture, PipelineError> {
    let failed = |e: dav1d::Error| PipelineError::Corrupt(format!("av1: {e}"));
    let mut settings = dav1d::Settings::new();
    // The CPU pool already runs one job per core.
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    settings.set_frame_size_limit(frame_size_limit);
    // Only the highest spatial layer, as libavif asks (a layered image would otherwise give its
    // first, smallest layer as the picture).
    settings.set_all_layers(false);
    let mut dec = Decoder::with_settings(&settings).map_err(failed)?;
    let mut pending = match dec.send_data(obu, None, None, None) {
        Ok(()) => false,
        Err(e) if e.is_again() => true,
        Err(e) => return Err(failed(e)),
    };
    for _ in 0..DECODER_TURNS {
        match dec.get_picture() {
            Ok(p) => return Ok(p),
            Err(e) if e.is_again() && pending => {}
            Err(e) if e.is_again() => break,
            Err(e) => return Err(failed(e)),
        }
        pending = match dec.send_pending_data() {
            Ok(()) => false,
            Err(e) if e.is_again() => true,
            Err(e) => return Err(failed(e)),
        };
    }
    Err(PipelineError::Corrupt("av1: no picture in the stream".into()))
}

/// Kr and Kb of a MatrixCoefficients code; unspecified and unknown ones are BT.601, as libavif
/// assumes.
fn coefficients(matrix: u32) -> (f32, f32) {
    match matrix {
        1 => (0.2126, 0.0722),
        4 => (0.30, 0.11),
        7 => (0.212, 0.087),
        9 | 10 => (0.2627, 0.0593),
        _ => (0.299, 0.114),
    }
}

/// One plane's samples, 8-bit or 16-bit storage.
struct Samples<'a> {
    bytes: &'a [u8],
    stride: usize,
    wide: bool,
}

impl<'a> Samples<'a> {
    fn of(plane: &'a Plane, p: &Picture, c: PlanarImageComponent) -> Samples<'a> {
        Samples {
            bytes: plane,
            stride: p.stride(c) as usize,
            wide: p.bit_depth() > 8,
        }
    }

    #[inline]
    fn get(&self, x: usize, y: usize) -> usize {
        if self.wide {
            let i = y * self.stride + 2 * x;
            self.bytes
                .get(i..i + 2)
                .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]) as usize)
        } else {
            self.bytes.get(y * self.stride + x).map_or(0, |b| *b as usize)
        }
    }
}

/// Lookup tables from a sample value to its contribution, in 1/65536 of an 8-bit step.
struct Tables {
    y: Vec<i32>,
    r_cr: Vec<i32>,
    g_cb: Vec<i32>,
    g_cr: Vec<i32>,
    b_cb: Vec<i32>,
}

const ONE: f32 = 65536.0;

/// Luma (or alpha) sample → 0.0..=1.0 and chroma sample → -0.5..=0.5, for `bits` and the range.
fn normalisers(bits: u32, full: bool) -> (impl Fn(usize) -> f32, impl Fn(usize) -> f32) {
    let scale = (1u32 << (bits - 8)) as f32;
    let max = ((1u32 << bits) - 1) as f32;
    let half = (1u32 << (bits - 1)) as f32;
    let luma = move |v: usize| {
        if full {
            v as f32 / max
        } else {
            (v as f32 - 16.0 * scale) / (219.0 * scale)
        }
    };
    let chroma = move |v: usize| {
        if full {
            (v as f32 - half) / max
        } else {
            (v as f32 - half) / (224.0 * scale)
        }
    };
    (luma, chroma)
}

fn tables(bits: u32, full: bool, matrix: u32) -> Tables {
    let (luma, chroma) = normalisers(bits, full);
    let n = 1usize << bits;
    let fixed = |f: f32| (f * 255.0 * ONE).round() as i32;
    let (kr, kb) = coefficients(matrix);
    let kg = 1.0 - kr - kb;
    let table = |f: &dyn Fn(usize) -> f32| (0..n).map(|v| fixed(f(v))).collect::<Vec<_>>();
    Tables {
        y: table(&|v| luma(v)),
        r_cr: table(&|v| 2.0 * (1.0 - kr) * chroma(v)),
        g_cb: table(&|v| -2.0 * kb * (1.0 - kb) / kg * chroma(v)),
        g_cr: table(&|v| -2.0 * kr * (1.0 - kr) / kg * chroma(v)),
        b_cb: table(&|v| 2.0 * (1.0 - kb) * chroma(v)),
    }
}

#[inline]
fn clamp8(v: i32) -> u8 {
    ((v + (1 << 15)) >> 16).clamp(0, 255) as u8
}

fn to_raster(p: &Picture, seq: &Sequence, alpha: Option<(&Picture, bool)>) -> Result<Raster, PipelineError> {
    let bits = p.bits_per_component().map_or(8, |b| b.0) as u32;
    if !(8..=12).contains(&bits) {
        return Err(PipelineError::Corrupt(format!("av1: {bits}-bit samples")));
    }
    let (w, h) = (p.width() as usize, p.height() as usize);
    let layout = p.pixel_layout();
    let gray = layout == PixelLayout::I400;
    let channels: u8 = match (gray, alpha.is_some()) {
        (true, false) => 1,
        (_, true) => 4,
        (false, false) => 3,
    };
    let (sx, sy) = match layout {
        PixelLayout::I420 => (1, 1),
        PixelLayout::I422 => (1, 0),
        PixelLayout::I400 | PixelLayout::I444 => (0, 0),
    };
    let t = tables(bits, seq.full_range, seq.matrix);
    let identity = seq.matrix == 0 && !gray;
    use PlanarImageComponent::{U, V, Y};
    let luma_plane = p.plane(Y);
    let y_plane = Samples::of(&luma_plane, p, Y);
    // A monochrome picture has no chroma buffers at all: never ask for them.
    let chroma_planes = (!gray).then(|| (p.plane(U), p.plane(V)));
    let chroma = chroma_planes
        .as_ref()
        .map(|(u, v)| (Samples::of(u, p, U), Samples::of(v, p, V)));
    let alpha_plane = alpha.map(|(a, _)| a.plane(Y));
    let alpha = alpha.zip(alpha_plane.as_ref()).map(|((a, full), plane)| {
        let abits = a.bits_per_component().map_or(8, |b| b.0) as u32;
        let abits = abits.clamp(8, 12);
        let (luma, _) = normalisers(abits, full);
        let lut: Vec<u8> = (0..1usize << abits)
            .map(|v| (luma(v) * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect();
        (Samples::of(plane, a, Y), lut)
    });
    let mut data = Vec::with_capacity(w * h * channels as usize);
    let at = |lut: &[i32], v: usize| lut.get(v).copied().unwrap_or(0);
    for row in 0..h {
        for x in 0..w {
            let y = at(&t.y, y_plane.get(x, row));
            let rgb = match &chroma {
                None => {
                    let g = clamp8(y);
                    [g, g, g]
                }
                Some((u, v)) => {
                    let (cb, cr) = (u.get(x >> sx, row >> sy), v.get(x >> sx, row >> sy));
                    if identity {
                        [clamp8(at(&t.y, cr)), clamp8(y), clamp8(at(&t.y, cb))]
                    } else {
                        [
                            clamp8(y + at(&t.r_cr, cr)),
                            clamp8(y + at(&t.g_cb, cb) + at(&t.g_cr, cr)),
                            clamp8(y + at(&t.b_cb, cb)),
                        ]
                    }
                }
            };
            match channels {
                1 => data.push(rgb[0]),
                3 => data.extend_from_slice(&rgb),
                _ => {
                    let a = alpha
                        .as_ref()
                        .map_or(255, |(s, lut)| lut.get(s.get(x, row)).copied().unwrap_or(255));
                    data.extend_from_slice(&[rgb[0], rgb[1], rgb[2], a]);
                }
            }
        }
    }
    Ok(Raster {
        width: w as u32,
        height: h as u32,
        channels,
        data,
    })
}

/// Straight alpha from premultiplied RGBA.
fn unpremultiply(rgba: &mut [u8]) {
    for px in rgba.chunks_exact_mut(4) {
        let a = px[3] as u32;
        if a > 0 && a < 255 {
            for c in &mut px[..3] {
                *c = ((*c as u32 * 255 + a / 2) / a).min(255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alpha_plane_larger_than_its_image_is_refused_before_decoding() {
        let seq = |width, height| Sequence {
            width,
            height,
            matrix: 1,
            full_range: true,
        };
        let image = seq(300, 200);
        for (alpha, fits) in [
            (seq(300, 200), true),
            (seq(150, 100), true),
            (seq(301, 200), false),
            (seq(300, 8000), false),
            (seq(16_384, 16_384), false),
        ] {
            assert_eq!(
                alpha_fits(&image, &alpha).is_ok(),
                fits,
                "{}×{}",
                alpha.width,
                alpha.height
            );
        }
    }

    /// Reference conversions (BT.601 and BT.709, both ranges, 8 and 10 bits) at the corners of
    /// the colour cube and mid-gray.
    #[test]
    fn ycbcr_table() {
        let px = |bits: u32, full: bool, matrix: u32, y: usize, cb: usize, cr: usize| {
            let t = tables(bits, full, matrix);
            [
                clamp8(t.y[y] + t.r_cr[cr]),
                clamp8(t.y[y] + t.g_cb[cb] + t.g_cr[cr]),
                clamp8(t.y[y] + t.b_cb[cb]),
            ]
        };
        // (bits, full range, matrix, [y, cb, cr], rgb)
        type Case = (u32, bool, u32, [usize; 3], [u8; 3]);
        let cases: &[Case] = &[
            (8, true, 6, [128, 128, 128], [128, 128, 128]),
            (8, false, 6, [16, 128, 128], [0, 0, 0]),
            (8, false, 6, [235, 128, 128], [255, 255, 255]),
            (8, true, 6, [0, 128, 128], [0, 0, 0]),
            (8, true, 6, [255, 128, 128], [255, 255, 255]),
            // Pure red in BT.601 full range: Y 76, Cb 85, Cr 255.
            (8, true, 6, [76, 85, 255], [254, 0, 0]),
            // Pure red in BT.709 limited range: Y 63, Cb 102, Cr 240 (Y rounded from 62.97).
            (8, false, 1, [63, 102, 240], [255, 1, 0]),
            // 10-bit limited range white and black.
            (10, false, 1, [940, 512, 512], [255, 255, 255]),
            (10, false, 1, [64, 512, 512], [0, 0, 0]),
            // Unspecified matrix (2) is BT.601.
            (8, true, 2, [76, 85, 255], [254, 0, 0]),
        ];
        for (bits, full, m, [y, cb, cr], want) in cases {
            assert_eq!(
                px(*bits, *full, *m, *y, *cb, *cr),
                *want,
                "{bits}-bit full={full} matrix={m} {y}/{cb}/{cr}"
            );
        }
    }

    #[test]
    fn unpremultiply_table() {
        let mut px = [64, 32, 0, 128, 10, 10, 10, 0, 200, 100, 50, 255];
        unpremultiply(&mut px);
        assert_eq!(px, [128, 64, 0, 128, 10, 10, 10, 0, 200, 100, 50, 255]);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let s = Settings::default();
        for data in [&b""[..], b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", &[0xff; 64]] {
            assert!(matches!(decode(data, &s), Err(PipelineError::Corrupt(_))));
        }
    }
}
