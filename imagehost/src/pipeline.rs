//! The image pipeline: bytes in, one resized and re-encoded image out, bounded in memory and time.
//!
//! [`prepare`] reads only headers, on the request's own task: the input size is checked against
//! the input limits, the output is bounded (enlargement capped, output pixels and sides capped,
//! in every mode) and the job's memory estimated ([`budget`]), so the CPU pool can admit it by
//! bytes as well as by count, or refuse it. [`render`] then decodes (JPEG shrunk on load by
//! `shrink.rs` or libjpeg-turbo, PNG streamed and box-shrunk, AVIF with dav1d), resizes with
//! `fast_image_resize` and encodes (libjpeg-turbo, libwebp, `image` for PNG and GIF), checking
//! the time budget between stages, frames and rows, and inside the PNG and GIF encoders.
//! Metadata is dropped, EXIF orientation applied. Synchronous: callers run it on the CPU pool.

pub mod animate;
pub mod av1;
pub mod avif;
pub mod budget;
pub mod decode;
pub mod encode;
pub mod exif;
pub mod geometry;
pub mod kept;
pub mod png;
pub mod probe;
pub mod raster;
pub mod shrink;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::PIPELINE_SECONDS;
pub use geometry::Caps;
pub use geometry::Mode;

/// The input types the pipeline reads (from sniffed bytes, never a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Jpeg,
    Png,
    Gif,
    Webp,
    Avif,
}

impl Input {
    pub fn from_mime(mime: &str) -> Option<Input> {
        Some(match mime {
            "image/jpeg" => Input::Jpeg,
            "image/png" => Input::Png,
            "image/gif" => Input::Gif,
            "image/webp" => Input::Webp,
            "image/avif" => Input::Avif,
            _ => return None,
        })
    }

    pub fn mime(self) -> &'static str {
        match self {
            Input::Jpeg => "image/jpeg",
            Input::Png => "image/png",
            Input::Gif => "image/gif",
            Input::Webp => "image/webp",
            Input::Avif => "image/avif",
        }
    }
}

/// An output format, resolved (`match` already replaced by the input's own where it applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Match,
    Jpeg,
    Png,
    Webp,
    Avif,
}

/// One job.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub mode: Mode,
    pub format: Output,
    pub avif: AvifSource,
}

/// What an AVIF source becomes (OH-develop passes it through with `match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvifSource {
    /// As the format says: passed through with `match`, decoded for any other format.
    AsRequested,
    /// Negotiated, no size asked for, and the client takes AVIF: served as it is, whatever the
    /// format (a WebP re-encode would be larger and worse).
    PassThrough,
    /// Negotiated, and `match` is what the client gets (it takes no WebP; or AVIF, but a size
    /// was asked for): an AVIF becomes JPEG, or PNG when it has alpha. Such a result is not
    /// stored as the variant (see `Rendered::shared`).
    Convert,
}

/// Limits and encoder settings, from `[pipeline]` and `[proxy]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub caps: Caps,
    pub max_dimension: u32,
    pub max_pixels: u64,
    pub max_frames: u32,
    pub max_animation_pixels: u64,
    pub budget: Duration,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
    pub webp_method: u8,
    /// AVIF (libaom) quality, 1–100, and libavif's speed, 6–10 (10 fastest).
    pub avif_quality: u8,
    pub avif_speed: u8,
    /// Shrink-on-load margin: DCT scaling leaves at least this much for the filter. 1.5 (not
    /// libvips' 2) lets a 4000×3000 → 640 px thumbnail decode at ¼ instead of ½ (with
    /// libjpeg-turbo alone: 71 → 58–68 ms CPU; the shrink decoder reads less the smaller it goes).
    pub dct_margin: f64,
    /// Thumbnails of baseline JPEGs through `shrink.rs`; false sends every JPEG to libjpeg-turbo.
    pub shrink_decoder: bool,
    /// Output pixels per source pixel, per side, at most (cover enlarges; a 64 px avatar may be
    /// asked for at 512).
    pub max_upscale: f64,
    /// Largest output, in pixels (and `max_dimension` per side): larger asks get the largest
    /// output within it, same crop and aspect.
    pub max_output_pixels: u64,
    /// Frames × output pixels of an animated output at most; past it, the first frame only.
    pub max_animation_output_pixels: u64,
    /// Bytes the CPU pool's jobs may hold at once, by their estimates; a job estimated over it
    /// is refused.
    pub memory_budget: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            caps: Caps::default(),
            max_dimension: 16_384,
            max_pixels: 50_000_000,
            max_frames: 300,
            max_animation_pixels: 25_000_000,
            budget: Duration::from_secs(10),
            jpeg_quality: 85,
            webp_quality: 80,
            webp_method: 4,
            // Measured (bench/src/bin/avif.rs): quality 60 scores about as our WebP at 80 does
            // (SSIMULACRA2 76–78) in 0.73–0.74× its bytes; speed 7 keeps a 640 px thumbnail
            // near 160–200 ms of CPU (speed 6: 0.73–0.75×, at 1.8× the CPU).
            avif_quality: 60,
            avif_speed: 7,
            dct_margin: 1.5,
            shrink_decoder: true,
            max_upscale: 8.0,
            max_output_pixels: 16_777_216,
            max_animation_output_pixels: 8_000_000,
            memory_budget: 160 << 20,
        }
    }
}

