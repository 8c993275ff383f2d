//! Encoders: JPEG through libjpeg-turbo (4:2:0, alpha flattened on black like OH's libvips),
//! lossy WebP through libwebp (method capped by config, at most 4, and lowered for large
//! outputs so that no size costs seconds), PNG and GIF through `image`, writing into a buffer
//! that stops the encoder when the job's time budget runs out. Nothing from the input's
//! metadata is written.

use std::io;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::ImageEncoder;
use turbojpeg::{Compressor, PixelFormat, Subsamp};

use super::raster::Raster;
use super::{Budget, Output, PipelineError, Rendered, Settings};

/// Output pixels up to which libwebp runs at the configured method; each doubling past it takes
/// one step off (libwebp's cost per pixel grows with the method, so a poster-sized output is
/// encoded fast instead of for seconds).
const WEBP_FULL_EFFORT_PIXELS: u64 = 1 << 21;

pub fn still(r: &Raster, out: Output, s: &Settings, budget: &Budget) -> Result<Rendered, PipelineError> {
    let (bytes, content_type) = match out {
        Output::Jpeg | Output::Match => (jpeg(r, s.jpeg_quality)?, "image/jpeg"),
        Output::Png => (png(r, budget)?, "image/png"),
        Output::Webp => (webp(r, s)?, "image/webp"),
        // A poster-sized AVIF would cost seconds of one worker: WebP instead.
        Output::Avif if r.width as u64 * r.height as u64 > AVIF_MAX_PIXELS => (webp(r, s)?, "image/webp"),
        Output::Avif => {
            budget.check()?;
            (avif(r, s)?, "image/avif")
        }
    };
    Ok(Rendered {
        bytes,
        content_type,
        passthrough: false,
        shared: true,
    })
}

pub fn jpeg(r: &Raster, quality: u8) -> Result<Vec<u8>, PipelineError> {
    let enc = |e: turbojpeg::Error| PipelineError::Encode(e.to_string());
    let flat;
    let (r, format, subsamp) = match r.channels {
        1 => (r, PixelFormat::GRAY, Subsamp::Gray),
        3 => (r, PixelFormat::RGB, Subsamp::Sub2x2),
        _ => {
            flat = r.without_alpha();
            (&flat, PixelFormat::RGB, Subsamp::Sub2x2)
        }
    };
    let mut c = Compressor::new().map_err(enc)?;
    c.set_quality(quality as i32).map_err(enc)?;
    c.set_subsamp(subsamp).map_err(enc)?;
    c.set_optimize(true).map_err(enc)?;
    let image = turbojpeg::Image {
        pixels: r.data.as_slice(),
        width: r.width as usize,
        pitch: r.width as usize * format.size(),
        height: r.height as usize,
        format,
    };
    c.compress_to_vec(image).map_err(enc)
}

pub fn png(r: &Raster, budget: &Budget) -> Result<Vec<u8>, PipelineError> {
    let mut out = Timed::new(budget);
    let color = match r.channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        _ => image::ExtendedColorType::Rgba8,
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&r.data, r.width, r.height, color)
        .map_err(|e| out.error(e))?;
    Ok(out.bytes)
}

/// An encoder's output buffer that fails the write once the budget has run out, so a slow
/// encode stops where it is instead of running to its end.
pub struct Timed<'a> {
    pub bytes: Vec<u8>,
    budget: &'a Budget,
    over: bool,
}

impl<'a> Timed<'a> {
    pub fn new(budget: &'a Budget) -> Self {
        Self {
            bytes: Vec::new(),
            budget,
            over: false,
        }
    }

    /// The pipeline error for an encoder's failure: over budget if that is what stopped it.
    pub fn error(&self, e: impl std::fmt::Display) -> PipelineError {
        match self.budget.check() {
            Err(over) if self.over => over,
            _ => PipelineError::Encode(e.to_string()),
        }
    }
}

impl io::Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget.check().is_err() {
            self.over = true;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "over the job's time budget",
            ));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Output pixels up to which AV1 runs at the configured speed; past it, at the fastest (10), so
