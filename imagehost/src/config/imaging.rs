//! The `/p/` proxy's configuration: fetching (`[proxy]`), the image pipeline (`[pipeline]`), the
//! local hot cache (`[cache]`) and avatar/cover defaults (`[profiles]`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fetch::FetchConfig;
use crate::pipeline::{Caps, Settings};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Largest original fetched, in bytes; the download stops the moment it is crossed.
    pub max_image_size: u64,
    /// Let the proxy fetch from 127.0.0.0/8, ::1 and `localhost`. For local testing only: it
    /// opens the SSRF guard to anything listening on this machine.
    pub allow_loopback: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    pub max_redirects: usize,
    /// Width cap with no width requested (OH `max_image_width`).
    pub max_image_width: u32,
    pub max_image_height: u32,
    /// Clamp for requested sizes (OH `max_custom_image_width`).
    pub max_custom_image_width: u32,
    pub max_custom_image_height: u32,
    /// Make `format=match` negotiate WebP from `Accept` like `format=auto` (with `Vary: Accept`).
    pub match_is_auto: bool,
    /// Under negotiation (`format=auto`), answer AVIF to clients whose `Accept` takes it (else
    /// WebP). On by default: at the perceptual quality of our WebP, libaom's AVIF is about 0.74×
    /// its bytes on photo-like images, for about 10× its encode CPU (a 640 px thumbnail: ~170
    /// ms against ~15); off sends WebP and spares that CPU.
    pub negotiate_avif: bool,
    /// Fixed answers for host names, used instead of DNS (like curl's `--resolve`). The SSRF guard
    /// checks them like any DNS answer.
    pub resolve: BTreeMap<String, Vec<IpAddr>>,
    /// Cold renders (a `/p/` answer in no cache, rendered now) one client may ask for per
    /// `render_interval`, as a burst that refills evenly; past it, 429 with Retry-After. IPv6
    /// clients count by /64. 0 = no limit.
    pub renders_per_client: u32,
    /// The same per source host of the original (0 = no limit: one popular image host can
    /// carry a whole site's images).
    pub renders_per_host: u32,
    #[serde(with = "humantime_serde")]
    pub render_interval: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_image_size: 15_000_000,
            allow_loopback: false,
            connect_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            max_redirects: 5,
            max_image_width: 1280,
            max_image_height: 8000,
            max_custom_image_width: 8000,
            max_custom_image_height: 8000,
            match_is_auto: false,
            negotiate_avif: true,
            renders_per_client: 300,
            renders_per_host: 0,
            render_interval: Duration::from_secs(60),
            resolve: BTreeMap::new(),
        }
    }
}

impl ProxyConfig {
    pub fn fetch(&self) -> FetchConfig {
        FetchConfig {
            allow_loopback: self.allow_loopback,
            max_bytes: self.max_image_size,
            connect_timeout: self.connect_timeout,
            header_timeout: self.header_timeout,
            read_timeout: self.read_timeout,
            max_redirects: self.max_redirects,
            resolve: self.resolve.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Image jobs running at once; 0 = one per core.
    pub workers: usize,
    /// Jobs allowed to wait for a worker; past that, 503 with Retry-After.
    pub queue: usize,
    /// Wall-clock budget of one job, checked between stages and frames.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Largest width or height accepted, read from the header before decoding.
    pub max_dimension: u32,
    pub max_pixels: u64,
    /// Animated GIFs past these render their first frame only.
    pub max_frames: u32,
    pub max_animation_pixels: u64,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
    /// libwebp effort, 0–4 (5 and 6 cost seconds on large images with alpha).
    pub webp_method: u8,
    /// AVIF quality (1–100) and libavif's speed for libaom (6–10, 10 fastest); outputs over 1 MP
    /// are encoded at 10, over 2 MP sent as WebP.
    pub avif_quality: u8,
    pub avif_speed: u8,
    /// Thumbnails of baseline and progressive JPEGs decoded straight to 1/2–1/8 by imagehost's
    /// own decoder (reads only the coefficients and scans they need); false: libjpeg-turbo for
    /// every JPEG.
    pub shrink_decoder: bool,
    /// Output pixels per source pixel, per side, at most: cover mode enlarges (OH does, to the
    /// 8000 clamp), but a 1×1 image asked at 8000 px becomes 8×8, not 64 MP.
    pub max_upscale: f64,
    /// Largest output in pixels (each side is also held to `max_dimension`): a larger ask gets
    /// the largest output within it, with the same crop and aspect. Checked before decoding.
    pub max_output_pixels: u64,
    /// Animated outputs past this many frames × output pixels render their first frame only.
    pub max_animation_output_pixels: u64,
    /// Bytes the image jobs running at once may hold, by estimates made from the headers before
    /// decoding; jobs wait for room (or get a fast 503 when the queue is full), and a job whose
    /// estimate alone is larger is refused (400 invalid_image).
    pub memory_budget: u64,
    /// Bytes of originals held in memory at once: bodies being fetched, originals read from the
    /// fileservers, and inputs waiting for a worker. A load that finds no room within
    /// `input_wait` is answered 503 with Retry-After. At least `proxy.max_image_size`.
    pub input_budget: u64,
    #[serde(with = "humantime_serde")]
    pub input_wait: Duration,
    /// Bytes of decoded originals kept so that the next sizes of the same image resize from
    /// them instead of decoding it again (JPEG, WebP and AVIF stills; least recently used out
    /// first; a raster over a quarter of this is not kept). 0 keeps none.
    pub kept_pixels_bytes: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let s = Settings::default();
        Self {
            workers: 0,
            queue: 64,
            job_timeout: s.budget,
            max_dimension: s.max_dimension,
            max_pixels: s.max_pixels,
            max_frames: s.max_frames,
            max_animation_pixels: s.max_animation_pixels,
            jpeg_quality: s.jpeg_quality,
            webp_quality: s.webp_quality,
            webp_method: s.webp_method,
            avif_quality: s.avif_quality,
            avif_speed: s.avif_speed,
            shrink_decoder: s.shrink_decoder,
            max_upscale: s.max_upscale,
            max_output_pixels: s.max_output_pixels,
            max_animation_output_pixels: s.max_animation_output_pixels,
            memory_budget: s.memory_budget,
            input_budget: 256 << 20,
            input_wait: Duration::from_secs(5),
            kept_pixels_bytes: 64 << 20,
        }
    }
}

/// The local hot cache of originals and variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Directory for cached files; unset disables the hot cache.
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            dir: Some(PathBuf::from("./data/hotcache")),
            max_bytes: 1 << 30,
        }
    }
}

