//! Hostile inputs through `/p/`, generated here: header-only and deflate bombs, huge GIF screens
//! and frames, thousands of frames, truncated files, polyglots, SVG, broken and oversized AVIFs. Each gets a clear answer,
//! the process's memory stays bounded, nothing is stored for them, and the server stays up.

use std::time::Instant;

use harness::origin::{Origin, Reply};

use super::fixture::{json, metric, Backend, Fixture};
use super::images::{self, decode};
use super::proxy::p;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// A PNG that is only a header claiming `w`×`h`.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A real deflate bomb: 8000×8000 zero pixels, tens of kilobytes compressed, 64 MB decoded.
fn png_deflate_bomb() -> Vec<u8> {
    let img = image::GrayImage::new(8000, 8000);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encode");
    out.into_inner()
}

/// GIF with a `sw`×`sh` logical screen and `frames` frames of `fw`×`fh` pixels.
fn gif_raw(sw: u16, sh: u16, fw: u16, fh: u16, frames: usize) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&sw.to_le_bytes());
    out.extend_from_slice(&sh.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]); // 2-colour global table
    for _ in 0..frames {
        out.extend_from_slice(&[0x21, 0xF9, 4, 0, 1, 0, 0, 0]); // graphic control, 10 ms
        out.push(0x2C);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&fw.to_le_bytes());
        out.extend_from_slice(&fh.to_le_bytes());
        out.push(0);
        out.extend_from_slice(&[2, 2, 0x44, 0x01, 0]); // LZW min code 2, one pixel
    }
    out.push(0x3B);
    out
}

