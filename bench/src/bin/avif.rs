//! AVIF output against the reference encoders and against our own WebP, in the same run.
//!
//! Sources: generated 1200×800 and 4000×3000 q90 JPEGs, a `scene` with natural images'
//! statistics (`bench::scene`: most energy at low frequencies, edges, textures, mild grain) and
//! the `noisy` photo of the other benches (per-pixel white noise, the hardest case for every
//! transform codec; printed for reference, not the target).
//!
//! CPU per 640 px AVIF thumbnail of the scene: ours is the whole imagehost pipeline (decode,
//! resize, AV1 encode at the configured quality and speed, one thread) in a child process over
//! `ITERS` thumbnails; `vipsthumbnail … -o %s.avif` (libheif with libaom, its defaults at the
//! same quality) over as many copies; `avifenc -j 1` (libaom at its default speed, 6) encoding the
//! 640 px image alone, so it is not charged for the decode and resize ours pays. CPU = user +
//! system from wait4.
//!
//! Bytes at equal perceptual quality: SSIMULACRA2 of our AVIF against the lossless 640 px
//! thumbnail, then the bytes our WebP takes to score as well: interpolated between the two
//! WebP qualities whose scores bracket it (the smallest quality that scores as well would
//! favour AVIF by up to a quality step).
//!
//!   target/release/avif                  the table
//!   target/release/avif --tune W H [noisy]   AVIF quality × speed grid on one source

use std::process::{Command, Stdio};

use bench::{cpu_of, photo, print_table, Row};
use imagehost::pipeline::raster::Raster;
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
fn tune(w: u32, h: u32, source: &str) {
    let data = generate(source, w, h);
    let reference = pixels(&render(&data, Output::Png, 0));
    for speed in [6u8, 7, 8, 9, 10] {
        for quality in [50u8, 60, 70, 80] {
            std::env::set_var("AVIF_QUALITY", quality.to_string());
            std::env::set_var("AVIF_SPEED", speed.to_string());
            let t = std::time::Instant::now();
            let avif = render(&data, Output::Avif, 0);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let s_avif = score(&reference, &avif);
            let webp = webp_bytes(&data, &reference, s_avif);
            println!(
                "speed {speed} q{quality}: {ms:.0} ms, {} B, SSIMULACRA2 {s_avif:.1}; WebP {webp:.0} B: {:.2}x",
                avif.len(),
                avif.len() as f64 / webp
            );
        }
    }
}

/// The generated source: `scene` (natural image statistics) or `noisy` (per-pixel white noise,
/// the hardest case for every transform codec).
fn generate(source: &str, w: u32, h: u32) -> Vec<u8> {
    match source {
        "noisy" => photo(w, h),
        _ => bench::scene(w, h),
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
fn srgb(r: &Raster) -> ssimulacra2::Rgb {
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
fn pixels(bytes: &[u8]) -> Raster {
    if bytes.get(4..12) == Some(b"ftypavif".as_slice()) {
        return pipeline::avif::decode(bytes, &Settings::default()).expect("decode an AVIF");
    }
    let img = image::load_from_memory(bytes).expect("decode").to_rgb8();
    Raster {
        width: img.width(),
        height: img.height(),
        channels: 3,
        data: img.into_raw(),
    }
}

fn score(reference: &Raster, bytes: &[u8]) -> f64 {
    ssimulacra2::compute_frame_ssimulacra2(srgb(reference), srgb(&pixels(bytes))).expect("ssimulacra2")
}

/// The bytes our WebP takes to score `target`: interpolated between the qualities whose scores
/// bracket it (binary search for the smallest quality scoring at least `target`, then the line
/// from the one below it).
fn webp_bytes(data: &[u8], reference: &Raster, target: f64) -> f64 {
    let at = |q: u8| {
        let webp = render(data, Output::Webp, q);
        (score(reference, &webp), webp.len() as f64)
    };
    let (mut lo, mut hi) = (1u8, 100u8);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if at(mid).0 >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let (s_hi, b_hi) = at(lo);
    if lo == 1 || s_hi < target {
        return b_hi;
    }
    let (s_lo, b_lo) = at(lo - 1);
    if s_hi <= s_lo {
        return b_hi;
    }
    b_lo + (b_hi - b_lo) * ((target - s_lo) / (s_hi - s_lo)).clamp(0.0, 1.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--ours") => return run_ours(&args[2], args[3].parse().expect("iterations")),
        Some("--scene") => {
            let n = |i: usize| args[i].parse().expect("a size");
            return std::fs::write(&args[4], bench::scene(n(2), n(3))).expect("write");
        }
        Some("--thumb") => {
            let data = std::fs::read(&args[2]).expect("read");
            return std::fs::write(&args[3], render(&data, Output::Png, 0)).expect("write");
        }
        Some("--compare") => {
            let data = std::fs::read(&args[2]).expect("read");
            let other = std::fs::read(&args[3]).expect("read");
            let reference = pixels(&render(&data, Output::Png, 0));
            let s = score(&reference, &other);
            let webp = webp_bytes(&data, &reference, s);
            return println!(
                "{} B SSIMULACRA2 {s:.1}; WebP {webp:.0} B: {:.2}x",
                other.len(),
                other.len() as f64 / webp
            );
        }
        Some("--tune") => {
            let source = args.get(4).map_or("scene", String::as_str);
            return tune(
                args[2].parse().expect("width"),
                args[3].parse().expect("height"),
                source,
            );
        }
        _ => {}
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Settings::default().avif_quality;
    let mut rows = Vec::new();
    for (w, h) in [(1200u32, 800u32), (4000, 3000)] {
        let src = dir.path().join(format!("src-{w}.jpg"));
        let data = bench::scene(w, h);
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
        let describe = |name: &str, bytes: &[u8]| {
            if bytes.is_empty() {
                return format!("{name}: none");
            }
            let s = score(&reference, bytes);
            let webp = webp_bytes(&data, &reference, s);
            format!(
                "{name} {} B, SSIMULACRA2 {s:.1}, {:.2}× our WebP at that score",
                bytes.len(),
                bytes.len() as f64 / webp
            )
        };
        let read = |p: std::path::PathBuf| std::fs::read(p).unwrap_or_default();
        println!(
            "scene {w}×{h} → 640 px: {}; {}; {}",
            describe(&format!("ours (q{q})"), &render(&data, Output::Avif, 0)),
            describe("vips", &read(dir.path().join(format!("c{w}-0_t.avif")))),
            describe("avifenc", &read(dir.path().join(format!("a{w}-0.avif")))),
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
        for (source, target) in [("scene", "≤ 0.75×"), ("noisy", "–")] {
            let data = generate(source, w, h);
            let reference = pixels(&render(&data, Output::Png, 0));
            let avif = render(&data, Output::Avif, 0);
            let webp = webp_bytes(&data, &reference, score(&reference, &avif));
            rows.push(Row {
                what: format!("AVIF bytes vs our WebP at equal SSIMULACRA2 ({source} {w})"),
                ours: avif.len() as f64 / 1024.0,
                reference: Some(webp / 1024.0),
                unit: "KiB",
                target,
            });
        }
    }
    print_table(
        "AVIF output: imagehost (libaom) vs vipsthumbnail and avifenc (libaom), and vs our WebP",
        "imagehost",
        "reference",
        &rows,
    );
}
