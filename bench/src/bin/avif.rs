//! AVIF output against the reference encoders and against our own WebP, in the same run.
//!
//! CPU per 640 px AVIF thumbnail of a generated 1200×800 and 4000×3000 q90 JPEG: ours is the whole
//! imagehost pipeline (decode, resize, AV1 encode at the configured quality and speed, one
//! thread) in a child process over `ITERS` thumbnails; `vipsthumbnail … -o %s.avif` (libheif with
//! libaom, its defaults at the same quality) over as many copies; `avifenc -j 1` (libaom at its
//! default speed) encoding the 640 px image alone, so it is not charged for the decode and resize
//! ours pays. CPU = user + system from wait4.
//!
//! Bytes at equal perceptual quality: SSIMULACRA2 of our AVIF against the lossless 640 px
//! thumbnail, then the smallest WebP quality of ours that scores as well, and its bytes.
//!
//!   target/release/avif

use std::process::{Command, Stdio};

use bench::{cpu_of, photo, print_table, Row};
use imagehost::pipeline::{self, AvifSource, Input, Output, Request, Settings};
use imagehost::proxy::options::Mode;

const ITERS: usize = 10;

fn request(format: Output) -> Request {
    Request {
        width: Some(640),
        height: Some(640),
        mode: Mode::Fit,
        format,
        avif: AvifSource::AsRequested,
    }
}

/// Our settings (`AVIF_QUALITY` and `AVIF_SPEED` override the defaults, to tune them), with
/// `quality` for WebP.
fn settings(quality: u8) -> Settings {
    let s = Settings::default();
    let env = |name: &str, default: u8| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Settings {
        avif_quality: env("AVIF_QUALITY", s.avif_quality),
        avif_speed: env("AVIF_SPEED", s.avif_speed),
        webp_quality: quality,
        ..s
    }
}

/// `--tune W H`: for each AVIF quality and speed, the wall time of one thumbnail, its score, and
/// its bytes against our WebP's at the same score.
fn tune(w: u32, h: u32) {
    let data = photo(w, h);
    let reference = pixels(&render(&data, Output::Png, 0));
    for speed in [8u8, 9, 10] {
        for quality in [50u8, 60, 70, 80] {
            std::env::set_var("AVIF_QUALITY", quality.to_string());
            std::env::set_var("AVIF_SPEED", speed.to_string());
            let t = std::time::Instant::now();
            let avif = render(&data, Output::Avif, 0);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let s_avif = score(&reference, &avif);
            let (lo, webp) = webp_scoring(&data, &reference, s_avif);
            println!(
                "speed {speed} q{quality}: {ms:.0} ms, {} B, SSIMULACRA2 {s_avif:.1}; WebP q{lo} {} B: {:.2}x",
                avif.len(),
                webp.len(),
                avif.len() as f64 / webp.len() as f64
            );
        }
    }
}

fn render(data: &[u8], format: Output, quality: u8) -> Vec<u8> {
    pipeline::render(data, Input::Jpeg, &request(format), &settings(quality))
        .expect("render")
        .bytes
}

/// `--ours FILE N`: N AVIF thumbnails of FILE; prints the last one's size.
fn run_ours(file: &str, iters: usize) {
    let data = std::fs::read(file).expect("read");
    let mut size = 0;
    for _ in 0..iters {
        size = render(&data, Output::Avif, 0).len();
    }
    println!("{size}");
}

/// Pixels as SSIMULACRA2 takes them: sRGB, 0…1.
fn srgb(r: &imagehost::pipeline::raster::Raster) -> ssimulacra2::Rgb {
    let c = r.channels as usize;
    let px = r
        .data
        .chunks_exact(c)
        .map(|p| {
            let v = |i: usize| p[i.min(c - 1)] as f32 / 255.0;
            if c < 3 {
                [v(0), v(0), v(0)]
            } else {
                [v(0), v(1), v(2)]
            }
        })
        .collect();
    ssimulacra2::Rgb::new(
        px,
        r.width as usize,
        r.height as usize,
        ssimulacra2::TransferCharacteristic::SRGB,
        ssimulacra2::ColorPrimaries::BT709,
    )
    .expect("rgb")
}

/// Decodes any of our outputs back to pixels.
fn pixels(bytes: &[u8]) -> imagehost::pipeline::raster::Raster {
    if bytes.get(4..12) == Some(b"ftypavif".as_slice()) {
        return pipeline::avif::decode(bytes, &Settings::default()).expect("decode an AVIF");
    }
    let img = image::load_from_memory(bytes).expect("decode").to_rgb8();
    imagehost::pipeline::raster::Raster {
        width: img.width(),
        height: img.height(),
        channels: 3,
        data: img.into_raw(),
    }
}