/// that a large AVIF costs a fraction of a second rather than seconds.
const AVIF_FULL_EFFORT_PIXELS: u64 = 1 << 20;

/// Outputs larger than this asked for as AVIF are sent as WebP: libaom holds about 40 bytes a
/// pixel, so a larger one would not fit the default job budget beside its decode.
pub const AVIF_MAX_PIXELS: u64 = 2 << 20;

/// What the AV1 encoder holds for an output of `pixels`, as the pool admits jobs by: the 10-bit
/// 4:4:4 image libavif converts to, and libaom's source, reconstruction and analysis buffers
/// (measured as avifenc's peak RSS: 45 B a pixel at 1 MP, 39 at 4 MP, its PNG's pixels
/// included); nothing past the AVIF limit.
pub fn avif_encoder_bytes(pixels: u64) -> u64 {
    if pixels > AVIF_MAX_PIXELS {
        0
    } else {
        pixels * 40 + (16 << 20)
    }
}

/// The AV1 speed (libavif's, 10 fastest) for an output of `pixels`.
pub fn avif_speed(configured: u8, pixels: u64) -> u8 {
    if pixels > AVIF_FULL_EFFORT_PIXELS {
        10
    } else {
        configured.clamp(6, 10)
    }
}

/// AVIF through libaom (`av1.rs`) at the configured quality, and the speed for its size.
pub fn avif(r: &Raster, s: &Settings) -> Result<Vec<u8>, PipelineError> {
    super::av1::encode(
        r,
        s.avif_quality,
        avif_speed(s.avif_speed, r.width as u64 * r.height as u64),
    )
}

/// The libwebp method for an output of `pixels`: the configured one (at most 4) up to
/// [`WEBP_FULL_EFFORT_PIXELS`], one less per doubling past it.
pub fn webp_method(configured: u8, pixels: u64) -> i32 {
    let mut method = configured.min(4) as i32;
    let mut limit = WEBP_FULL_EFFORT_PIXELS;
    while pixels > limit && method > 0 {
        method -= 1;
        limit = limit.saturating_mul(2);
    }
    method
}

pub fn webp_config(s: &Settings, pixels: u64) -> Result<webp::WebPConfig, PipelineError> {
    let mut config = webp::WebPConfig::new().map_err(|_| PipelineError::Encode("libwebp config".into()))?;
    config.quality = s.webp_quality as f32;
    config.method = webp_method(s.webp_method, pixels);
    config.alpha_quality = 100;
    Ok(config)
}

pub fn webp(r: &Raster, s: &Settings) -> Result<Vec<u8>, PipelineError> {
    let color;
    let r = if r.channels == 1 {
        color = r.to_color();
        &color
    } else {
        r
    };
    let layout = if r.channels == 4 {
        webp::PixelLayout::Rgba
    } else {
        webp::PixelLayout::Rgb
    };
    let config = webp_config(s, r.width as u64 * r.height as u64)?;
    let mem = webp::Encoder::new(&r.data, layout, r.width, r.height)
        .encode_advanced(&config)
        .map_err(|e| PipelineError::Encode(format!("libwebp: {e:?}")))?;
    Ok(mem.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webp_effort_falls_with_size() {
        let cases = [
            (4, 640 * 480, 4),
            (4, 1 << 21, 4),
            (4, (1 << 21) + 1, 3),
            (4, 4096 * 4096, 1),
            (4, 1 << 40, 0),
            (2, 1 << 23, 0),
            (9, 100, 4),
        ];
        for (configured, pixels, want) in cases {
            assert_eq!(webp_method(configured, pixels), want, "{configured} {pixels}");
        }
    }

    #[test]
    fn an_encode_past_its_budget_stops_with_over_budget() {
        let budget = Budget::start(std::time::Duration::ZERO);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let r = Raster {
            width: 64,
            height: 64,
            channels: 3,
            data: vec![9; 64 * 64 * 3],
        };
        assert!(matches!(png(&r, &budget), Err(PipelineError::OverBudget(_))));
    }
}
