//! Still-image decoding with limits checked from the header first: JPEG shrunk on load to the
//! DCT scale the resize plan allows (baseline files by `shrink.rs`, the rest by libjpeg-turbo),
//! PNG streamed and box-shrunk (`png.rs`), GIF's first frame by the animation decoder
//! (`animate.rs`), WebP through `image` with strict limits, AVIF through dav1d (`avif.rs`).
//! Returns oriented pixels and the (bounded) plan mapped onto them.

use std::io::Cursor;
use std::sync::Arc;

use image::{ImageDecoder, ImageFormat, ImageReader};
use turbojpeg::{Colorspace, DecompressHeader, Decompressor, PixelFormat, ScalingFactor};

use super::geometry::{self, Plan};
use super::kept::KeptAs;
use super::raster::Raster;
use super::{check_size, exif, Budget, Input, PipelineError, Request, Settings};
use crate::metrics::{JPEG_DECODES, KEPT_RASTERS};

/// Progressive scans allowed (libjpeg-turbo's guard against the many-scans CPU bomb).
const JPEG_SCAN_LIMIT: u32 = 500;

pub fn still(
    data: &[u8],
    input: Input,
    req: &Request,
    s: &Settings,
    budget: &Budget,
) -> Result<(Raster, Plan), PipelineError> {
    match input {
        Input::Jpeg => jpeg(data, req, s),
        Input::Png => png(data, req, s, budget),
        Input::Gif => planned(super::animate::first_frame(data, s)?, req, s),
        Input::Webp => with_image(data, ImageFormat::WebP, req, s),
        Input::Avif => planned(super::avif::decode(data, s)?, req, s),
    }
}

/// The plan for pixels that need no mapping (decoded at full size, already oriented).
fn planned(raster: Raster, req: &Request, s: &Settings) -> Result<(Raster, Plan), PipelineError> {
    let plan = s.plan((raster.width, raster.height), req);
    Ok((raster, plan))
}

/// Maps a plan made on the full-size oriented source onto pixels decoded smaller.
fn scaled(plan: Plan, src: (u32, u32), raster: &Raster) -> Plan {
    let (fx, fy) = (
        raster.width as f64 / src.0 as f64,
        raster.height as f64 / src.1 as f64,
    );
    let (l, t, cw, ch) = plan.crop;
    Plan {
        crop: (l * fx, t * fy, cw * fx, ch * fy),
        ..plan
    }
}

/// A PNG's header read and its box factor chosen.
struct PngPlan {
    width: u32,
    height: u32,
    /// The box factor the rows are shrunk by.
    k: u32,
    /// The scale its pixels come out at: an interlaced file is decoded whole whatever `k` is.
    scale: u32,
}

fn png_plan(data: &[u8], req: &Request, s: &Settings) -> Result<PngPlan, PipelineError> {
    let p = super::probe::probe(data, Input::Png, s)?;
    // The orientation is known once the chunks before the pixels are read; the box factor only
    // needs the smaller shrink of the two ways, so plan both and take the smaller factor.
    let k = [(p.width, p.height), (p.height, p.width)]
        .iter()
        .map(|src| geometry::box_factor(&s.plan(*src, req), s.dct_margin))
        .min()
        .unwrap_or(1);
    let interlaced = matches!(p.kind, super::probe::Kind::Png { interlaced: true });
    Ok(PngPlan {
        width: p.width,
        height: p.height,
        k,
        scale: if interlaced { 1 } else { k },
    })
}

/// PNG: the plan is made from the header, so a thumbnail is box-shrunk while the rows stream.
fn png(data: &[u8], req: &Request, s: &Settings, budget: &Budget) -> Result<(Raster, Plan), PipelineError> {
    png_decode(data, png_plan(data, req, s)?, req, s, budget)
}

fn png_decode(
    data: &[u8],
    p: PngPlan,
    req: &Request,
    s: &Settings,
    budget: &Budget,
) -> Result<(Raster, Plan), PipelineError> {
    let (raster, orientation) = super::png::decode(data, p.k, budget)?;
    let src = oriented(p.width, p.height, orientation);
    let plan = s.plan(src, req);
    let raster = raster.orient(orientation)?;
    let plan = scaled(plan, src, &raster);
    Ok((raster, plan))
}

