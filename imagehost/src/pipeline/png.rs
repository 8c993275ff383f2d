//! PNG input through the `png` crate directly: palettes expanded and 16-bit samples stripped to 8
//! bits as rows are read, ancillary chunks that may inflate to any size (iCCP, zTXt, iTXt)
//! skipped rather than inflated, and a non-interlaced file box-shrunk by an integer factor while
//! it streams, so a thumbnail of a large PNG never holds the image whole (libvips' shrink-on-load
//! for PNG). The time budget is checked as rows go.

use std::io::Cursor;

use png::{ColorType, Transformations};

use super::raster::Raster;
use super::{exif, Budget, PipelineError};

/// What the decoder may allocate besides rows and the output: the eXIf chunk, palettes,
/// the inflater's window. Other chunks that could be larger are skipped.
const DECODER_LIMIT: usize = 8 << 20;
/// Rows between two checks of the time budget.
const CHECK_EVERY: u32 = 64;

fn corrupt(e: png::DecodingError) -> PipelineError {
    match e {
        png::DecodingError::LimitsExceeded => PipelineError::TooLarge {
            width: 0,
            height: 0,
            limit: format!("{DECODER_LIMIT} bytes of PNG metadata"),
        },
        other => PipelineError::Corrupt(format!("png: {other}")),
    }
}

/// The decoder, past the chunks before the pixels.
fn reader(data: &[u8]) -> Result<png::Reader<Cursor<&[u8]>>, PipelineError> {
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(data), png::Limits { bytes: DECODER_LIMIT });
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    decoder.read_info().map_err(corrupt)
}

fn orientation_of(info: &png::Info<'_>) -> u8 {
    info.exif_metadata
        .as_deref()
        .and_then(exif::tiff_orientation)
        .unwrap_or(1)
}

/// The EXIF orientation alone, from the chunks before the pixels (none are inflated).
pub fn orientation(data: &[u8]) -> Result<u8, PipelineError> {
    Ok(orientation_of(reader(data)?.info()))
}

/// Decodes `data`, averaging `k`×`k` blocks (alpha-weighted) as rows arrive when the file is not
/// interlaced. Returns the pixels (gray, RGB or RGBA) and the EXIF orientation.
pub fn decode(data: &[u8], k: u32, budget: &Budget) -> Result<(Raster, u8), PipelineError> {
    let mut reader = reader(data)?;
    let info = reader.info();
    let (w, h) = (info.width, info.height);
    let interlaced = info.interlaced;
    let orientation = orientation_of(info);
    let (color, _) = reader.output_color_type();
    let (inc, outc): (usize, usize) = match color {
        ColorType::Grayscale => (1, 1),
        ColorType::GrayscaleAlpha => (2, 4),
        ColorType::Rgb => (3, 3),
        _ => (4, 4),
    };
    if interlaced || k == 1 {
        // Whole: Adam7 passes only make sense together.
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| PipelineError::TooLarge {
                width: w as u64,
                height: h as u64,
                limit: "addressable memory".into(),
            })?;
        let mut buf = vec![0u8; size];
        let frame = reader.next_frame(&mut buf).map_err(corrupt)?;
        buf.truncate(frame.buffer_size());
        let data = if inc == 2 { gray_alpha_to_rgba(&buf) } else { buf };
        return Ok((raster(w, h, outc as u32, data), orientation));
    }
    let (ow, oh) = (w.div_ceil(k), h.div_ceil(k));
    let mut out = vec![0u8; ow as usize * oh as usize * outc];
    let mut shrink = BoxRows::new(w, k, inc, outc);
    let mut y = 0u32;
    while let Some(row) = reader.next_row().map_err(corrupt)? {
        shrink.add(row.data());
        y += 1;
        if y % k == 0 || y == h {
            let at = ((y - 1) / k) as usize * ow as usize * outc;
            shrink.emit(&mut out[at..at + ow as usize * outc]);
        }
        if y % CHECK_EVERY == 0 {
            budget.check()?;
        }
    }
    if y != h {
        return Err(PipelineError::Corrupt(format!("png: {y} of {h} rows")));
    }
    Ok((raster(ow, oh, outc as u32, out), orientation))
}

