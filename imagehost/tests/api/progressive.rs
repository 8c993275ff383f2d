//! The shrink decoder on progressive JPEGs. `jpegtran` rewrites a baseline file as a
//! progressive one without touching a coefficient, so whatever the scan script (libjpeg-turbo's
//! default, mozjpeg's, ones written here with successive approximation at three bits, bands cut
//! at odd places, DC scans apart, restart markers), the shrunk decode of the progressive file must
//! be the very bytes of the baseline one's, at every scale and for every layout the baseline
//! decoder is checked on. Files
//! libjpeg-turbo encodes progressive itself are held to the same distance from the box-averaged
//! full decode as baseline ones; a scan the size does not need is not read; truncated and
//! mutated files never panic.

use std::process::Command;

use image::RgbImage;
use imagehost::pipeline::shrink;
use rand::{Rng, SeedableRng};
use turbojpeg::Subsamp;

use super::shrink::{card, layouts, mean_abs, truth, turbo_compress, turbo_decode, turbo_encode, LIMIT};

/// mozjpeg's default script for YCbCr (jpgcrush's): DC of luma alone, chroma DC together, luma
/// AC cut at 8 with two bits of approximation, chroma bands without.
const MOZJPEG: &str = "0: 0 0 0 0; 1 2: 0 0 0 0; 0: 1 8 0 2; 1: 1 8 0 0; 2: 1 8 0 0; \
                       0: 9 63 0 2; 0: 1 63 2 1; 0: 1 63 1 0; 1: 9 63 0 0; 2: 9 63 0 0;";

/// Written here: DC scans apart and refined over three bits, luma bands cut at 2 and 16, a band
/// refined before the next band's first scan, chroma in one band and in two approximations.
const ODD: &str = "0: 0 0 0 2; 1 2: 0 0 0 1; 0: 1 2 0 3; 0: 3 16 0 2; 0: 1 2 3 2; \
                   0: 17 63 0 2; 2: 1 63 0 0; 0: 0 0 2 1; 0: 1 63 2 1; 0 1 2: 0 0 1 0; \
                   1: 1 63 0 1; 0: 1 63 1 0; 1: 1 63 1 0;";

/// One refinement bit at a time for every band of a grey image.
const GREY: &str = "0: 0 0 0 3; 0: 1 5 0 3; 0: 6 63 0 3; 0: 0 0 3 2; 0: 1 63 3 2; \
                    0: 0 0 2 1; 0: 1 63 2 1; 0: 0 0 1 0; 0: 1 63 1 0;";

/// `jpegtran` (libjpeg-turbo-progs) over `data` with `args`; `script` is written to a file
/// and given as `-scans`.
fn jpegtran(data: &[u8], args: &[&str], script: Option<&str>) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jpg");
    std::fs::write(&input, data).expect("write");
    let mut cmd = Command::new("jpegtran");
    cmd.args(args);
    if let Some(script) = script {
        let path = dir.path().join("scans.txt");
        std::fs::write(&path, script).expect("script");
        cmd.arg("-scans").arg(&path);
    }
    let out = cmd
        .arg(&input)
        .output()
        .expect("jpegtran (apt-get install libjpeg-turbo-progs)");
    assert!(
        out.status.success(),
        "jpegtran {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn turbo_progressive(img: &RgbImage, subsamp: Subsamp, quality: i32) -> Vec<u8> {
    turbo_compress(img, subsamp, quality, false, true)
}

fn is_progressive(data: &[u8]) -> bool {
    data.windows(2).any(|w| w == [0xff, 0xc2])
}

