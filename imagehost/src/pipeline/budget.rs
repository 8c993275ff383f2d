//! A job's memory, estimated before anything is decoded (pure): what the decoder holds (its
//! buffers at the scale it will decode to, libjpeg-turbo's whole-image coefficients for
//! progressive files, dav1d's planes), the copies the pipeline makes (orientation, resize
//! passes), the output and its encoder, and the input bytes themselves. The CPU pool admits jobs
//! by this figure, so concurrent large jobs wait instead of adding up; a job whose figure alone
//! is over the pool's whole budget is refused.

use super::geometry::{box_factor, dct_denominator, Plan};
use super::probe::{Kind, Probe};

/// Bytes per output pixel for the resized raster, its encoder and the encoded bytes (libwebp's
/// YUVA picture and analysis buffers are the largest of the three encoders).
const OUTPUT_BYTES_PER_PIXEL: u64 = 12;
/// Fixed cost of any job: decoder and encoder state, tables, small buffers.
const OVERHEAD: u64 = 1 << 20;

/// The estimate for decoding `p` and rendering `plan` from it. `oriented`: the decoded pixels
/// are rotated or flipped (a copy); `margin` is the shrink-on-load margin.
pub fn job_bytes(p: &Probe, plan: &Plan, oriented: bool, margin: f64, input_len: u64) -> u64 {
    let (w, h) = (p.width as u64, p.height as u64);
    // The pixels the decoder hands over (at the scale it decodes to) and what it holds besides.
    let (decoded_w, decoded_h, channels, held) = match &p.kind {
        Kind::Jpeg {
            coefficients,
            channels,
        } => {
            let d = dct_denominator(plan, margin) as u64;
            // CMYK is converted to RGB: both buffers live at once.
            let extra = if *channels == 4 { 3 } else { 0 };
            (
                w.div_ceil(d),
                h.div_ceil(d),
                *channels as u64 + extra,
                *coefficients,
            )
        }
        Kind::Png { interlaced: false } => {
            let k = box_factor(plan, margin) as u64;
            // Two rows of up to 8 bytes a pixel (16-bit RGBA) while streaming, plus the row sums.
            (w.div_ceil(k), h.div_ceil(k), 4, w * 8 * 2 + w * 4 * 4)
        }
        // Interlaced files are decoded whole (8 bits a sample after stripping 16-bit ones).
        Kind::Png { interlaced: true } => (w, h, 4, 0),
        // The canvas, the frame being decoded and a saved canvas for "restore to previous".
        Kind::Gif => (w, h, 4, w * h * 8),
        Kind::Webp => (w, h, 4, w * h * 4),
        Kind::Avif { planes } => (w, h, 4, *planes),
    };
    let decoded = decoded_w * decoded_h * channels;
    let copies = if oriented { decoded } else { 0 };
    let out = plan.width as u64 * plan.height as u64;
    // The resampler's intermediate pass: output width by decoded height.
    let pass = plan.width as u64 * decoded_h * 4;
    input_len + held + decoded + copies + pass + out * OUTPUT_BYTES_PER_PIXEL + OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::geometry::Mode;
    use crate::pipeline::geometry::{plan, Caps};

    fn est(kind: Kind, src: (u32, u32), width: Option<u64>) -> u64 {
        let p = Probe {
            width: src.0,
            height: src.1,
            kind,
        };
        let pl = plan(src, (width, None), Mode::Cover, &Caps::default());
        job_bytes(&p, &pl, false, 1.5, 0)
    }

    const MB: u64 = 1 << 20;

    #[test]
    fn estimates_table() {
        let baseline = Kind::Jpeg {
            coefficients: 0,
            channels: 3,
        };
        // A 4000×3000 photo to 640 px decodes at 1/4: about 5 MB in all.
        let e = est(baseline.clone(), (4000, 3000), Some(640));
        assert!((3 * MB..12 * MB).contains(&e), "{e}");
        // The same photo progressive 4:4:4 keeps 72 MB of coefficients whatever the scale.
        let progressive = Kind::Jpeg {
            coefficients: 4000 * 3000 * 6,
            channels: 3,
        };
        assert!(est(progressive, (4000, 3000), Some(640)) > 72_000_000);
        // A 7000² PNG streamed to 640 px: a few MB, not the 392 MB of a whole 16-bit decode.
        let e = est(Kind::Png { interlaced: false }, (7000, 7000), Some(640));
        assert!(e < 16 * MB, "{e}");
        let e = est(Kind::Png { interlaced: true }, (7000, 7000), Some(640));
        assert!(e > 190 * MB, "{e}");
        // A 5000² GIF holds three canvases.
        let e = est(Kind::Gif, (5000, 5000), Some(640));
        assert!(e > 300 * MB, "{e}");
        // Outputs count: a 64 px source asked at 512 px is small, but not free.
        let e = est(Kind::Webp, (64, 64), Some(512));
        assert!(e > 512 * 512 * OUTPUT_BYTES_PER_PIXEL && e < 8 * MB, "{e}");
    }
}