fn raster(width: u32, height: u32, channels: u32, data: Vec<u8>) -> Raster {
    Raster {
        width,
        height,
        channels: channels as u8,
        data,
    }
}

fn gray_alpha_to_rgba(ga: &[u8]) -> Vec<u8> {
    ga.chunks_exact(2)
        .flat_map(|p| [p[0], p[0], p[0], p[1]])
        .collect()
}

/// Sums of `k` rows in blocks of `k` columns, then their means. With alpha, colour is weighted by
/// it (a transparent pixel's colour does not bleed into its neighbours).
struct BoxRows {
    k: u32,
    width: u32,
    inc: usize,
    outc: usize,
    /// Per output pixel: colour sums (alpha-weighted when there is alpha), alpha sum, count.
    sums: Vec<u32>,
    counts: Vec<u32>,
}

impl BoxRows {
    fn new(width: u32, k: u32, inc: usize, outc: usize) -> Self {
        let n = width.div_ceil(k) as usize;
        Self {
            k,
            width,
            inc,
            outc,
            sums: vec![0; n * outc],
            counts: vec![0; n],
        }
    }

    fn add(&mut self, row: &[u8]) {
        let (k, inc, outc) = (self.k as usize, self.inc, self.outc);
        for (x, px) in row.chunks_exact(inc).take(self.width as usize).enumerate() {
            let o = x / k;
            self.counts[o] += 1;
            let s = &mut self.sums[o * outc..(o + 1) * outc];
            match inc {
                1 | 3 => {
                    for (acc, v) in s.iter_mut().zip(px) {
                        *acc += *v as u32;
                    }
                }
                // Gray + alpha, or RGBA: colour × alpha, and alpha.
                _ => {
                    let a = px[inc - 1] as u32;
                    for c in 0..3 {
                        s[c] += px[c.min(inc - 2)] as u32 * a;
                    }
                    s[3] += a;
                }
            }
        }
    }

    /// Writes the means into `out` (one output row) and starts the next block row.
    fn emit(&mut self, out: &mut [u8]) {
        let outc = self.outc;
        for (o, n) in self.counts.iter().enumerate() {
            let n = (*n).max(1);
            let s = &self.sums[o * outc..(o + 1) * outc];
            let d = &mut out[o * outc..(o + 1) * outc];
            if outc == 4 {
                let a = s[3];
                for c in 0..3 {
                    d[c] = (s[c] + a / 2).checked_div(a).unwrap_or(0) as u8;
                }
                d[3] = ((a + n / 2) / n) as u8;
            } else {
                for (dv, sv) in d.iter_mut().zip(s) {
                    *dv = ((sv + n / 2) / n) as u8;
                }
            }
        }
        self.sums.fill(0);
        self.counts.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn encode(
        w: u32,
        h: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
        interlace: bool,
    ) -> Vec<u8> {
        if interlace {
            return adam7_rgb8(w, h, data);
        }
        let mut out = Vec::new();
        {
            let mut e = png::Encoder::new(&mut out, w, h);
            e.set_color(color);
            e.set_depth(depth);
            let mut wr = e.write_header().unwrap();
            wr.write_image_data(data).unwrap();
        }
        out
    }

    /// An Adam7-interlaced 8-bit RGB PNG, written by hand (the `png` crate writes none): seven
    /// passes of unfiltered scanlines in one stored zlib block.
    fn adam7_rgb8(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
        const PASSES: [(u32, u32, u32, u32); 7] = [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ];
        let mut raw = Vec::new();
        for (x0, y0, dx, dy) in PASSES {
            let xs: Vec<u32> = (x0..w).step_by(dx as usize).collect();
            if xs.is_empty() {
                continue;
            }
            for y in (y0..h).step_by(dy as usize) {
                raw.push(0);
                for x in &xs {
                    let i = ((y * w + x) * 3) as usize;
                    raw.extend_from_slice(&rgb[i..i + 3]);
                }
            }
        }
        let adler = {
            let (mut a, mut b) = (1u32, 0u32);
            for v in &raw {
                a = (a + *v as u32) % 65521;
                b = (b + a) % 65521;
            }
            (b << 16) | a
        };
        let mut z = vec![0x78, 0x01, 0x01];
        z.extend((raw.len() as u16).to_le_bytes());
        z.extend((!(raw.len() as u16)).to_le_bytes());
        z.extend(&raw);
        z.extend(adler.to_be_bytes());
        let crc = |bytes: &[u8]| {
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
        };
        let chunk = |kind: &[u8], body: &[u8]| {
            let mut c = (body.len() as u32).to_be_bytes().to_vec();
            let typed = [kind, body].concat();
            c.extend(&typed);
            c.extend(crc(&typed).to_be_bytes());
            c
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 1]);
        [
            b"\x89PNG\r\n\x1a\n".to_vec(),
            chunk(b"IHDR", &ihdr),
            chunk(b"IDAT", &z),
            chunk(b"IEND", &[]),
        ]
        .concat()
    }