#[test]
fn every_progression_shrinks_to_the_bytes_of_its_baseline_file() {
    let sizes = [(333, 251), (64, 48), (17, 9), (1, 1), (250, 7)];
    let layouts = layouts();
    let mut checked = 0;
    for &(w, h) in &sizes {
        let img = card(w, h);
        for (layout, grey, make) in &layouts {
            let base = make(&img);
            let mut progressions = vec![
                ("jpegtran -progressive", jpegtran(&base, &["-progressive"], None)),
                (
                    "jpegtran -progressive, a restart every 2 blocks",
                    jpegtran(&base, &["-progressive", "-restart", "2B"], None),
                ),
            ];
            if *grey {
                progressions.push(("three approximation bits", jpegtran(&base, &[], Some(GREY))));
            } else {
                progressions.push(("mozjpeg's script", jpegtran(&base, &[], Some(MOZJPEG))));
                progressions.push(("odd bands and three bits", jpegtran(&base, &[], Some(ODD))));
                progressions.push((
                    "odd bands, a restart every row",
                    jpegtran(&base, &["-restart", "1"], Some(ODD)),
                ));
            }
            for (progression, file) in &progressions {
                assert!(is_progressive(file), "{progression}: a progressive file");
                for denom in [2u32, 4, 8] {
                    let case = format!("{layout} {w}×{h}, {progression}, 1/{denom}");
                    let want = shrink::decode(&base, denom, LIMIT).expect("baseline taken");
                    let got =
                        shrink::decode(file, denom, LIMIT).unwrap_or_else(|| panic!("{case}: not taken"));
                    assert_eq!(
                        (got.width, got.height, got.channels),
                        (want.width, want.height, want.channels)
                    );
                    assert!(got.data == want.data, "{case}: pixels differ");
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} progressive decodes identical to their baseline files'");
}

#[test]
fn progressive_files_libjpeg_turbo_writes_stay_as_close_to_the_box_average() {
    let img = card(333, 251);
    for (what, subsamp, grey) in [
        ("4:2:0", Subsamp::Sub2x2, false),
        ("4:4:4", Subsamp::None, false),
        ("grey", Subsamp::Gray, true),
    ] {
        for quality in [50, 90] {
            let file = turbo_progressive(&img, subsamp, quality);
            assert!(is_progressive(&file));
            for denom in [2u32, 4, 8] {
                let case = format!("{what} q{quality} 1/{denom}");
                let ours = shrink::decode(&file, denom, LIMIT).unwrap_or_else(|| panic!("{case}: not taken"));
                let theirs = turbo_decode(&file, denom as usize, grey);
                let want = truth(&file, denom, grey);
                let (e_ours, e_theirs) = (mean_abs(&ours, &want), mean_abs(&theirs, &want));
                assert!(
                    e_ours <= e_theirs + 1.0,
                    "{case}: {e_ours:.2} levels from the box average, libjpeg-turbo {e_theirs:.2}"
                );
            }
        }
    }
}

/// The entropy-coded data of each scan: (start, end) after each SOS segment.
fn scans(file: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= file.len() {
        let marker = file[i + 1];
        let len = u16::from_be_bytes([file[i + 2], file[i + 3]]) as usize;
        if marker != 0xda {
            i += 2 + len;
            continue;
        }
        let start = i + 2 + len;
        let mut end = start;
        while !(file[end] == 0xff && file[end + 1] != 0 && !(0xd0..=0xd7).contains(&file[end + 1])) {
            end += 1;
        }
        out.push((start, end));
        i = end;
        if file[i + 1] == 0xd9 {
            break;
        }
    }
    out
}

#[test]
fn scans_the_size_does_not_need_are_not_read() {
    // 4:4:4 at 1/8 keeps each block's DC alone: the default progression's AC scans (all but
    // the first and the seventh) are skipped, so garbage in them changes nothing.
    let file = turbo_progressive(&card(200, 150), Subsamp::None, 90);
    let want = shrink::decode(&file, 8, LIMIT).expect("taken");
    let spans = scans(&file);
    assert_eq!(spans.len(), 10, "libjpeg-turbo's default script");
    let mut garbled = file.clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (i, &(start, end)) in spans.iter().enumerate() {
        if i != 0 && i != 6 {
            for b in &mut garbled[start..end] {
                *b = rng.random_range(0..0xff);
            }
        }
    }
    let got = shrink::decode(&garbled, 8, LIMIT).expect("still taken");
    assert!(got.data == want.data, "skipped scans were read");
    // At 1/2 they are needed, and the damage is seen.
    assert!(shrink::decode(&garbled, 2, LIMIT)
        .is_none_or(|r| r.data != shrink::decode(&file, 2, LIMIT).expect("taken").data));
}

#[test]
fn truncated_progressive_files_go_to_libjpeg_turbo_and_mutated_ones_never_panic() {
    let img = card(200, 150);
    let base = turbo_encode(&img, Subsamp::Sub2x2, 90, true);
    let seeds = [
        turbo_progressive(&img, Subsamp::Sub2x2, 90),
        jpegtran(&base, &["-restart", "2B"], Some(ODD)),
        jpegtran(&turbo_encode(&img, Subsamp::Gray, 80, false), &[], Some(GREY)),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5052_4f47);
    let mut taken = 0;
    for seed in &seeds {
        for cut in (0..seed.len() - 2).step_by(seed.len() / 40) {
            assert!(shrink::decode(&seed[..cut], 4, LIMIT).is_none(), "cut at {cut}");
        }
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
    assert!(taken > 0, "a changed coefficient still decodes");
    eprintln!(
        "{taken} mutated progressive files decoded by the shrink decoder, the rest left to libjpeg-turbo"
    );
}

#[test]
fn a_progressive_thumbnail_is_rendered_by_the_shrink_decoder() {
    use imagehost::pipeline::{self, AvifSource, Input, Output, Request, Settings};
    let file = turbo_progressive(&card(400, 300), Subsamp::Sub2x2, 90);
    let req = Request {
        width: Some(100),
        height: None,
        mode: imagehost::proxy::options::Mode::Fit,
        format: Output::Jpeg,
        avif: AvifSource::AsRequested,
    };
    let count = || super::fixture::metric("imagehost_jpeg_decodes_total{decoder=\"shrink\"}");
    let before = count();
    let r = pipeline::render(&file, Input::Jpeg, &req, &Settings::default()).expect("render");
    assert_eq!(super::images::decode(&r.bytes).width, 100);
    assert_eq!(count(), before + 1.0);
}