impl Settings {
    /// The resize plan for a source of `src` pixels (already oriented), bounded by the output
    /// limits: the one place plans are made.
    pub fn plan(&self, src: (u32, u32), req: &Request) -> geometry::Plan {
        let plan = geometry::plan(src, (req.width, req.height), req.mode, &self.caps);
        geometry::bound(
            plan,
            &geometry::OutputLimits {
                max_upscale: self.max_upscale,
                max_dimension: self.max_dimension,
                max_pixels: self.max_output_pixels,
            },
        )
    }
}

/// The result: encoded bytes, their type, and whether they are the input itself.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    /// True when the input is served as it is (GIF and AVIF passthrough): no variant is stored.
    pub passthrough: bool,
    /// False when the result is only right for the client that negotiated it (an AVIF source
    /// converted for a client without AVIF or WebP): it is not stored as the variant.
    pub shared: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0} input is not supported for this request")]
    Unsupported(&'static str),
    #[error("image is {width}×{height}, past the limit ({limit})")]
    TooLarge { width: u64, height: u64, limit: String },
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    #[error("image took longer than its {0:?} budget")]
    OverBudget(Duration),
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl PipelineError {
    /// The label used in metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PipelineError::Unsupported(_) => "unsupported",
            PipelineError::TooLarge { .. } => "too_large",
            PipelineError::Corrupt(_) => "corrupt",
            PipelineError::OverBudget(_) => "over_budget",
            PipelineError::Encode(_) => "encode",
        }
    }
}

/// A deadline checked between stages.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
    limit: Duration,
}

impl Budget {
    pub fn start(limit: Duration) -> Self {
        Self {
            deadline: Instant::now() + limit,
            limit,
        }
    }

    pub fn check(&self) -> Result<(), PipelineError> {
        if Instant::now() > self.deadline {
            return Err(PipelineError::OverBudget(self.limit));
        }
        Ok(())
    }
}

/// Checks a width and height against the settings, before any pixel is allocated.
pub fn check_size(s: &Settings, width: u64, height: u64) -> Result<(), PipelineError> {
    let too = |limit: String| PipelineError::TooLarge { width, height, limit };
    if width == 0 || height == 0 {
        return Err(PipelineError::Corrupt("zero width or height".into()));
    }
    if width > s.max_dimension as u64 || height > s.max_dimension as u64 {
        return Err(too(format!("{} px per side", s.max_dimension)));
    }
    if width * height > s.max_pixels {
        return Err(too(format!("{} pixels", s.max_pixels)));
    }
    Ok(())
}

/// What a request does with its input, before any pixel: served as it is, animated, or still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Passthrough,
    Animated(animate::Target),
    Still(Output),
}

fn route(input: Input, req: &Request) -> Route {
    match input {
        // §1.4 step 10: fit + match with no size keeps a GIF as it is (animation included).
        Input::Gif
            if req.width.is_none()
                && req.height.is_none()
                && req.format == Output::Match
                && req.mode == Mode::Fit =>
        {
            return Route::Passthrough;
        }
        // OH-develop step 11: AVIF with match is served unchanged (encoding AVIF costs about a
        // second per image); an explicit format decodes and resizes it like any other input.
        Input::Avif
            if req.avif == AvifSource::PassThrough
                || (req.avif == AvifSource::AsRequested && req.format == Output::Match) =>
        {
            return Route::Passthrough;
        }
        _ => {}
    }
    match (req.format, input) {
        (Output::Match, Input::Gif) => Route::Animated(animate::Target::Gif),
        // An animation stays one: AVIF is encoded as a still, so an animated GIF asked for as
        // AVIF becomes an animated WebP (every browser that takes AVIF takes WebP).
        (Output::Webp | Output::Avif, Input::Gif) => Route::Animated(animate::Target::Webp),
        (Output::Match, Input::Png) => Route::Still(Output::Png),
        (Output::Match, Input::Webp) => Route::Still(Output::Webp),
        (Output::Match, _) => Route::Still(Output::Jpeg),
        (f, _) => Route::Still(f),
    }
}

/// A job checked and sized from headers alone, before the pool admits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// Estimated bytes the job holds at its peak (what the pool admits it by).
    pub cost: u64,
}

