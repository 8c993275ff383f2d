//! A hostile image corpus for `/p/`, generated here (never committed): the requests that once
//! crashed or swelled imagehost (a 1280×1 strip asked 8000 high, enlargements of 1×1 and 1×8000
//! images, a 16-bit RGBA PNG inside the limits, chunks that inflate to 400 MB, a 5000² GIF,
//! progressive 4:4:4 JPEGs, animations whose output would be enormous), plus classic bombs.
//! Used by imagehost's budget test (outcomes and the process's memory ceiling) and by `bench/`
//! (time per request and peak memory, release build).

use std::io::Write;

/// What a request of the corpus must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 200 with an image no side of which exceeds this.
    Image { max_side: u32 },
    /// 400 `invalid_image`.
    Refused,
}

/// One request: the file the origin serves at `/<name>`, and the `/p/` query to ask it with.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub query: &'static str,
    pub expect: Expect,
}

/// The files, by name.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("strip-1280x1.png", png_rgb(1280, 1)),
        ("strip-1x8000.png", png_rgb(1, 8000)),
        ("dot-1x1.png", png_rgb(1, 1)),
        ("rgba16-5000.png", png_rgba16(5000, 5000)),
        ("iccp-bomb.png", png_with_bomb(b"iCCP", b"icc\0\0", 400 << 20)),
        ("ztxt-bomb.png", png_with_bomb(b"zTXt", b"Comment\0\0", 400 << 20)),
        ("gif-5000.gif", gif(5000, 5000, 5000, 5000, 1)),
        ("gif-100-300-frames.gif", gif(100, 100, 1, 1, 300)),
        ("gif-20000-frames.gif", gif(500, 500, 1, 1, 20_000)),
        ("gif-screen-65535.gif", gif(65535, 65535, 1, 1, 1)),
        ("gif-frame-over-screen.gif", gif(64, 64, 10_000, 10_000, 1)),
        ("jpeg-progressive-444-4000x3000.jpg", jpeg(4000, 3000, true)),
        ("jpeg-progressive-444-6000x5000.jpg", jpeg(6000, 5000, true)),
        ("jpeg-baseline-6000x4000.jpg", jpeg(6000, 4000, false)),
        ("png-header-50000.png", png_header_only(50_000, 50_000)),
    ]
}

/// The requests, each with what it must get.
pub fn cases() -> Vec<Case> {
    use Expect::{Image, Refused};
    let c = |name, query, expect| Case { name, query, expect };
    vec![
        // The crash: the derived side was never capped (10,240,000×8000).
        c("strip-1280x1.png", "height=8000", Image { max_side: 16_384 }),
        c("strip-1x8000.png", "width=8000", Image { max_side: 16_384 }),
        c("strip-1x8000.png", "width=300", Image { max_side: 16_384 }),
        c("dot-1x1.png", "width=8000", Image { max_side: 8 }),
        c("dot-1x1.png", "width=8000&height=8000", Image { max_side: 8 }),
        // Inside the limits, streamed and shrunk as it decodes.
        c("rgba16-5000.png", "width=640", Image { max_side: 640 }),
        c("iccp-bomb.png", "width=100", Image { max_side: 100 }),
        c("ztxt-bomb.png", "width=100", Image { max_side: 100 }),
        // Estimated past the memory budget from its header: refused before decoding.
        c("gif-5000.gif", "width=300&format=jpeg", Refused),
        // 300 frames asked at 2000 px: over the output cap, the first frame alone.
        c("gif-100-300-frames.gif", "width=2000", Image { max_side: 800 }),
        c("gif-20000-frames.gif", "", Image { max_side: 500 }),
        c("gif-screen-65535.gif", "width=300", Refused),
        // A frame far larger than its screen, on the still path and the animated one.
        c("gif-frame-over-screen.gif", "width=300&format=jpeg", Refused),
        c("gif-frame-over-screen.gif", "width=300", Refused),
        c(
            "jpeg-progressive-444-4000x3000.jpg",
            "width=640",
            Image { max_side: 640 },
        ),
        c("jpeg-progressive-444-6000x5000.jpg", "width=640", Refused),
        // A large photo: a frontend's size is cheap, a poster-sized WebP of it is over budget.
        c(
            "jpeg-baseline-6000x4000.jpg",
            "width=1280",
            Image { max_side: 1280 },
        ),
        c("jpeg-baseline-6000x4000.jpg", "width=8000&format=webp", Refused),
        c("png-header-50000.png", "width=300", Refused),
    ]
}

/// Requests made at once to test admission: distinct widths of the heaviest accepted files (so
/// that no two share a render).
pub fn concurrent() -> Vec<Case> {
    let heavy = [
        (
            "rgba16-5000.png",
            ["width=300", "width=500", "width=700", "width=900"],
        ),
        (
            "jpeg-progressive-444-4000x3000.jpg",
            ["width=310", "width=510", "width=710", "width=910"],
        ),
    ];
    heavy
        .iter()
        .flat_map(|(name, queries)| {
            queries.iter().map(|q| Case {
                name,
                query: q,
                expect: Expect::Image { max_side: 910 },
            })
        })
        .collect()
}

fn png_writer(
    out: &mut Vec<u8>,
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
) -> png::Writer<&mut Vec<u8>> {
    let mut e = png::Encoder::new(out, w, h);
    e.set_color(color);
    e.set_depth(depth);
    e.set_compression(png::Compression::Fast);
    e.write_header().expect("png header")
}

fn png_rgb(w: u32, h: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..w * h).flat_map(|i| [(i % 251) as u8, 90, 200]).collect();
    let mut out = Vec::new();
    png_writer(&mut out, w, h, png::ColorType::Rgb, png::BitDepth::Eight)
        .write_image_data(&data)
        .expect("png data");
    out
}