fn score(reference: &imagehost::pipeline::raster::Raster, bytes: &[u8]) -> f64 {
    ssimulacra2::compute_frame_ssimulacra2(srgb(reference), srgb(&pixels(bytes))).expect("ssimulacra2")
}

/// The smallest WebP quality of ours whose thumbnail scores at least `target`, and that WebP.
fn webp_scoring(data: &[u8], reference: &imagehost::pipeline::raster::Raster, target: f64) -> (u8, Vec<u8>) {
    let (mut lo, mut hi) = (1u8, 100u8);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if score(reference, &render(data, Output::Webp, mid)) >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo, render(data, Output::Webp, lo))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--ours") => return run_ours(&args[2], args[3].parse().expect("iterations")),
        Some("--tune") => return tune(args[2].parse().expect("width"), args[3].parse().expect("height")),
        _ => {}
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Settings::default().avif_quality;
    let mut rows = Vec::new();
    for (w, h) in [(1200u32, 800u32), (4000, 3000)] {
        let src = dir.path().join(format!("src-{w}.jpg"));
        let data = photo(w, h);
        std::fs::write(&src, &data).expect("write");
        // The lossless 640 px thumbnail: the reference for the scores, avifenc's input.
        let png = render(&data, Output::Png, 0);
        let png_path = dir.path().join(format!("t-{w}.png"));
        std::fs::write(&png_path, &png).expect("write");
        let reference = pixels(&png);

        let copies: Vec<String> = (0..ITERS)
            .map(|i| {
                let p = dir.path().join(format!("c{w}-{i}.jpg"));
                std::fs::copy(&src, &p).expect("copy");
                p.display().to_string()
            })
            .collect();
        let (mut ours, mut vips, mut avifenc) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..3 {
            let mut c = Command::new(&args[0]);
            c.args(["--ours", &src.display().to_string(), &ITERS.to_string()]);
            ours = ours.min(cpu_of(c).0 / ITERS as f64);
            let mut v = Command::new("vipsthumbnail");
            v.stderr(Stdio::null())
                .args(["-s", "640", "-o", &format!("%s_t.avif[Q={q}]")])
                .args(&copies);
            vips = vips.min(cpu_of(v).0 / ITERS as f64);
            let mut total = 0.0;
            for i in 0..ITERS {
                let mut a = Command::new("avifenc");
                a.stderr(Stdio::null())
                    .args(["-j", "1"])
                    .arg(&png_path)
                    .arg(dir.path().join(format!("a{w}-{i}.avif")));
                total += cpu_of(a).0;
            }
            avifenc = avifenc.min(total / ITERS as f64);
        }
        let avif = render(&data, Output::Avif, 0);
        let s_avif = score(&reference, &avif);
        let size = |p: std::path::PathBuf| std::fs::read(p).unwrap_or_default();
        let vips_out = size(dir.path().join(format!("c{w}-0_t.avif")));
        let avifenc_out = size(dir.path().join(format!("a{w}-0.avif")));
        let (lo, webp) = webp_scoring(&data, &reference, s_avif);
        let webp80 = render(&data, Output::Webp, 80);
        println!(
            "{w}×{h} → 640 px: ours AVIF q{q} {} B (SSIMULACRA2 {s_avif:.1}); WebP q{lo} {} B ({:.1}); \
             WebP q80 {} B ({:.1}); vips AVIF {} B ({:.1}); avifenc {} B ({:.1})",
            avif.len(),
            webp.len(),
            score(&reference, &webp),
            webp80.len(),
            score(&reference, &webp80),
            vips_out.len(),
            if vips_out.is_empty() {
                0.0
            } else {
                score(&reference, &vips_out)
            },
            avifenc_out.len(),
            if avifenc_out.is_empty() {
                0.0
            } else {
                score(&reference, &avifenc_out)
            },
        );
        rows.push(Row {
            what: format!("CPU per {w}×{h} JPEG → 640 px AVIF, vs vips"),
            ours,
            reference: Some(vips),
            unit: "ms",
            target: "≤ 1×",
        });
        rows.push(Row {
            what: format!("… vs avifenc encoding the 640 px image alone ({w})"),
            ours,
            reference: Some(avifenc),
            unit: "ms",
            target: "≤ 1×",
        });
        rows.push(Row {
            what: format!("AVIF bytes vs our WebP at equal SSIMULACRA2 ({w})"),
            ours: avif.len() as f64 / 1024.0,
            reference: Some(webp.len() as f64 / 1024.0),
            unit: "KiB",
            target: "≤ 0.75×",
        });
    }
    print_table(
        "AVIF output: imagehost (rav1e) vs vipsthumbnail and avifenc (libaom), and vs our WebP",
        "imagehost",
        "reference",
        &rows,
    );
}
