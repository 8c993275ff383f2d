//! GIF inputs (D10). A first pass reads frame headers only (no pixel decoding) to count frames
//! against the caps; then frames are decoded and composited on one canvas here (disposal
//! honoured), each resized from the canvas with the same (bounded) plan, and encoded as an
//! animated GIF (streamed into the encoder a frame at a time) or WebP (libwebp assembles the
//! frames at the end). Past the frame or source-pixel caps, past the output cap (frames ×
//! output pixels), or for a single-frame file, the first frame alone is rendered.

use std::io::Cursor;
use std::num::NonZeroU64;
use std::time::Instant;

use gif::{ColorOutput, DecodeOptions, DisposalMethod, MemoryLimit};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame};

use super::raster::Raster;
use super::{check_size, encode, Budget, Output, PipelineError, Rendered, Request, Settings};
use crate::metrics::PIPELINE_SECONDS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gif,
    Webp,
}

fn corrupt(e: gif::DecodingError) -> PipelineError {
    PipelineError::Corrupt(e.to_string())
}

fn options(s: &Settings, skip_pixels: bool) -> DecodeOptions {
    let mut o = DecodeOptions::new();
    o.set_color_output(ColorOutput::RGBA);
    o.check_frame_consistency(true);
    o.skip_frame_decoding(skip_pixels);
    if let Some(limit) = NonZeroU64::new(s.max_pixels.saturating_mul(4)) {
        o.set_memory_limit(MemoryLimit::Bytes(limit));
    }
    o
}

/// Frames to render: all of them within the caps, else 1. Reads headers only.
fn frames_to_render(data: &[u8], s: &Settings, budget: &Budget) -> Result<(u32, u32, usize), PipelineError> {
    let mut d = options(s, true).read_info(Cursor::new(data)).map_err(corrupt)?;
    let (w, h) = (d.width() as u32, d.height() as u32);
    check_size(s, w as u64, h as u64)?;
    let per_frame = w as u64 * h as u64;
    let mut n = 0usize;
    while d.read_next_frame().map_err(corrupt)?.is_some() {
        n += 1;
        if n as u32 > s.max_frames || n as u64 * per_frame > s.max_animation_pixels {
            tracing::info!(
                frames = n,
                "animation past the frame or pixel cap: first frame only"
            );
            return Ok((w, h, 1));
        }
        if n % 64 == 0 {
            budget.check()?;
        }
    }
    if n == 0 {
        return Err(PipelineError::Corrupt("GIF without frames".into()));
    }
    Ok((w, h, n))
}

pub fn render(
    data: &[u8],
    req: &Request,
    s: &Settings,
    budget: &Budget,
    target: Target,
) -> Result<Rendered, PipelineError> {
    let t = Instant::now();
    let (w, h, wanted) = frames_to_render(data, s, budget)?;
    let plan = s.plan((w, h), req);
    let out_px = plan.width as u64 * plan.height as u64;
    let wanted = within_output_cap(wanted, out_px, s.max_animation_output_pixels);
    let mut d = options(s, false).read_info(Cursor::new(data)).map_err(corrupt)?;
    let mut canvas = Raster {
        width: w,
        height: h,
        channels: 4,
        data: vec![0u8; w as usize * h as usize * 4],
    };
    let mut gif_bytes = encode::Timed::new(budget);
    let mut sink = Sink::new(target, wanted, &mut gif_bytes, budget)?;
    let mut done = 0;
    while done < wanted {
        budget.check()?;
        let frame = match d.read_next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if done == 0 => return Err(corrupt(e)),
            Err(_) => break, // a broken later frame ends the animation
        };
        let saved = (frame.dispose == DisposalMethod::Previous).then(|| canvas.data.clone());
        let area = (
            frame.left as usize,
            frame.top as usize,
            frame.width as usize,
            frame.height as usize,
        );
        paint(&mut canvas, frame);
        let (delay, how) = (frame.delay, frame.dispose);
        sink.add(canvas.resized(&plan)?, delay)?;
        done += 1;
        dispose(&mut canvas, area, how, saved);
    }
    PIPELINE_SECONDS
        .with_label_values(&["decode"])
        .observe(t.elapsed().as_secs_f64());
    if done == 0 {
        return Err(PipelineError::Corrupt("GIF without frames".into()));
    }
    budget.check()?;
    let t = Instant::now();
    let out = match sink.finish(s, budget)? {
        Some(r) => r,
        None => Rendered {
            bytes: gif_bytes.bytes,
            content_type: "image/gif",
            passthrough: false,
            shared: true,
        },
    };
    PIPELINE_SECONDS
        .with_label_values(&["encode"])
        .observe(t.elapsed().as_secs_f64());
    Ok(out)
}

/// The frames to render: all wanted, or only the first when all of them at the output size would
/// pass the animation output cap.
fn within_output_cap(wanted: usize, out_px: u64, cap: u64) -> usize {
    if wanted > 1 && wanted as u64 * out_px > cap {
        tracing::info!(
            frames = wanted,
            out_px,
            "animation past the output cap: first frame only"
        );
        return 1;
    }
    wanted
}

/// What a frame leaves for the next one: its area (`left, top, width, height`) cleared
/// (`Background`), the canvas as it was before the frame (`Previous`), or the frame itself.
fn dispose(
    canvas: &mut Raster,
    area: (usize, usize, usize, usize),
    how: DisposalMethod,
    saved: Option<Vec<u8>>,
) {
    let (cw, ch) = (canvas.width as usize, canvas.height as usize);
    let (fl, ft, fw, fh) = area;
    match (how, saved) {
        (DisposalMethod::Background, _) => {
            for y in ft..(ft + fh).min(ch) {
                let row = (y * cw + fl.min(cw)) * 4;
                let end = (y * cw + (fl + fw).min(cw)) * 4;
                canvas.data[row..end].fill(0);
            }
        }
        (DisposalMethod::Previous, Some(prev)) => canvas.data = prev,
        _ => {}
    }
}

