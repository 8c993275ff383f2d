//! The shrink decoder (`pipeline::shrink`) against libjpeg-turbo, on JPEGs made here by
//! libjpeg-turbo itself and by `cjpeg` (restart markers): for every sampling layout, odd size,
//! quality, Huffman table and scale, ours has libjpeg-turbo's output size and stays within a
//! level and a half of libjpeg-turbo's own scaled decode in its distance from the full-size
//! image box-averaged; files it does not take are left to libjpeg-turbo; truncated and mutated
//! files never panic.

use std::process::Command;

use image::RgbImage;
use imagehost::pipeline::raster::Raster;
use imagehost::pipeline::shrink;
use rand::{Rng, SeedableRng};
use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

/// Pixels a damaged header may claim before the decoder refuses it.
pub const LIMIT: u64 = 4_000_000;

/// A test card: gradients, low-frequency waves and hard-edged shapes. No noise: a box average
/// keeps half of a noise's amplitude where a low-pass removes it, so with noise the distance to
/// the box average would measure the filter rather than the decode.
pub fn card(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let wave = ((fx * 9.0).sin() * (fy * 7.0).cos() * 40.0) as i32;
        let square = if (x / 23 + y / 17) % 4 == 0 { 70 } else { 0 };
        let c = |base: f32, k: i32| (base as i32 + wave * k / 2 + square).clamp(0, 255) as u8;
        image::Rgb([c(fx * 200.0, 2), c(fy * 180.0 + 30.0, 1), c(120.0, -1)])
    })
}

pub fn turbo_encode(img: &RgbImage, subsamp: Subsamp, quality: i32, optimize: bool) -> Vec<u8> {
    turbo_compress(img, subsamp, quality, optimize, false)
}

/// libjpeg-turbo's encoder with every setting the tests vary; `progressive` takes its default
/// scan script.
pub fn turbo_compress(
    img: &RgbImage,
    subsamp: Subsamp,
    quality: i32,
    optimize: bool,
    progressive: bool,
) -> Vec<u8> {
    let mut c = Compressor::new().expect("compressor");
    c.set_subsamp(subsamp).expect("subsamp");
    c.set_quality(quality).expect("quality");
    c.set_optimize(optimize).expect("optimize");
    c.set_progressive(progressive).expect("progressive");
    let (w, h) = img.dimensions();
    let image = Image {
        pixels: img.as_raw().as_slice(),
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: PixelFormat::RGB,
    };
    c.compress_to_vec(image).expect("compress")
}

/// `cjpeg` (libjpeg-turbo-progs) with `args`, from a PPM of `img`.
pub fn cjpeg(img: &RgbImage, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let ppm = dir.path().join("in.ppm");
    let mut data = format!("P6\n{} {}\n255\n", img.width(), img.height()).into_bytes();
    data.extend_from_slice(img.as_raw());
    std::fs::write(&ppm, data).expect("ppm");
    let out = Command::new("cjpeg")
        .args(args)
        .arg(&ppm)
        .output()
        .expect("cjpeg (apt-get install libjpeg-turbo-progs)");
    assert!(out.status.success(), "cjpeg {args:?}");
    out.stdout
}

/// libjpeg-turbo's decode at 1/`denom`, as RGB or grey.
pub fn turbo_decode(data: &[u8], denom: usize, grey: bool) -> Raster {
    let mut d = Decompressor::new().expect("decompressor");
    let header = d.read_header(data).expect("header");
    let factor = ScalingFactor::new(1, denom);
    d.set_scaling_factor(factor).expect("scale");
    let scaled = header.scaled(factor);
    let format = if grey { PixelFormat::GRAY } else { PixelFormat::RGB };
    let pitch = scaled.width * format.size();
    let mut pixels = vec![0u8; pitch * scaled.height];
    let image = Image {
        pixels: pixels.as_mut_slice(),
        width: scaled.width,
        pitch,
        height: scaled.height,
        format,
    };
    d.decompress(data, image).expect("decompress");
    Raster {
        width: scaled.width as u32,
        height: scaled.height as u32,
        channels: format.size() as u8,
        data: pixels,
    }
}