/// Reads `data`'s headers (sniffed as `input`), checks them against the input limits, bounds the
/// output and estimates the job's memory; refuses a job whose estimate alone is over the pool's
/// whole `memory_budget`. Cheap: no pixel is decoded.
pub fn prepare(data: &[u8], input: Input, req: &Request, s: &Settings) -> Result<Prepared, PipelineError> {
    let route = route(input, req);
    if route == Route::Passthrough {
        return Ok(Prepared {
            cost: data.len() as u64,
        });
    }
    let p = probe::probe(data, input, s)?;
    // The orientation that swaps the sides is known for JPEG from its header; for other inputs
    // after decoding, so both ways are estimated and the larger kept.
    let (w, h) = (p.width, p.height);
    let sources: &[((u32, u32), bool)] = match input {
        Input::Jpeg => match exif::jpeg_orientation(data) {
            1 => &[((w, h), false)],
            o if o >= 5 => &[((h, w), true)],
            _ => &[((w, h), true)],
        },
        _ => &[((w, h), true), ((h, w), true)],
    };
    let mut cost = 0;
    for &(src, oriented) in sources {
        let plan = s.plan(src, req);
        // Sized as oriented, like the plan (the pixel count is the same either way).
        let as_oriented = probe::Probe {
            width: src.0,
            height: src.1,
            ..p.clone()
        };
        let mut c = budget::job_bytes(&as_oriented, &plan, oriented, s.dct_margin, data.len() as u64);
        // The AV1 encoder's frames and analysis buffers.
        if route == Route::Still(Output::Avif) {
            c += encode::avif_encoder_bytes(plan.width as u64 * plan.height as u64);
        }
        // An animated WebP holds every output frame until it is assembled.
        if route == Route::Animated(animate::Target::Webp) {
            c += s
                .max_animation_output_pixels
                .min(plan.width as u64 * plan.height as u64 * s.max_frames as u64)
                * 4;
        }
        cost = cost.max(c);
    }
    if cost > s.memory_budget {
        return Err(PipelineError::TooLarge {
            width: w as u64,
            height: h as u64,
            limit: format!(
                "an estimated {} MiB to render, over the {} MiB pipeline.memory_budget",
                cost >> 20,
                s.memory_budget >> 20
            ),
        });
    }
    Ok(Prepared { cost })
}

/// Renders `data` (already sniffed as `input`) for `req`.
pub fn render(data: &[u8], input: Input, req: &Request, s: &Settings) -> Result<Rendered, PipelineError> {
    render_kept(data, input, req, s, None)
}

/// [`render`], resizing a still from pixels kept from an earlier size of the same original when
/// `kept` has them, and keeping its decode for the next size otherwise.
pub fn render_kept(
    data: &[u8],
    input: Input,
    req: &Request,
    s: &Settings,
    kept: Option<kept::KeptAs<'_>>,
) -> Result<Rendered, PipelineError> {
    let budget = Budget::start(s.budget);
    let out = match route(input, req) {
        Route::Passthrough => {
            return Ok(Rendered {
                bytes: data.to_vec(),
                content_type: input.mime(),
                passthrough: true,
                shared: false,
            })
        }
        Route::Animated(target) => return animate::render(data, req, s, &budget, target),
        Route::Still(out) => out,
    };
    let t = Instant::now();
    let (raster, plan) = match kept {
        Some(kept) if input == Input::Jpeg => decode::jpeg_kept(data, req, s, kept)?,
        Some(kept) if input == Input::Png => decode::png_kept(data, req, s, &budget, kept)?,
        Some(kept) if matches!(input, Input::Webp | Input::Avif | Input::Gif) => {
            decode::full_kept(data, input, req, s, &budget, kept)?
        }
        _ => {
            let (raster, plan) = decode::still(data, input, req, s, &budget)?;
            (Arc::new(raster), plan)
        }
    };
    PIPELINE_SECONDS
        .with_label_values(&["decode"])
        .observe(t.elapsed().as_secs_f64());
    budget.check()?;
    let t = Instant::now();
    // Pixels also kept for other sizes are read, not consumed.
    let raster = match Arc::try_unwrap(raster) {
        Ok(owned) => owned.resize(&plan)?,
        Err(shared) if plan.is_identity((shared.width, shared.height)) => (*shared).clone(),
        Err(shared) => shared.resized(&plan)?,
    };
    PIPELINE_SECONDS
        .with_label_values(&["resize"])
        .observe(t.elapsed().as_secs_f64());
    budget.check()?;
    // An AVIF converted for a client without AVIF or WebP keeps its alpha as PNG.
    let (out, shared) = match (input, out) {
        (Input::Avif, Output::Jpeg) if req.format == Output::Match => (
            if raster.channels == 4 {
                Output::Png
            } else {
                Output::Jpeg
            },
            false,
        ),
        _ => (out, true),
    };
    let t = Instant::now();
    let rendered = Rendered {
        shared,
        ..encode::still(&raster, out, s, &budget)?
    };
    PIPELINE_SECONDS
        .with_label_values(&["encode"])
        .observe(t.elapsed().as_secs_f64());
    Ok(rendered)
}
