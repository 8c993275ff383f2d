//! Encoders: JPEG through libjpeg-turbo (4:2:0, alpha flattened on black like OH's libvips),
//! lossy WebP through libwebp (method capped by config, at most 4), PNG and GIF through `image`.
//! Nothing from the input's metadata is written.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::ImageEncoder;
use turbojpeg::{Compressor, PixelFormat, Subsamp};

use super::raster::Raster;
use super::{Output, PipelineError, Rendered, Settings};

pub fn still(r: &Raster, out: Output, s: &Settings) -> Result<Rendered, PipelineError> {
    let (bytes, content_type) = match out {
        Output::Jpeg | Output::Match => (jpeg(r, s.jpeg_quality)?, "image/jpeg"),
        Output::Png => (png(r)?, "image/png"),
        Output::Webp => (webp(r, s)?, "image/webp"),
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

pub fn png(r: &Raster) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    let color = match r.channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        _ => image::ExtendedColorType::Rgba8,
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&r.data, r.width, r.height, color)
        .map_err(|e| PipelineError::Encode(e.to_string()))?;
    Ok(out)
}

pub fn webp_config(s: &Settings) -> Result<webp::WebPConfig, PipelineError> {
    let mut config = webp::WebPConfig::new().map_err(|_| PipelineError::Encode("libwebp config".into()))?;
    config.quality = s.webp_quality as f32;
    config.method = s.webp_method.min(4) as i32;
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
    let config = webp_config(s)?;
    let mem = webp::Encoder::new(&r.data, layout, r.width, r.height)
        .encode_advanced(&config)
        .map_err(|e| PipelineError::Encode(format!("libwebp: {e:?}")))?;
    Ok(mem.to_vec())
}