/// The full-size decode, each `denom`×`denom` cell averaged (edge cells over what they hold).
pub fn truth(data: &[u8], denom: u32, grey: bool) -> Raster {
    let full = turbo_decode(data, 1, grey);
    let (w, h, c) = (full.width, full.height, full.channels as u32);
    let (sw, sh) = (w.div_ceil(denom), h.div_ceil(denom));
    let mut out = Vec::with_capacity((sw * sh * c) as usize);
    for sy in 0..sh {
        for sx in 0..sw {
            for ch in 0..c {
                let (mut sum, mut n) = (0u32, 0u32);
                for y in sy * denom..((sy + 1) * denom).min(h) {
                    for x in sx * denom..((sx + 1) * denom).min(w) {
                        sum += full.data[((y * w + x) * c + ch) as usize] as u32;
                        n += 1;
                    }
                }
                out.push(((sum + n / 2) / n) as u8);
            }
        }
    }
    Raster {
        width: sw,
        height: sh,
        channels: c as u8,
        data: out,
    }
}

pub fn mean_abs(a: &Raster, b: &Raster) -> f64 {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels));
    let sum: u64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    sum as f64 / a.data.len() as f64
}

/// Makes a baseline JPEG of an image.
pub type Make = Box<dyn Fn(&RgbImage) -> Vec<u8>>;

/// Every sampling layout, quality and table the shrink decoder is checked on, made by
/// libjpeg-turbo and `cjpeg` (restart markers): (name, grey, maker).
pub fn layouts() -> Vec<(&'static str, bool, Make)> {
    vec![
        (
            "4:2:0 q90",
            false,
            Box::new(|i| turbo_encode(i, Subsamp::Sub2x2, 90, false)),
        ),
        (
            "4:2:0 q50 optimised",
            false,
            Box::new(|i| turbo_encode(i, Subsamp::Sub2x2, 50, true)),
        ),
        (
            "4:4:4 q95",
            false,
            Box::new(|i| turbo_encode(i, Subsamp::None, 95, false)),
        ),
        (
            "4:2:2 q80",
            false,
            Box::new(|i| turbo_encode(i, Subsamp::Sub2x1, 80, true)),
        ),
        (
            "4:4:0 q85",
            false,
            Box::new(|i| turbo_encode(i, Subsamp::Sub1x2, 85, false)),
        ),
        (
            "grey q90",
            true,
            Box::new(|i| turbo_encode(i, Subsamp::Gray, 90, false)),
        ),
        (
            "4:2:0, a restart every MCU row",
            false,
            Box::new(|i| cjpeg(i, &["-restart", "1"])),
        ),
        (
            "4:2:0, a restart every 3 MCUs",
            false,
            Box::new(|i| cjpeg(i, &["-restart", "3B"])),
        ),
        (
            "grey, a restart every 2 blocks",
            true,
            Box::new(|i| cjpeg(i, &["-grayscale", "-restart", "2B"])),
        ),
        (
            "1x2 luma sampling",
            false,
            Box::new(|i| cjpeg(i, &["-sample", "1x2,1x1,1x1", "-quality", "92"])),
        ),
    ]
}