/// A PNG decoded for `req`, or the pixels kept from an earlier size of the same original shrunk
/// by the same factor; a new decode is kept for the sizes that follow. Only the chunks before
/// the pixels are read to find the orientation a kept raster was turned by.
pub fn png_kept(
    data: &[u8],
    req: &Request,
    s: &Settings,
    budget: &Budget,
    kept: KeptAs<'_>,
) -> Result<(Arc<Raster>, Plan), PipelineError> {
    let p = png_plan(data, req, s)?;
    if let Some(raster) = kept_at(kept, p.scale) {
        let src = oriented(p.width, p.height, super::png::orientation(data)?);
        let plan = scaled(s.plan(src, req), src, &raster);
        return Ok((raster, plan));
    }
    let scale = p.scale;
    let (raster, plan) = png_decode(data, p, req, s, budget)?;
    Ok((keep(kept, scale, raster), plan))
}

/// Oriented size: orientations 5–8 swap the sides.
fn oriented(w: u32, h: u32, orientation: u8) -> (u32, u32) {
    if orientation >= 5 {
        (h, w)
    } else {
        (w, h)
    }
}

/// A JPEG's header read and its decode planned: the DCT scale it decodes at is also what its
/// kept pixels are found by.
struct JpegPlan {
    d: Decompressor,
    header: DecompressHeader,
    orientation: u8,
    /// The oriented full size.
    src: (u32, u32),
    plan: Plan,
    denom: u32,
}

fn jpeg_plan(data: &[u8], req: &Request, s: &Settings) -> Result<JpegPlan, PipelineError> {
    let corrupt = |e: turbojpeg::Error| PipelineError::Corrupt(e.to_string());
    let mut d = Decompressor::new().map_err(corrupt)?;
    let header = d.read_header(data).map_err(corrupt)?;
    check_size(s, header.width as u64, header.height as u64)?;
    let orientation = exif::jpeg_orientation(data);
    let src = oriented(header.width as u32, header.height as u32, orientation);
    let plan = s.plan(src, req);
    let denom = geometry::dct_denominator(&plan, s.dct_margin);
    Ok(JpegPlan {
        d,
        header,
        orientation,
        src,
        plan,
        denom,
    })
}

fn jpeg(data: &[u8], req: &Request, s: &Settings) -> Result<(Raster, Plan), PipelineError> {
    jpeg_decode(data, jpeg_plan(data, req, s)?, s)
}

/// A JPEG decoded for `req`, or the pixels kept from an earlier decode of the same original at
/// the same scale (`kept.rs`); a new decode is kept for the sizes that follow.
pub fn jpeg_kept(
    data: &[u8],
    req: &Request,
    s: &Settings,
    kept: KeptAs<'_>,
) -> Result<(Arc<Raster>, Plan), PipelineError> {
    let p = jpeg_plan(data, req, s)?;
    if let Some(raster) = kept_at(kept, p.denom) {
        let plan = scaled(p.plan, p.src, &raster);
        return Ok((raster, plan));
    }
    let denom = p.denom;
    let (raster, plan) = jpeg_decode(data, p, s)?;
    Ok((keep(kept, denom, raster), plan))
}

/// A WebP, AVIF or GIF (its first frame) still, decoded at full size whatever size is asked
/// for, or the pixels kept from an earlier size of it; a new decode is kept for the sizes that
/// follow.
pub fn full_kept(
    data: &[u8],
    input: Input,
    req: &Request,
    s: &Settings,
    budget: &Budget,
    kept: KeptAs<'_>,
) -> Result<(Arc<Raster>, Plan), PipelineError> {
    if let Some(raster) = kept_at(kept, 1) {
        let plan = s.plan((raster.width, raster.height), req);
        return Ok((raster, plan));
    }
    let (raster, plan) = still(data, input, req, s, budget)?;
    Ok((keep(kept, 1, raster), plan))
}

/// The pixels kept for the original at 1/`scale`, counting the hit.
fn kept_at(kept: KeptAs<'_>, scale: u32) -> Option<Arc<Raster>> {
    let raster = kept.kept.get(kept.key, scale)?;
    KEPT_RASTERS.with_label_values(&["hit"]).inc();
    Some(raster)
}

/// Keeps a new decode at 1/`scale` for the sizes that follow (if it is worth keeping), counting
/// the outcome.
fn keep(kept: KeptAs<'_>, scale: u32, raster: Raster) -> Arc<Raster> {
    let raster = Arc::new(raster);
    let outcome = if kept.kept.put(kept.key, scale, raster.clone()) {
        "kept"
    } else {
        "not_kept"
    };
    KEPT_RASTERS.with_label_values(&[outcome]).inc();
    raster
}

