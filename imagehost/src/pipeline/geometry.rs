//! Resize geometry (§1.4 step 12, D10), pure: from the source size and the request to the source
//! crop and the output size, as sharp computes them for OH. Cover fills and centre-crops and may
//! enlarge up to the clamp; fit fits inside and never enlarges; with no size, the default width
//! cap (1280) applies. Then [`bound`]: enlargement is capped at a factor, and the output at the
//! pixel and side limits, shrinking the output (same crop, same aspect) rather than allocating it.

/// How the output fills the requested box: cover crops to fill it, fit fits inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Cover,
    Fit,
}

impl Mode {
    /// The name in variant keys and OH's `mode=` parameter.
    pub fn key_name(self) -> &'static str {
        match self {
            Mode::Cover => "Cover",
            Mode::Fit => "Fit",
        }
    }
}

/// OH's `proxy_store` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub default_width: u32,
    pub default_height: u32,
    pub custom_width: u32,
    pub custom_height: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            default_width: 1280,
            default_height: 8000,
            custom_width: 8000,
            custom_height: 8000,
        }
    }
}

/// Which part of the source to take and what size to scale it to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Source rectangle: left, top, width, height (fractional, as the resampler takes it).
    pub crop: (f64, f64, f64, f64),
    pub width: u32,
    pub height: u32,
}

impl Plan {
    /// True when the output is the source, untouched in size.
    pub fn is_identity(&self, src: (u32, u32)) -> bool {
        (self.width, self.height) == src && self.crop == (0.0, 0.0, src.0 as f64, src.1 as f64)
    }
}

pub fn plan(src: (u32, u32), req: (Option<u64>, Option<u64>), mode: Mode, caps: &Caps) -> Plan {
    let (sw, sh) = (src.0.max(1), src.1.max(1));
    let clamp = |req: Option<u64>, custom: u32, default: u32, s: u32| match req {
        Some(r) => Some(r.min(custom as u64) as u32),
        None if s > default => Some(default),
        None => None,
    };
    let w = clamp(req.0, caps.custom_width, caps.default_width, sw);
    let h = clamp(req.1, caps.custom_height, caps.default_height, sh);
    let full = (0.0, 0.0, sw as f64, sh as f64);
    match mode {
        Mode::Cover => match (w, h) {
            (None, None) => Plan {
                crop: full,
                width: sw,
                height: sh,
            },
            (Some(w), None) => Plan {
                crop: full,
                width: w,
                height: scaled(sh, w, sw),
            },
            (None, Some(h)) => Plan {
                crop: full,
                width: scaled(sw, h, sh),
                height: h,
            },
            (Some(w), Some(h)) => {
                // Scale so both sides cover the box, then take the centre.
                let scale = (w as f64 / sw as f64).max(h as f64 / sh as f64);
                let (cw, ch) = (
                    (w as f64 / scale).min(sw as f64),
                    (h as f64 / scale).min(sh as f64),
                );
                Plan {
                    crop: ((sw as f64 - cw) / 2.0, (sh as f64 - ch) / 2.0, cw, ch),
                    width: w,
                    height: h,
                }
            }
        },
        Mode::Fit => {
            let (bw, bh) = (w.unwrap_or(caps.default_width), h.unwrap_or(caps.default_height));
            let scale = (bw as f64 / sw as f64).min(bh as f64 / sh as f64).min(1.0);
            Plan {
                crop: full,
                width: ((sw as f64 * scale).round() as u32).max(1),
                height: ((sh as f64 * scale).round() as u32).max(1),
            }
        }
    }
}

/// What an output may be: its own limits, separate from what inputs may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputLimits {
    /// Output pixels per source pixel, per side (a 64 px avatar may become 512 px at 8).
    pub max_upscale: f64,
    pub max_dimension: u32,
    pub max_pixels: u64,
}

/// The plan with its output shrunk (keeping the crop and the aspect) until it enlarges the crop
/// by at most `max_upscale` and fits `max_dimension` and `max_pixels`. Never grows a plan.
pub fn bound(plan: Plan, limits: &OutputLimits) -> Plan {
    let (w, h) = (plan.width as f64, plan.height as f64);
    let (cw, ch) = (plan.crop.2.max(1e-9), plan.crop.3.max(1e-9));
    let mut k: f64 = 1.0;
    // Enlargement: the larger of the two per-side scales (cover scales both alike).
    let scale = (w / cw).max(h / ch);
    if scale > limits.max_upscale {
        k = k.min(limits.max_upscale / scale);
    }
    let side = limits.max_dimension as f64;
    k = k.min(side / w).min(side / h);
    let pixels = w * h;
    if pixels > limits.max_pixels as f64 {
        k = k.min((limits.max_pixels as f64 / pixels).sqrt());
    }
    if k >= 1.0 {
        return plan;
    }
    // Rounded down (so never past a limit), with a hair of slack for k·side landing on an integer.
    let shrink = |v: f64| (((v * k) + 1e-6).floor() as u32).clamp(1, limits.max_dimension.max(1));
    Plan {
        width: shrink(w),
        height: shrink(h),
        ..plan
    }
}

/// `other * target / side`, rounded, at least 1.
fn scaled(other: u32, target: u32, side: u32) -> u32 {
    ((other as f64 * target as f64 / side as f64).round() as u32).max(1)
}