#[test]
fn shrunk_decodes_match_libjpeg_turbo_for_every_layout() {
    let sizes = [(333, 251), (64, 48), (17, 9), (1, 1), (250, 7)];
    let layouts = layouts();
    let (mut checked, mut worst, mut sums) = (0, f64::MIN, (0.0, 0.0));
    for &(w, h) in &sizes {
        let img = card(w, h);
        for (what, grey, make) in &layouts {
            let file = make(&img);
            for denom in [2u32, 4, 8] {
                let case = format!("{what}, {w}×{h}, 1/{denom}");
                let ours = shrink::decode(&file, denom, LIMIT).unwrap_or_else(|| panic!("{case}: not taken"));
                let theirs = turbo_decode(&file, denom as usize, *grey);
                assert_eq!(
                    (ours.width, ours.height, ours.channels),
                    (theirs.width, theirs.height, theirs.channels),
                    "{case}: size"
                );
                // libjpeg-turbo's reduced inverse DCTs are exact box averages; ours keeps only
                // the low frequencies (no aliasing from the rest), about a level and a half
                // from the box average on this card.
                let want = truth(&file, denom, *grey);
                let (e_ours, e_theirs) = (mean_abs(&ours, &want), mean_abs(&theirs, &want));
                assert!(
                    e_ours <= e_theirs + 1.0,
                    "{case}: {e_ours:.2} levels from the box average, libjpeg-turbo {e_theirs:.2}"
                );
                worst = worst.max(e_ours - e_theirs);
                sums = (sums.0 + e_ours, sums.1 + e_theirs);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, sizes.len() * layouts.len() * 3);
    eprintln!(
        "{checked} decodes: mean distance to the box average {:.2} levels (libjpeg-turbo {:.2}), worst excess {worst:.2}",
        sums.0 / checked as f64,
        sums.1 / checked as f64
    );
}

#[test]
fn files_the_shrink_decoder_leaves_to_libjpeg_turbo() {
    let img = card(96, 64);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("arithmetic", cjpeg(&img, &["-arithmetic"])),
        ("4:1:1", cjpeg(&img, &["-sample", "4x1,1x1,1x1"])),
        ("RGB", cjpeg(&img, &["-rgb"])),
        ("not a JPEG", b"GIF89a".to_vec()),
    ];
    for (what, file) in cases {
        assert!(
            shrink::decode(&file, 4, LIMIT).is_none(),
            "{what}: should go to libjpeg-turbo"
        );
    }
    // Scales it has no use for.
    let plain = turbo_encode(&img, Subsamp::Sub2x2, 90, false);
    for denom in [1, 3, 16] {
        assert!(shrink::decode(&plain, denom, LIMIT).is_none(), "1/{denom}");
    }
}

#[test]
fn damaged_files_go_to_libjpeg_turbo_and_mutated_ones_never_panic() {
    let img = card(200, 150);
    let seeds = [
        turbo_encode(&img, Subsamp::Sub2x2, 90, true),
        cjpeg(&img, &["-restart", "2B"]),
        turbo_encode(&img, Subsamp::Gray, 75, false),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5348_524b);
    let mut taken = 0;
    for seed in &seeds {
        // Cut anywhere before its last bytes (the EOI marker, and the last code's padding).
        for cut in (0..seed.len() - 4).step_by(seed.len() / 40) {
            assert!(shrink::decode(&seed[..cut], 4, LIMIT).is_none(), "cut at {cut}");
        }
        assert!(
            shrink::decode(&seed[..seed.len() - 2], 4, LIMIT).is_some(),
            "EOI missing only"
        );
        for i in 0..super::mutated::per_seed() + 100 {
            let mut v = seed.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..v.len());
                v[at] = if i % 3 == 0 { 0xff } else { rng.random() };
            }
            if let Some(r) = shrink::decode(&v, [2, 4, 8][i % 3], LIMIT) {
                assert_eq!(r.data.len(), (r.width * r.height * r.channels as u32) as usize);
                taken += 1;
            }
        }
    }
    assert!(
        taken > 0,
        "a changed coefficient still decodes, as in libjpeg-turbo"
    );
    eprintln!("{taken} mutated files decoded by the shrink decoder, the rest left to libjpeg-turbo");
}

#[test]
fn pipeline_shrink_decoder_false_sends_every_jpeg_to_libjpeg_turbo() {
    use imagehost::pipeline::{self, AvifSource, Input, Output, Request, Settings};
    let file = turbo_encode(&card(400, 300), Subsamp::Sub2x2, 90, false);
    let req = Request {
        width: Some(100),
        height: None,
        mode: imagehost::proxy::options::Mode::Fit,
        format: Output::Jpeg,
        avif: AvifSource::AsRequested,
    };
    let count = |d: &str| super::fixture::metric(&format!("imagehost_jpeg_decodes_total{{decoder=\"{d}\"}}"));
    let mut s = Settings::default();
    for (on, shrink, turbo) in [(true, 1.0, 0.0), (false, 1.0, 1.0)] {
        s.shrink_decoder = on;
        let r = pipeline::render(&file, Input::Jpeg, &req, &s).expect("render");
        assert_eq!(super::images::decode(&r.bytes).width, 100);
        assert_eq!(
            (count("shrink"), count("libjpeg-turbo")),
            (shrink, turbo),
            "shrink_decoder = {on}"
        );
    }
}