fn jpeg_decode(data: &[u8], p: JpegPlan, s: &Settings) -> Result<(Raster, Plan), PipelineError> {
    let JpegPlan {
        d,
        header,
        orientation,
        src,
        plan,
        denom,
    } = p;
    let (w, h) = (header.width as u32, header.height as u32);
    // Thumbnails of baseline JPEGs skip what they do not need (shrink.rs); the rest, and every
    // full-size decode, go to libjpeg-turbo.
    let shrunk = (denom > 1 && s.shrink_decoder)
        .then(|| super::shrink::decode(data, denom, s.max_pixels))
        .flatten()
        .filter(|r| (r.width, r.height) == (w.div_ceil(denom), h.div_ceil(denom)));
    let decoder = if shrunk.is_some() {
        "shrink"
    } else {
        "libjpeg-turbo"
    };
    JPEG_DECODES.with_label_values(&[decoder]).inc();
    let raster = match shrunk {
        Some(r) => r,
        None => turbo(d, &header, data, denom)?,
    }
    .orient(orientation)?;
    // The plan was made on the full-size source; map its crop onto the decoded pixels.
    let plan = scaled(plan, src, &raster);
    Ok((raster, plan))
}

/// libjpeg-turbo's decode at 1/`denom` of the size, for every JPEG the shrink decoder leaves.
fn turbo(
    mut d: Decompressor,
    header: &DecompressHeader,
    data: &[u8],
    denom: u32,
) -> Result<Raster, PipelineError> {
    let corrupt = |e: turbojpeg::Error| PipelineError::Corrupt(e.to_string());
    let factor = ScalingFactor::new(1, denom as usize);
    d.set_scaling_factor(factor).map_err(corrupt)?;
    d.set_scan_limit(JPEG_SCAN_LIMIT).map_err(corrupt)?;
    // When DCT scaling already shrinks the image, the filter that follows hides the difference
    // between smooth and fast chroma upsampling; only full-size decodes pay for smooth.
    d.set_fast_upsample(denom > 1).map_err(corrupt)?;
    let scaled = header.scaled(factor);
    let (format, channels) = match header.colorspace {
        Colorspace::Gray => (PixelFormat::GRAY, 1u8),
        Colorspace::CMYK | Colorspace::YCCK => (PixelFormat::CMYK, 4),
        _ => (PixelFormat::RGB, 3),
    };
    let pitch = scaled.width * format.size();
    let mut pixels = vec![0u8; pitch * scaled.height];
    let image = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: scaled.width,
        pitch,
        height: scaled.height,
        format,
    };
    d.decompress(data, image).map_err(corrupt)?;
    Ok(Raster {
        width: scaled.width as u32,
        height: scaled.height as u32,
        channels: if format == PixelFormat::CMYK { 3 } else { channels },
        data: if format == PixelFormat::CMYK {
            cmyk_to_rgb(&pixels)
        } else {
            pixels
        },
    })
}

/// Adobe-style (inverted) CMYK, as libjpeg-turbo hands it over, to RGB.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let k = p[3] as u16;
            [0, 1, 2].map(|i| ((p[i] as u16 * k + 127) / 255) as u8)
        })
        .collect()
}

/// `image`'s decoders with width/height limits set before the header is parsed and the output
/// buffer size checked before it is allocated (`into_decoder` does not check `max_alloc`).
fn with_image(
    data: &[u8],
    format: ImageFormat,
    req: &Request,
    s: &Settings,
) -> Result<(Raster, Plan), PipelineError> {
    let corrupt = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => PipelineError::TooLarge {
            width: 0,
            height: 0,
            limit: l.to_string(),
        },
        other => PipelineError::Corrupt(other.to_string()),
    };
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    reader.limits(limits(s));
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    check_size(s, w as u64, h as u64)?;
    if decoder.total_bytes() > s.max_pixels.saturating_mul(8) {
        return Err(PipelineError::TooLarge {
            width: w as u64,
            height: h as u64,
            limit: format!("{} bytes decoded", s.max_pixels.saturating_mul(8)),
        });
    }
    let orientation = decoder.orientation().map(exif_code).unwrap_or(1);
    let img = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    planned(Raster::from_dynamic(img).orient(orientation)?, req, s)
}

pub fn limits(s: &Settings) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(s.max_dimension);
    l.max_image_height = Some(s.max_dimension);
    l.max_alloc = Some(s.max_pixels.saturating_mul(8));
    l
}

fn exif_code(o: image::metadata::Orientation) -> u8 {
    use image::metadata::Orientation::*;
    match o {
        NoTransforms => 1,
        FlipHorizontal => 2,
        Rotate180 => 3,
        FlipVertical => 4,
        Rotate90FlipH => 5,
        Rotate90 => 6,
        Rotate270FlipH => 7,
        Rotate270 => 8,
    }
}
