//! GIF inputs (D10): frames streamed from the decoder and counted as they come, each resized with
//! the same plan, and encoded as an animated GIF or WebP. Past the frame or total-pixel caps, or
//! for a single-frame file, the first frame alone is rendered (what OH always did).

use std::io::Cursor;
use std::time::Instant;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::{AnimationDecoder, Delay, Frame, ImageDecoder};

use super::raster::Raster;
use super::{
    check_size, decode, encode, geometry, Budget, Output, PipelineError, Rendered, Request, Settings,
};
use crate::metrics::PIPELINE_SECONDS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gif,
    Webp,
}

pub fn render(
    data: &[u8],
    req: &Request,
    s: &Settings,
    budget: &Budget,
    target: Target,
) -> Result<Rendered, PipelineError> {
    let corrupt = |e: image::ImageError| PipelineError::Corrupt(e.to_string());
    let t = Instant::now();
    let mut decoder = GifDecoder::new(Cursor::new(data)).map_err(corrupt)?;
    decoder.set_limits(decode::limits(s)).map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    check_size(s, w as u64, h as u64)?;
    let plan = geometry::plan((w, h), (req.width, req.height), req.mode, &s.caps);
    let per_frame = w as u64 * h as u64;
    let mut frames: Vec<(Raster, Delay)> = Vec::new();
    let mut capped = false;
    for (n, frame) in decoder.into_frames().enumerate() {
        budget.check()?;
        if n as u32 >= s.max_frames || (n as u64 + 1) * per_frame > s.max_animation_pixels {
            capped = true;
            break;
        }
        let frame = match frame {
            Ok(f) => f,
            // A broken later frame ends the animation; a broken first frame is a broken file.
            Err(e) if n == 0 => return Err(corrupt(e)),
            Err(_) => break,
        };
        let delay = frame.delay();
        let buf = frame.into_buffer();
        let raster = Raster::from_dynamic(image::DynamicImage::ImageRgba8(buf));
        frames.push((raster.resize(&plan)?, delay));
    }
    PIPELINE_SECONDS
        .with_label_values(&["decode"])
        .observe(t.elapsed().as_secs_f64());
    if frames.is_empty() {
        return Err(PipelineError::Corrupt("GIF without frames".into()));
    }
    if capped {
        tracing::info!(
            frames = frames.len(),
            "animation past the frame or pixel cap: first frame only"
        );
        frames.truncate(1);
    }
    budget.check()?;
    let t = Instant::now();
    let out = if frames.len() == 1 {
        let (r, _) = frames.remove(0);
        match target {
            Target::Gif => Rendered {
                bytes: gif(vec![(r, Delay::from_numer_denom_ms(0, 1))])?,
                content_type: "image/gif",
                passthrough: false,
            },
            Target::Webp => encode::still(&r, Output::Webp, s)?,
        }
    } else {
        match target {
            Target::Gif => Rendered {
                bytes: gif(frames)?,
                content_type: "image/gif",
                passthrough: false,
            },
            Target::Webp => Rendered {
                bytes: webp(&frames, s)?,
                content_type: "image/webp",
                passthrough: false,
            },
        }
    };
    PIPELINE_SECONDS
        .with_label_values(&["encode"])
        .observe(t.elapsed().as_secs_f64());
    Ok(out)
}

fn gif(frames: Vec<(Raster, Delay)>) -> Result<Vec<u8>, PipelineError> {
    let enc = |e: image::ImageError| PipelineError::Encode(e.to_string());
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
        encoder.set_repeat(Repeat::Infinite).map_err(enc)?;
        for (r, delay) in frames {
            let (w, h) = (r.width, r.height);
            let buf = image::RgbaImage::from_raw(w, h, r.data)
                .ok_or_else(|| PipelineError::Encode("frame buffer size".into()))?;
            encoder
                .encode_frame(Frame::from_parts(buf, 0, 0, delay))
                .map_err(enc)?;
        }
    }
    Ok(out)
}

fn webp(frames: &[(Raster, Delay)], s: &Settings) -> Result<Vec<u8>, PipelineError> {
    let config = encode::webp_config(s)?;
    let (w, h) = (frames[0].0.width, frames[0].0.height);
    let mut encoder = webp::AnimEncoder::new(w, h, &config);
    encoder.set_loop_count(0);
    let mut t = 0i32;
    for (r, delay) in frames {
        encoder.add_frame(webp::AnimFrame::from_rgba(&r.data, r.width, r.height, t));
        let (num, den) = delay.numer_denom_ms();
        t = t.saturating_add((num / den.max(1)).max(20) as i32);
    }
    let mem = encoder
        .try_encode()
        .map_err(|e| PipelineError::Encode(format!("libwebp animation: {e:?}")))?;
    Ok(mem.to_vec())
}