/// The JPEG DCT scaling denominator (1, 2, 4 or 8) for a plan: the largest that still leaves at
/// least `margin`× for the final filter in both directions (libvips' shrink-on-load rule).
pub fn dct_denominator(plan: &Plan, margin: f64) -> u32 {
    let fx = plan.crop.2 / plan.width as f64;
    let fy = plan.crop.3 / plan.height as f64;
    let shrink = fx.min(fy);
    [8u32, 4, 2]
        .into_iter()
        .find(|d| shrink / *d as f64 >= margin)
        .unwrap_or(1)
}

/// The integer box factor a streamed decode (PNG) may shrink by while reading rows, leaving at
/// least `margin`× for the final filter in both directions (1: read at full size).
pub fn box_factor(plan: &Plan, margin: f64) -> u32 {
    let fx = plan.crop.2 / plan.width as f64;
    let fy = plan.crop.3 / plan.height as f64;
    ((fx.min(fy) / margin).floor() as u32).clamp(1, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oh_measurements_table() {
        // §1.4's measured outputs for a 1600×1000 JPEG, plus the cap rules.
        let caps = Caps::default();
        let src = (1600, 1000);
        type Case = ((Option<u64>, Option<u64>), Mode, (u32, u32));
        let cases: Vec<Case> = vec![
            ((None, None), Mode::Cover, (1280, 800)),
            ((Some(300), None), Mode::Cover, (300, 188)),
            ((None, Some(100)), Mode::Fit, (160, 100)),
            ((Some(100), Some(100)), Mode::Cover, (100, 100)),
            ((Some(2000), None), Mode::Fit, (1600, 1000)),
            ((Some(50), None), Mode::Cover, (50, 31)),
            ((Some(9000), None), Mode::Cover, (8000, 5000)),
            ((None, None), Mode::Fit, (1280, 800)),
        ];
        for (req, mode, out) in cases {
            let p = plan(src, req, mode, &caps);
            assert_eq!((p.width, p.height), out, "{req:?} {mode:?}");
        }
        // Small sources keep their size with no request.
        let p = plan((800, 600), (None, None), Mode::Cover, &caps);
        assert!(p.is_identity((800, 600)));
        // Both caps: cover crops to 1280×8000.
        let p = plan((2000, 20000), (None, None), Mode::Cover, &caps);
        assert_eq!((p.width, p.height), (1280, 8000));
        assert!((p.crop.3 - 12500.0).abs() < 1e-6 && (p.crop.1 - 3750.0).abs() < 1e-6);
        // Cover with both sides centre-crops the long side.
        let p = plan((1600, 1000), (Some(100), Some(100)), Mode::Cover, &caps);
        assert_eq!(p.crop, (300.0, 0.0, 1000.0, 1000.0));
    }

    #[test]
    fn bound_table() {
        let caps = Caps::default();
        let limits = OutputLimits {
            max_upscale: 8.0,
            max_dimension: 16_384,
            max_pixels: 16_777_216,
        };
        type Case = ((u32, u32), (Option<u64>, Option<u64>), Mode, (u32, u32));
        let cases: &[Case] = &[
            // Ordinary thumbnails and OH's own enlargements within the factor: unchanged.
            ((1600, 1000), (Some(300), None), Mode::Cover, (300, 188)),
            ((64, 64), (Some(512), Some(512)), Mode::Cover, (512, 512)),
            ((1600, 1000), (Some(9000), None), Mode::Cover, (5181, 3238)),
            // The crash: a 1280×1 strip at height 8000 would be 10,240,000×8000.
            ((1280, 1), (None, Some(8000)), Mode::Cover, (10_240, 8)),
            ((1, 8000), (Some(8000), None), Mode::Cover, (2, 16_384)),
            ((1, 8000), (Some(300), None), Mode::Cover, (2, 16_384)),
            ((1, 1), (Some(8000), None), Mode::Cover, (8, 8)),
            ((1, 1), (Some(8000), Some(8000)), Mode::Cover, (8, 8)),
            // Fit never enlarges; a huge source is only bounded by the caps.
            ((20_000, 20), (None, None), Mode::Fit, (1280, 1)),
        ];
        for (src, req, mode, want) in cases {
            let p = bound(plan(*src, *req, *mode, &caps), &limits);
            assert_eq!((p.width, p.height), *want, "{src:?} {req:?} {mode:?}");
            assert!(p.width <= 16_384 && p.height <= 16_384);
            assert!(p.width as u64 * p.height as u64 <= 16_777_216);
        }
        // The crop never changes, so the picture is the same, only smaller.
        let p = plan((1600, 1000), (Some(100), Some(100)), Mode::Cover, &caps);
        assert_eq!(bound(p, &limits), p);
    }

    #[test]
    fn box_factor_table() {
        let caps = Caps::default();
        let cases = [
            ((7000, 7000), Some(640), 7),
            ((7000, 7000), Some(100), 46),
            ((1200, 800), Some(640), 1),
            ((100_000, 100), Some(10), 64),
            ((300, 300), Some(600), 1),
        ];
        for (src, w, k) in cases {
            let p = plan(src, (w, None), Mode::Cover, &caps);
            assert_eq!(box_factor(&p, 1.5), k, "{src:?} → {w:?}");
        }
    }

    #[test]
    fn dct_scaling_table() {
        let caps = Caps::default();
        let cases = [
            ((4000, 3000), Some(640), 2),
            ((4000, 3000), Some(200), 8),
            ((4000, 3000), Some(400), 4),
            ((1200, 800), Some(640), 1),
            ((4000, 3000), Some(3000), 1),
        ];
        for (src, w, d) in cases {
            let p = plan(src, (w, None), Mode::Cover, &caps);
            assert_eq!(dct_denominator(&p, 2.0), d, "{src:?} → {w:?}");
        }
    }
}
