//! AVIF output: AV1 by libaom, in an AVIF file by libavif (Debian's system libraries), through
//! the C shim `csrc/avif_encode.c`. One still image: 4:4:4 (4:0:0 for gray), 10 bits a sample,
//! libaom's constant-quality mode with its quantisation matrices, alpha kept, on the calling
//! worker thread alone (the pool's workers are the parallelism).
//!
//! libaom over rav1e by measurement (`bench/src/bin/avif.rs`): at the same perceptual quality
//! (SSIMULACRA2) its files are about a quarter smaller than our WebP's on an image with natural
//! statistics and a sixth on pure noise, where rav1e's were 0.9–1.2× them.

use std::ffi::{c_char, c_int, CStr};

use super::raster::Raster;
use super::PipelineError;

/// Kept in step with `hive_avif_options` in the shim.
#[repr(C)]
struct Options {
    cq_level: c_int,
    speed: c_int,
    gray: c_int,
    qm: c_int,
}

extern "C" {
    fn hive_avif_encode(
        pixels: *const u8,
        width: u32,
        height: u32,
        channels: u32,
        options: *const Options,
        out: *mut *mut u8,
        out_len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn hive_avif_free(data: *mut u8, len: usize);
}

/// libaom's constant-quality level (0 best, 63 worst) for a quality of 1–100, as libavif 1.x
/// maps its own `quality`.
pub fn cq_level(quality: u8) -> i32 {
    let q = quality.clamp(1, 100) as i32;
    ((100 - q) * 63 + 50) / 100
}

/// Encodes `r` at `quality` (1–100) and libavif's `speed` (0–10, 10 fastest).
pub fn encode(r: &Raster, quality: u8, speed: u8) -> Result<Vec<u8>, PipelineError> {
    let (w, h, c) = (r.width as usize, r.height as usize, r.channels as usize);
    if w == 0 || h == 0 || r.data.len() != w * h * c || !matches!(c, 1 | 3 | 4) {
        return Err(PipelineError::Encode(format!(
            "avif: a {w}×{h}×{c} raster of {} bytes",
            r.data.len()
        )));
    }
    // The shim takes RGB or RGBA; a gray raster is widened and encoded as 4:0:0.
    let widened;
    let (pixels, channels) = if c == 1 {
        widened = r.data.iter().flat_map(|&v| [v, v, v]).collect::<Vec<u8>>();
        (widened.as_slice(), 3)
    } else {
        (r.data.as_slice(), c as u32)
    };
    let options = Options {
        cq_level: cq_level(quality),
        speed: speed.min(10) as c_int,
        gray: (c == 1) as c_int,
        qm: 1,
    };
    let mut err = [0 as c_char; 256];
    let (mut out, mut len) = (std::ptr::null_mut::<u8>(), 0usize);
    // SAFETY: `pixels` holds `h` rows of `w * channels` bytes (checked above) and outlives the
    // call; `options`, `out`, `len` and `err` are live locals, `err` with its true length. The
    // shim writes `out`/`len` only on success, and the buffer it hands over is freed once, below,
    // by the allocator that made it.
    #[allow(unsafe_code)]
    let rc = unsafe {
        hive_avif_encode(
            pixels.as_ptr(),
            r.width,
            r.height,
            channels,
            &options,
            &mut out,
            &mut len,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 || out.is_null() {
        // SAFETY: the shim leaves `err` NUL-terminated (snprintf into its full length), and it
        // started zeroed.
        #[allow(unsafe_code)]
        let message = unsafe { CStr::from_ptr(err.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        return Err(PipelineError::Encode(format!("avif: {message}")));
    }
    // SAFETY: on success `out` points at `len` initialised bytes owned by libavif until freed.
    #[allow(unsafe_code)]
    let bytes = unsafe {
        let bytes = std::slice::from_raw_parts(out, len).to_vec();
        hive_avif_free(out, len);
        bytes
    };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_to_cq_level_table() {
        for (quality, cq) in [(100u8, 0), (1, 62), (0, 62), (50, 32), (60, 25), (80, 13)] {
            assert_eq!(cq_level(quality), cq, "quality {quality}");
        }
    }

    /// Gray, RGB and RGBA come back through our own decoder (dav1d) as the same kind of raster,
    /// close to what went in: the colour description (BT.601, full range, sRGB) is read as
    /// written.
    #[test]
    fn every_raster_kind_round_trips_and_a_bad_one_is_an_error() {
        let (w, h) = (64u32, 48u32);
        for channels in [1u8, 3, 4] {
            // Smooth ramps, a different one per channel, so a swapped or mis-scaled channel shows.
            let data = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .flat_map(|(x, y)| (0..channels as u32).map(move |c| (40 + x * 2 + y * c + c * 30) as u8))
                .collect::<Vec<u8>>();
            let r = Raster {
                width: w,
                height: h,
                channels,
                data,
            };
            let bytes = encode(&r, 90, 10).expect("encode");
            assert_eq!(&bytes[4..12], b"ftypavif", "{channels} channels");
            let back =
                super::super::avif::decode(&bytes, &super::super::Settings::default()).expect("decode");
            assert_eq!((back.width, back.height, back.channels), (w, h, channels));
            let error = r
                .data
                .iter()
                .zip(&back.data)
                .map(|(a, b)| a.abs_diff(*b) as u64)
                .sum::<u64>() as f64
                / r.data.len() as f64;
            assert!(error < 2.0, "{channels} channels: mean error {error:.2}");
        }
        let short = Raster {
            width: 10,
            height: 10,
            channels: 3,
            data: vec![0; 299],
        };
        assert!(matches!(encode(&short, 60, 10), Err(PipelineError::Encode(_))));
    }
}