fn jpeg_with_sof(w: u16, h: u16) -> Vec<u8> {
    let mut j = images::jpeg(16, 16);
    let sof = j.windows(2).position(|x| x == [0xFF, 0xC0]).expect("SOF0");
    j[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    j
}

/// A lossless WebP header claiming 16383×16383.
fn webp_huge() -> Vec<u8> {
    let mut body = vec![0x2f];
    let bits: u32 = 16382 | (16382 << 14);
    body.extend_from_slice(&bits.to_le_bytes());
    body.extend(std::iter::repeat_n(0u8, 64));
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + body.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8L");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_images_get_clear_errors_within_bounded_memory() {
    let photo = images::jpeg(600, 400);
    // 1600 px asked at 300 decodes at 1/2: the shrink decoder's path, which must refuse too.
    let mut truncated = images::jpeg(1600, 1200);
    truncated.truncate(truncated.len() * 4 / 10);
    let mut gif_polyglot =
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00<html><script>alert(1)</script></html>".to_vec();
    gif_polyglot.extend(std::iter::repeat_n(b' ', 64));
    let mut jpeg_polyglot = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    jpeg_polyglot.extend_from_slice(b"JFIF\0<html><body onload=alert(1)>PK\x03\x04");
    jpeg_polyglot.extend(std::iter::repeat_n(0u8, 100));
    let files: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/png-header-50000.png", png_header_only(50_000, 50_000), 400, "invalid_image"),
        ("/png-deflate-bomb.png", png_deflate_bomb(), 400, "invalid_image"),
        ("/gif-screen-65535.gif", gif_raw(65535, 65535, 1, 1, 1), 400, "invalid_image"),
        ("/gif-frame-65535.gif", gif_raw(32, 32, 65535, 65535, 1), 400, "invalid_image"),
        ("/jpeg-sof-65500.jpg", jpeg_with_sof(65500, 65500), 400, "invalid_image"),
        ("/jpeg-truncated.jpg", truncated, 400, "invalid_image"),
        ("/webp-16383.webp", webp_huge(), 400, "invalid_image"),
        ("/polyglot.gif", gif_polyglot, 400, "invalid_image"),
        ("/polyglot.jpg", jpeg_polyglot, 400, "invalid_image"),
        ("/image.svg", b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100000\" height=\"100000\"/>".to_vec(), 400, "invalid_image"),
        ("/empty.png", Vec::new(), 400, "invalid_image"),
        ("/html.jpg", b"<!doctype html><title>not an image</title>".to_vec(), 400, "invalid_image"),
    ];
    // AVIFs are passed through with `match`, so these are asked for as JPEG (decoded by dav1d).
    let mut avif_truncated = images::avif(400, 300, &[]);
    avif_truncated.truncate(avif_truncated.len() * 6 / 10);
    let mut avif_garbage = images::avif(400, 300, &[]);
    let mdat = avif_garbage
        .windows(4)
        .position(|w| w == b"mdat")
        .expect("mdat box");
    avif_garbage[mdat + 4..].fill(0x55);
    let avifs: Vec<(&str, Vec<u8>)> = vec![
        ("/avif-truncated.avif", avif_truncated),
        ("/avif-garbage-payload.avif", avif_garbage),
        ("/avif-brand-only.avif", images::fake_avif()),
    ];
    let served: std::collections::HashMap<String, Vec<u8>> = files
        .iter()
        .map(|(n, b, _, _)| (n.to_string(), b.clone()))
        .chain(avifs.iter().map(|(n, b)| (n.to_string(), b.clone())))
        .chain([
            ("/frames-20000.gif".to_string(), gif_raw(500, 500, 1, 1, 20_000)),
            ("/photo.jpg".to_string(), photo),
        ])
        .collect();
    let o = Origin::start(move |req| match served.get(&req.path) {
        Some(b) => Reply::ok(b.clone()),
        None => Reply::status(404),
    });
    let f = Fixture::start(Backend::Directory, |c, _, _| c.proxy.allow_loopback = true).await;
    let u = |n: &str| format!("http://{}{n}", o.addr());
    let baseline = peak_rss_kib();

    for (name, _, status, error) in &files {
        let t = Instant::now();
        let r = f.get(&p(&u(name), "width=300")).await;
        eprintln!("{name}: {} in {:?}", r.status, t.elapsed());
        assert_eq!(r.status, *status, "{name}: {:?}", r.text());
        assert_eq!(json(&r)["error"]["name"], *error, "{name}");
    }
    for (name, _) in &avifs {
        let t = Instant::now();
        let r = f.get(&p(&u(name), "width=300&format=jpeg")).await;
        eprintln!("{name}: {} in {:?}", r.status, t.elapsed());
        assert_eq!(r.status, 400, "{name}: {:?}", r.text());
        assert_eq!(json(&r)["error"]["name"], "invalid_image", "{name}");
    }
    // 20,000 frames: past the frame cap, the first frame alone is rendered (D10).
    let t = Instant::now();
    let r = f.get(&p(&u("/frames-20000.gif"), "")).await;
    eprintln!("/frames-20000.gif: {} in {:?}", r.status, t.elapsed());
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(decode(&r.body).frames, 1);

    let grown_mib = peak_rss_kib().saturating_sub(baseline) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB over the suite");
    assert!(grown_mib < 400, "memory stayed bounded: +{grown_mib} MiB");

    // Nothing was stored for the refused files, and the server still works.
    let store = f.proxy_store(0);
    let stored = store.list(&Default::default()).await.expect("list");
    let keys: Vec<String> = stored.entries.iter().map(|e| e.key.to_string()).collect();
    for name in files.iter().map(|f| f.0).chain(avifs.iter().map(|a| a.0)) {
        let k = imagehost::proxy::target::original_key(&u(name));
        assert!(!keys.iter().any(|s| s.starts_with(&k)), "{name} left {keys:?}");
    }
    let r = f.get(&p(&u("/photo.jpg"), "width=100")).await;
    assert_eq!((r.status, decode(&r.body).width), (200, 100));
    assert_eq!(f.get("/healthcheck").await.status, 200);
    f.stop().await;
}

/// An AVIF past the pixel limit is refused from its AV1 sequence header, before dav1d decodes
/// a frame (the refusal is counted as too large, not as corrupt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avif_past_the_pixel_limit_is_refused_from_its_header() {
    let big = images::avif(200, 100, &[]);
    let o = Origin::start(move |_| Reply::ok(big.clone()));
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.pipeline.max_pixels = 10_000;
    })
    .await;
    let r = f
        .get(&p(
            &format!("http://{}/big.avif", o.addr()),
            "format=webp&width=50",
        ))
        .await;
    assert_eq!(
        (r.status, json(&r)["error"]["name"].as_str()),
        (400, Some("invalid_image"))
    );
    assert_eq!(metric("imagehost_renders_total{outcome=\"too_large\"}"), 1.0);
    assert_eq!(metric("imagehost_renders_total{outcome=\"corrupt\"}"), 0.0);
    f.stop().await;
}