/// Avatar and cover redirects (§4, D12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesConfig {
    pub default_avatar: String,
    pub default_cover: String,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            default_avatar: "https://images.hive.blog/DQmb2HNSGKN3pakguJ4ChCRjgkVuDN9WniFRPmrxoJ4sjR4".into(),
            default_cover: "https://images.ecency.com/DQmdA9wjRyGmDwrTza59yLSjCWMEc9sFD5sC4ZU5kL9UMqo/cover_fallback_day.png"
                .into(),
        }
    }
}

impl PipelineConfig {
    pub fn settings(&self, proxy: &ProxyConfig) -> Settings {
        Settings {
            caps: Caps {
                default_width: proxy.max_image_width,
                default_height: proxy.max_image_height,
                custom_width: proxy.max_custom_image_width,
                custom_height: proxy.max_custom_image_height,
            },
            max_dimension: self.max_dimension,
            max_pixels: self.max_pixels,
            max_frames: self.max_frames,
            max_animation_pixels: self.max_animation_pixels,
            budget: self.job_timeout,
            jpeg_quality: self.jpeg_quality,
            webp_quality: self.webp_quality,
            webp_method: self.webp_method,
            avif_quality: self.avif_quality,
            avif_speed: self.avif_speed,
            shrink_decoder: self.shrink_decoder,
            max_upscale: self.max_upscale,
            max_output_pixels: self.max_output_pixels,
            max_animation_output_pixels: self.max_animation_output_pixels,
            memory_budget: self.memory_budget,
            ..Settings::default()
        }
    }
}

/// Rules serde cannot express for these sections.
pub fn validate(proxy: &ProxyConfig, pipeline: &PipelineConfig, cache: &CacheConfig) -> Result<(), String> {
    if proxy.max_image_size == 0 {
        return Err("proxy.max_image_size must be more than 0".into());
    }
    if proxy.render_interval.is_zero() {
        return Err("proxy.render_interval must be more than 0".into());
    }
    if proxy.max_redirects > 20 {
        return Err("proxy.max_redirects must be at most 20".into());
    }
    for (k, v) in [
        ("proxy.max_image_width", proxy.max_image_width),
        ("proxy.max_image_height", proxy.max_image_height),
        ("proxy.max_custom_image_width", proxy.max_custom_image_width),
        ("proxy.max_custom_image_height", proxy.max_custom_image_height),
    ] {
        if v == 0 || v > pipeline.max_dimension {
            return Err(format!(
                "{k} must be between 1 and pipeline.max_dimension ({})",
                pipeline.max_dimension
            ));
        }
    }
    if !(1..=100).contains(&pipeline.jpeg_quality) || !(1..=100).contains(&pipeline.webp_quality) {
        return Err("pipeline.jpeg_quality and pipeline.webp_quality must be between 1 and 100".into());
    }
    if !(1..=100).contains(&pipeline.avif_quality) || !(6..=10).contains(&pipeline.avif_speed) {
        return Err(
            "pipeline.avif_quality must be 1–100 and pipeline.avif_speed 6–10 (slower speeds take seconds)"
                .into(),
        );
    }
    if pipeline.webp_method > 4 {
        return Err("pipeline.webp_method must be 0–4 (5 and 6 take seconds per image)".into());
    }
    if pipeline.max_frames == 0 || pipeline.max_pixels == 0 || pipeline.job_timeout.is_zero() {
        return Err("pipeline.max_frames, max_pixels and job_timeout must be more than 0".into());
    }
    if !(pipeline.max_upscale >= 1.0 && pipeline.max_upscale <= 64.0) {
        return Err("pipeline.max_upscale must be between 1 (never enlarge) and 64".into());
    }
    if pipeline.max_output_pixels == 0 || pipeline.max_animation_output_pixels == 0 {
        return Err("pipeline.max_output_pixels and max_animation_output_pixels must be more than 0".into());
    }
    if pipeline.input_budget < proxy.max_image_size {
        return Err(format!(
            "pipeline.input_budget ({}) must be at least proxy.max_image_size ({}): the largest original must fit",
            pipeline.input_budget, proxy.max_image_size
        ));
    }
    if pipeline.memory_budget < 16 << 20 {
        return Err("pipeline.memory_budget must be at least 16 MiB (a 1280 px render needs several)".into());
    }
    if cache.dir.is_some() && cache.max_bytes < 1 << 20 {
        return Err("cache.max_bytes must be at least 1 MiB (or unset cache.dir)".into());
    }
    Ok(())
}