    fn budget() -> Budget {
        Budget::start(Duration::from_secs(10))
    }

    #[test]
    fn box_means_match_the_whole_decode_averaged() {
        // 9×5 RGB with a gradient: k = 2 gives 5×3, the last column and row averaging fewer.
        let (w, h) = (9u32, 5u32);
        let data: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i * 5) as u8, (i * 3) as u8, 200])
            .collect();
        let file = encode(w, h, png::ColorType::Rgb, png::BitDepth::Eight, &data, false);
        let (r, o) = decode(&file, 2, &budget()).unwrap();
        assert_eq!((r.width, r.height, r.channels, o), (5, 3, 3, 1));
        let at = |x: u32, y: u32, c: usize| data[((y * w + x) * 3) as usize + c] as u32;
        for (ox, oy) in [(0u32, 0u32), (4, 0), (2, 1), (4, 2)] {
            let xs: Vec<u32> = (ox * 2..(ox * 2 + 2).min(w)).collect();
            let ys: Vec<u32> = (oy * 2..(oy * 2 + 2).min(h)).collect();
            let n = (xs.len() * ys.len()) as u32;
            let sum: u32 = ys
                .iter()
                .flat_map(|y| xs.iter().map(move |x| at(*x, *y, 0)))
                .sum();
            let got = r.data[((oy * r.width + ox) * 3) as usize];
            assert_eq!(got as u32, (sum + n / 2) / n, "({ox},{oy})");
        }
        // k = 1 and interlaced files are decoded whole and identical.
        let (whole, _) = decode(&file, 1, &budget()).unwrap();
        assert_eq!(whole.data, data);
        let inter = encode(w, h, png::ColorType::Rgb, png::BitDepth::Eight, &data, true);
        let (r, _) = decode(&inter, 4, &budget()).unwrap();
        assert_eq!((r.width, &r.data), (w, &data), "interlaced: whole, deinterlaced");
    }

    #[test]
    fn sixteen_bits_gray_alpha_and_palettes_become_8_bit_gray_rgb_or_rgba() {
        let gray16: Vec<u8> = [0x1234u16, 0xff00, 0x0000, 0xffff]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let file = encode(
            2,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            &gray16,
            false,
        );
        let (r, _) = decode(&file, 1, &budget()).unwrap();
        assert_eq!((r.channels, r.data), (1, vec![0x12, 0xff, 0x00, 0xff]));
        // Gray + alpha: transparent pixels do not darken the mean.
        let ga = [200u8, 255, 0, 0, 100, 255, 0, 0];
        let file = encode(
            2,
            2,
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            &ga,
            false,
        );
        let (r, _) = decode(&file, 2, &budget()).unwrap();
        assert_eq!(
            (r.width, r.channels, &r.data[..]),
            (1, 4, &[150u8, 150, 150, 128][..])
        );
    }

    #[test]
    fn truncated_files_are_corrupt_not_short() {
        let data = vec![7u8; 64 * 64 * 3];
        let file = encode(64, 64, png::ColorType::Rgb, png::BitDepth::Eight, &data, false);
        for cut in [40, file.len() / 2, file.len() - 13] {
            assert!(
                matches!(decode(&file[..cut], 4, &budget()), Err(PipelineError::Corrupt(_))),
                "cut {cut}"
            );
        }
    }
}
