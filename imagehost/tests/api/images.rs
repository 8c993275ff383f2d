//! Test images, generated in the tests (never committed): photos with texture, alpha PNGs,
//! animated GIFs, EXIF-rotated JPEGs, WebP, AVIFs made by `avifenc` and a fake one, and readers
//! that report what came back.

use std::io::Cursor;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{AnimationDecoder, Delay, Frame, ImageFormat, RgbImage, RgbaImage};

/// A JPEG photo-like image (gradients plus noise) at quality 90.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 31;
        image::Rgb([
            ((x * 255 / w.max(1)) as u8).wrapping_add(n as u8),
            ((y * 255 / h.max(1)) as u8).wrapping_add(n as u8),
            ((x + y) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode jpeg");
    out
}

/// `jpeg(w, h)`'s pixels as a progressive JPEG (libjpeg-turbo's default scans).
pub fn jpeg_progressive(w: u32, h: u32) -> Vec<u8> {
    let rgb = image::load_from_memory(&jpeg(w, h)).expect("decode").to_rgb8();
    super::shrink::turbo_compress(&rgb, turbojpeg::Subsamp::Sub2x2, 90, false, true)
}

/// `jpeg(w, h)` with an EXIF APP1 segment carrying `orientation`, right after SOI.
pub fn jpeg_oriented(w: u32, h: u32, orientation: u8) -> Vec<u8> {
    let plain = jpeg(w, h);
    let mut out = plain[..2].to_vec();
    out.extend(imagehost::pipeline::exif::app1_with_orientation(orientation));
    out.extend_from_slice(&plain[2..]);
    out
}

pub fn png_alpha(w: u32, h: u32) -> Vec<u8> {
    let img = RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 80, ((x + y) % 256) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).expect("encode png");
    out.into_inner()
}

pub fn webp(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 30]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::WebP).expect("encode webp");
    out.into_inner()
}

/// An animated GIF of `frames` frames.
pub fn gif(w: u32, h: u32, frames: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut out, 30);
        enc.set_repeat(Repeat::Infinite).expect("repeat");
        for f in 0..frames {
            let img = RgbaImage::from_fn(w, h, |x, y| {
                image::Rgba([
                    ((x + f * 40) % 256) as u8,
                    (y % 256) as u8,
                    (f * 60 % 256) as u8,
                    255,
                ])
            });
            enc.encode_frame(Frame::from_parts(img, 0, 0, Delay::from_numer_denom_ms(100, 1)))
                .expect("frame");
        }
    }
    out
}

/// An AVIF made by `avifenc` (Debian's libavif-bin, which `scripts/test` installs) from a PNG of
/// `img`, with extra avifenc arguments (depth, subsampling, range, quantizers).
pub fn avif_of(img: &image::DynamicImage, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (png, avif) = (dir.path().join("in.png"), dir.path().join("out.avif"));
    img.save_with_format(&png, ImageFormat::Png).expect("write png");
    let out = std::process::Command::new("avifenc")
        .args(["-s", "10", "-j", "1"])
        .args(args)
        .arg(&png)
        .arg(&avif)
        .output()
        .expect("avifenc (apt-get install libavif-bin; scripts/test installs it)");
    assert!(
        out.status.success(),
        "avifenc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&avif).expect("read avif")
}

/// The photo-like `jpeg` texture as an AVIF.
pub fn avif(w: u32, h: u32, args: &[&str]) -> Vec<u8> {
    let img = image::load_from_memory(&jpeg(w, h)).expect("decode jpeg");
    avif_of(&img, args)
}

/// `png_alpha`'s pixels (alpha from 0 at the top-left corner) as an AVIF with an alpha item.
pub fn avif_alpha(w: u32, h: u32) -> Vec<u8> {
    let img = image::load_from_memory(&png_alpha(w, h)).expect("decode png");
    avif_of(&img, &[])
}

/// Pure red above pure blue, 64×64, for colour checks.
pub fn red_over_blue() -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |_, y| {
        if y < 32 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    }))
}

/// `w`×`h` in four flat quadrants: red, green above blue, white; for orientation checks.
pub fn quadrants(w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb(match (x < w / 2, y < h / 2) {
            (true, true) => [255, 0, 0],
            (false, true) => [0, 255, 0],
            (true, false) => [0, 0, 255],
            (false, false) => [255, 255, 255],
        })
    }))
}

/// The four quadrant colours of a decoded body (top-left, top-right, bottom-left,
/// bottom-right), each rounded to 0 or 255.
pub fn quadrant_colours(bytes: &[u8]) -> [[u8; 3]; 4] {
    let img = image::load_from_memory(bytes).expect("decodes").to_rgb8();
    let (w, h) = img.dimensions();
    [
        (w / 4, h / 4),
        (3 * w / 4, h / 4),
        (w / 4, 3 * h / 4),
        (3 * w / 4, 3 * h / 4),
    ]
    .map(|(x, y)| img.get_pixel(x, y).0.map(|c| if c > 127 { 255 } else { 0 }))
}

/// Enough of an AVIF file for the sniffer (served untouched with format=match).
pub fn fake_avif() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0x1c];
    v.extend_from_slice(b"ftypavif\0\0\0\0avifmif1miaf");
    v.extend(std::iter::repeat_n(7u8, 200));
    v
}

/// What a response body decodes to: format, width, height, frame count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub frames: usize,
}

pub fn decode(bytes: &[u8]) -> Decoded {
    if bytes.get(4..12) == Some(b"ftypavif".as_slice()) {
        let r = avif_pixels(bytes);
        return Decoded {
            format: "avif",
            width: r.width,
            height: r.height,
            frames: 1,
        };
    }
    let format = image::guess_format(bytes).expect("a known image format");
    let name = match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::Gif => "gif",
        ImageFormat::WebP => "webp",
        other => panic!("unexpected output format {other:?}"),
    };
    let frames = if format == ImageFormat::Gif {
        image::codecs::gif::GifDecoder::new(Cursor::new(bytes))
            .expect("gif")
            .into_frames()
            .count()
    } else {
        1
    };
    let img = image::load_from_memory(bytes).expect("decodes");
    Decoded {
        format: name,
        width: img.width(),
        height: img.height(),
        frames,
    }
}

/// The colour at (x, y) of a decoded body.
pub fn pixel(bytes: &[u8], x: u32, y: u32) -> [u8; 4] {
    image::load_from_memory(bytes)
        .expect("decodes")
        .to_rgba8()
        .get_pixel(x, y)
        .0
}

/// An AVIF body decoded by imagehost's own decoder (dav1d): its pixels and channels.
pub fn avif_pixels(bytes: &[u8]) -> imagehost::pipeline::raster::Raster {
    imagehost::pipeline::avif::decode(bytes, &imagehost::pipeline::Settings::default()).expect("a valid AVIF")
}