/// A `w`×`h` 16-bit RGBA PNG (8 bytes a pixel decoded), written a row at a time.
fn png_rgba16(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = png_writer(&mut out, w, h, png::ColorType::Rgba, png::BitDepth::Sixteen);
        let mut stream = writer.stream_writer().expect("stream");
        let mut row = vec![0u8; w as usize * 8];
        for y in 0..h {
            for (x, px) in row.chunks_exact_mut(8).enumerate() {
                let v = ((x as u32 * 65_535 / w) as u16).to_be_bytes();
                let g = ((y * 65_535 / h) as u16).to_be_bytes();
                px.copy_from_slice(&[v[0], v[1], g[0], g[1], 0x80, 0, 0xff, 0xff]);
            }
            stream.write_all(&row).expect("row");
        }
        stream.finish().expect("finish");
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for b in bytes {
        c ^= *b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(out: &mut Vec<u8>, kind: &[u8], body: &[u8]) {
    out.extend((body.len() as u32).to_be_bytes());
    let typed = [kind, body].concat();
    out.extend(&typed);
    out.extend(crc32(&typed).to_be_bytes());
}

/// A 16×16 PNG with an ancillary chunk (`prefix` then a zlib stream) that inflates to `size`
/// zero bytes.
fn png_with_bomb(kind: &[u8], prefix: &[u8], size: usize) -> Vec<u8> {
    let small = png_rgb(16, 16);
    // Signature and IHDR (8 + 25 bytes), then the bomb, then the rest.
    let mut out = small[..33].to_vec();
    chunk(&mut out, kind, &[prefix, &zlib_zeros(size)].concat());
    out.extend_from_slice(&small[33..]);
    out
}

/// A zlib stream of `n` zero bytes: one fixed-Huffman block, a literal 0 then matches of 258 at
/// distance 1 (13 bits each), so 400 MB inflate from about 2.5 MB.
fn zlib_zeros(n: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        len: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, bits: u32) {
            self.acc |= (value as u64) << self.len;
            self.len += bits;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// Huffman codes are written most significant bit first.
        fn code(&mut self, code: u32, bits: u32) {
            let rev = code.reverse_bits() >> (32 - bits);
            self.put(rev, bits);
        }
    }
    let mut b = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        len: 0,
    };
    b.put(1, 1); // final block
    b.put(1, 2); // fixed Huffman
    b.code(0x30, 8); // literal 0
    let mut left = n.saturating_sub(1);
    while left >= 258 {
        b.code(0b1100_0101, 8); // length code 285: 258
        b.code(0, 5); // distance code 0: 1
        left -= 258;
    }
    for _ in 0..left {
        b.code(0x30, 8);
    }
    b.code(0, 7); // end of block (256)
    if b.len > 0 {
        b.out.push(b.acc as u8);
    }
    // Adler-32 of n zero bytes: a = 1, b = n mod 65521.
    let adler = ((n % 65_521) as u32) << 16 | 1;
    b.out.extend(adler.to_be_bytes());
    b.out
}

/// A GIF with a `sw`×`sh` screen and `frames` frames of `fw`×`fh` (each one pixel of data).
fn gif(sw: u16, sh: u16, fw: u16, fh: u16, frames: usize) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&sw.to_le_bytes());
    out.extend_from_slice(&sh.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    for _ in 0..frames {
        out.extend_from_slice(&[0x21, 0xF9, 4, 0, 1, 0, 0, 0]);
        out.push(0x2C);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&fw.to_le_bytes());
        out.extend_from_slice(&fh.to_le_bytes());
        out.push(0);
        out.extend_from_slice(&[2, 2, 0x44, 0x01, 0]);
    }
    out.push(0x3B);
    out
}

/// A `w`×`h` JPEG, 4:4:4 progressive or 4:2:0 baseline, of a smooth pattern.
fn jpeg(w: u32, h: u32, progressive: bool) -> Vec<u8> {
    let pixels: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]))
        .collect();
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_quality(85).expect("quality");
    if progressive {
        c.set_subsamp(turbojpeg::Subsamp::None).expect("4:4:4");
        c.set_progressive(true).expect("progressive");
    } else {
        c.set_subsamp(turbojpeg::Subsamp::Sub2x2).expect("4:2:0");
    }
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    c.compress_to_vec(image).expect("compress")
}

/// A PNG that is only a header claiming `w`×`h`.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The imagehost command both the budget test and the bench run the corpus against: listening on
/// `port`, one directory fileserver and the hot cache under `dir`, `/p/` allowed to fetch from the
/// loopback origin that serves [`files`]; output discarded.
pub fn imagehost_command(bin: &str, port: u16, dir: &std::path::Path) -> std::process::Command {
    let d = dir.display();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--set", &format!("server.listen=127.0.0.1:{port}")])
        .args([
            "--set",
            &format!("fileservers=[{{ name = \"a\", directory = {{ path = \"{d}/fs\" }} }}]"),
        ])
        .args(["--set", &format!("cache.dir={d}/cache")])
        .args(["--set", "proxy.allow_loopback=true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_stream_inflates_to_its_size() {
        // Small enough to check by inflating with the png crate's own reader: a PNG whose IDAT
        // is this stream decodes to that many zero bytes (a 1000×1 gray image, filter bytes 0).
        let stream = zlib_zeros(1001);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = 1000u32.to_be_bytes().to_vec();
        ihdr.extend(1u32.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &stream);
        chunk(&mut png, b"IEND", &[]);
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .expect("info");
        let mut buf = vec![1u8; 1000];
        reader.next_frame(&mut buf).expect("inflates");
        assert!(buf.iter().all(|b| *b == 0));
        assert!(zlib_zeros(400 << 20).len() < 3 << 20);
    }
}
