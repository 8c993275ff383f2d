//! Thumbnail CPU against vipsthumbnail in the same run: a 4000×3000 and a 1200×800 q90 JPEG
//! (generated here), the 4000×3000 one made progressive by `jpegtran -progressive` (the same
//! coefficients, libjpeg-turbo's default scans), and the 1200×800 photo as an 8-bit 4:2:0 AVIF (`avifenc`; vips reads it
//! through libheif), each to a 640 px JPEG at Q80. Ours runs the imagehost pipeline in a child process
//! (`--ours FILE N`, N iterations); vips runs one process over N copies. CPU = user + system from
//! wait4, divided by N, so start-up is amortised for both.
//!
//! By hand: `thumbnail --photo W H FILE` writes the generated source; `thumbnail --decode FILE [N]`
//! times the decode step alone at 1/4 (the shrink decoder against libjpeg-turbo).

use std::process::{Command, Stdio};

use bench::{cpu_of, photo, print_table, Row};
use imagehost::pipeline::{self, Input, Output, Request, Settings};
use imagehost::proxy::options::Mode;

const ITERS: usize = 20;

fn settings() -> Settings {
    Settings {
        jpeg_quality: 80,
        ..Settings::default()
    }
}

fn run_ours(file: &str, iters: usize) {
    let data = std::fs::read(file).expect("read");
    let req = Request {
        width: Some(640),
        height: Some(640),
        mode: Mode::Fit,
        format: Output::Jpeg,
        avif: imagehost::pipeline::AvifSource::AsRequested,
    };
    let s = settings();
    let input = if file.ends_with(".avif") {
        Input::Avif
    } else {
        Input::Jpeg
    };
    let mut size = 0;
    for _ in 0..iters {
        size = pipeline::render(&data, input, &req, &s)
            .expect("render")
            .bytes
            .len();
    }
    println!("{size}");
}

/// Wall milliseconds per decode at 1/4 of the size, `iters` of each, for a profile by hand.
fn decode_only(file: &str, iters: usize) {
    use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};
    let data = std::fs::read(file).expect("read");
    let time = |f: &mut dyn FnMut() -> (usize, usize)| {
        let t = std::time::Instant::now();
        let mut size = (0, 0);
        for _ in 0..iters {
            size = f();
        }
        (size, t.elapsed().as_secs_f64() * 1000.0 / iters as f64)
    };
    let ours = time(&mut || {
        let r =
            imagehost::pipeline::shrink::decode(&data, 4, u64::MAX).expect("a JPEG the shrink decoder takes");
        (r.width as usize, r.height as usize)
    });
    let turbo = time(&mut || {
        let mut d = Decompressor::new().expect("decompressor");
        let factor = ScalingFactor::new(1, 4);
        d.set_scaling_factor(factor).expect("scale");
        d.set_fast_upsample(true).expect("upsample");
        let s = d.read_header(&data).expect("header").scaled(factor);
        let mut pixels = vec![0u8; s.width * s.height * 3];
        let image = Image {
            pixels: pixels.as_mut_slice(),
            width: s.width,
            pitch: s.width * 3,
            height: s.height,
            format: PixelFormat::RGB,
        };
        d.decompress(&data, image).expect("decompress");
        (s.width, s.height)
    });
    println!(
        "decode at 1/4 to {:?}: shrink {:.1} ms, libjpeg-turbo {:.1} ms",
        ours.0, ours.1, turbo.1
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--ours") => return run_ours(&args[2], args[3].parse().expect("iterations")),
        // `--photo W H FILE`: writes the generated source, to profile one case by hand.
        Some("--photo") => {
            let n = |i: usize| args[i].parse().expect("dimension");
            return std::fs::write(&args[4], photo(n(2), n(3))).expect("write");
        }
        // `--decode FILE [N]`: the decode step alone at 1/4, shrink decoder against
        // libjpeg-turbo, N (20) of each.
        Some("--decode") => {
            let iters = args.get(3).map_or(20, |n| n.parse().expect("iterations"));
            return decode_only(&args[2], iters);
        }
        _ => {}
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    // (width, height, kind, target): kind "jpg" as generated, "progressive" the same pixels
    // rewritten by `jpegtran -progressive` (libjpeg-turbo's default script), "avif" by avifenc.
    let cases = [
        (4000u32, 3000u32, "jpg", "≤ 0.55× vips"),
        (4000, 3000, "progressive", "≤ 0.55× vips"),
        (1200, 800, "jpg", "≤ 20 ms CPU"),
        (1200, 800, "avif", "–"),
    ];
    for (w, h, kind, target) in cases {
        let ext = if kind == "avif" { "avif" } else { "jpg" };
        let src = dir.path().join(format!("src-{w}-{kind}.{ext}"));
        let jpeg = dir.path().join(format!("src-{w}.jpg"));
        std::fs::write(&jpeg, photo(w, h)).expect("write");
        if kind == "progressive" {
            let out = Command::new("jpegtran")
                .arg("-progressive")
                .arg(&jpeg)
                .output()
                .expect("jpegtran (apt-get install libjpeg-turbo-progs)");
            assert!(out.status.success(), "jpegtran");
            std::fs::write(&src, out.stdout).expect("write");
        } else if kind == "jpg" {
            std::fs::copy(&jpeg, &src).expect("copy");
        }
        if kind == "avif" {
            let ok = Command::new("avifenc")
                .args(["-s", "8", "-j", "1", "-y", "420"])
                .arg(&jpeg)
                .arg(&src)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "avifenc (apt-get install libavif-bin)");
        }
        let copies: Vec<String> = (0..ITERS)
            .map(|i| {
                let p = dir.path().join(format!("c{w}{kind}-{i}.{ext}"));
                std::fs::copy(&src, &p).expect("copy");
                p.display().to_string()
            })
            .collect();
        let mut ours = Command::new(&args[0]);
        ours.args(["--ours", &src.display().to_string(), &ITERS.to_string()]);
        let mut vips = Command::new("vipsthumbnail");
        vips.args(["-s", "640", "-o", "%s_t.jpg[Q=80]"]).args(&copies);
        // Interleave, best of three each: the machine is shared.
        let (mut o, mut v) = ((f64::MAX, 0.0, String::new()), (f64::MAX, 0.0, String::new()));
        for _ in 0..3 {
            let a = cpu_of(Command::new(ours.get_program()).tap(&ours));
            if a.0 < o.0 {
                o = a;
            }
            // libheif warns once per AVIF that it ignores the nclx box.
            let mut quiet = Command::new("vipsthumbnail").tap(&vips);
            quiet.stderr(Stdio::null());
            let b = cpu_of(quiet);
            if b.0 < v.0 {
                v = b;
            }
        }
        let vips_bytes = std::fs::metadata(dir.path().join(format!("c{w}{kind}-0_t.jpg")))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "{w}×{h} {kind}: source {} bytes, output ours {} bytes, vips {vips_bytes} bytes",
            std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0),
            o.2.trim()
        );
        rows.push(Row {
            what: format!("CPU per {w}×{h} {} → 640 px JPEG", kind.to_uppercase()),
            ours: o.0 / ITERS as f64,
            reference: Some(v.0 / ITERS as f64),
            unit: "ms",
            target,
        });
    }
    print_table(
        "thumbnail: imagehost pipeline vs vipsthumbnail",
        "imagehost",
        "vipsthumbnail",
        &rows,
    );
}

trait Tap {
    fn tap(self, from: &Command) -> Command;
}

impl Tap for Command {
    fn tap(mut self, from: &Command) -> Command {
        self.args(from.get_args());
        self
    }
}