/// Paints a frame's opaque pixels onto the canvas (frames are checked to lie within it by the
/// decoder's frame-consistency option; anything outside is clipped all the same).
fn paint(canvas: &mut Raster, frame: &gif::Frame<'_>) {
    let (cw, ch) = (canvas.width as usize, canvas.height as usize);
    let (fl, ft, fw, fh) = (
        frame.left as usize,
        frame.top as usize,
        frame.width as usize,
        frame.height as usize,
    );
    for y in 0..fh.min(ch.saturating_sub(ft)) {
        for x in 0..fw.min(cw.saturating_sub(fl)) {
            let src = (y * fw + x) * 4;
            let Some(px) = frame.buffer.get(src..src + 4) else {
                break;
            };
            if px[3] != 0 {
                let dst = ((ft + y) * cw + fl + x) * 4;
                canvas.data[dst..dst + 4].copy_from_slice(px);
            }
        }
    }
}

/// The first frame on a transparent canvas of the logical screen, for still outputs. Decoded by
/// the same bounded decoder as animations: a frame larger than the screen is refused before its
/// buffer is allocated (image's GIF decoder would allocate the frame's own size, up to 64k×64k).
pub fn first_frame(data: &[u8], s: &Settings) -> Result<Raster, PipelineError> {
    let mut d = options(s, false).read_info(Cursor::new(data)).map_err(corrupt)?;
    let (w, h) = (d.width() as u32, d.height() as u32);
    check_size(s, w as u64, h as u64)?;
    let mut canvas = Raster {
        width: w,
        height: h,
        channels: 4,
        data: vec![0u8; w as usize * h as usize * 4],
    };
    let frame = d
        .read_next_frame()
        .map_err(corrupt)?
        .ok_or_else(|| PipelineError::Corrupt("GIF without frames".into()))?;
    paint(&mut canvas, frame);
    Ok(canvas)
}

/// Where resized frames go: straight into the GIF encoder, or kept for libwebp.
enum Sink<'w, 'b> {
    Gif {
        encoder: Box<GifEncoder<&'w mut encode::Timed<'b>>>,
        budget: &'b Budget,
    },
    Webp(Vec<(Raster, u16)>),
}

/// An encoder's error: over budget if the budget is what stopped it.
fn encode_error(budget: &Budget, e: impl std::fmt::Display) -> PipelineError {
    match budget.check() {
        Err(over) => over,
        Ok(()) => PipelineError::Encode(e.to_string()),
    }
}

impl<'w, 'b> Sink<'w, 'b> {
    fn new(
        target: Target,
        frames: usize,
        out: &'w mut encode::Timed<'b>,
        budget: &'b Budget,
    ) -> Result<Self, PipelineError> {
        Ok(match target {
            Target::Gif => {
                let mut encoder = GifEncoder::new_with_speed(out, 10);
                encoder
                    .set_repeat(Repeat::Infinite)
                    .map_err(|e| encode_error(budget, e))?;
                Sink::Gif {
                    encoder: Box::new(encoder),
                    budget,
                }
            }
            Target::Webp => Sink::Webp(Vec::with_capacity(frames)),
        })
    }

    fn add(&mut self, r: Raster, delay_cs: u16) -> Result<(), PipelineError> {
        match self {
            Sink::Gif { encoder, budget } => {
                let (w, h) = (r.width, r.height);
                let buf = image::RgbaImage::from_raw(w, h, r.data)
                    .ok_or_else(|| PipelineError::Encode("frame buffer size".into()))?;
                let delay = Delay::from_numer_denom_ms(delay_cs as u32 * 10, 1);
                encoder
                    .encode_frame(Frame::from_parts(buf, 0, 0, delay))
                    .map_err(|e| encode_error(budget, e))
            }
            Sink::Webp(frames) => {
                frames.push((r, delay_cs));
                Ok(())
            }
        }
    }

    /// The WebP output; `None` for a GIF, whose bytes are in the buffer the encoder wrote to
    /// (complete once the encoder, dropped here, has written the trailer).
    fn finish(self, s: &Settings, budget: &Budget) -> Result<Option<Rendered>, PipelineError> {
        match self {
            Sink::Gif { encoder, .. } => {
                drop(encoder);
                budget.check()?;
                Ok(None)
            }
            Sink::Webp(mut frames) if frames.len() == 1 => {
                encode::still(&frames.remove(0).0, Output::Webp, s, budget).map(Some)
            }
            Sink::Webp(frames) => Ok(Some(Rendered {
                bytes: webp(&frames, s)?,
                content_type: "image/webp",
                passthrough: false,
                shared: true,
            })),
        }
    }
}

fn webp(frames: &[(Raster, u16)], s: &Settings) -> Result<Vec<u8>, PipelineError> {
    let (w, h) = (frames[0].0.width, frames[0].0.height);
    let config = encode::webp_config(s, w as u64 * h as u64 * frames.len() as u64)?;
    let mut encoder = webp::AnimEncoder::new(w, h, &config);
    encoder.set_loop_count(0);
    let mut t = 0i32;
    for (r, delay_cs) in frames {
        encoder.add_frame(webp::AnimFrame::from_rgba(&r.data, r.width, r.height, t));
        // Browsers show delays under 20 ms as 100 ms; keep at least 20 ms a frame.
        t = t.saturating_add((*delay_cs as i32 * 10).max(20));
    }
    let mem = encoder
        .try_encode()
        .map_err(|e| PipelineError::Encode(format!("libwebp animation: {e:?}")))?;
    Ok(mem.to_vec())
}
