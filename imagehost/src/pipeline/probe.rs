//! What a file's headers say, read before anything is decoded and cheap enough for the request's
//! own task: the size, and what the decoder will hold in memory for it (samples per pixel and
//! their width, libjpeg-turbo's whole-image coefficient buffer for progressive JPEGs, PNG
//! interlacing). The output is bounded and the job's memory estimated from this alone.

use std::io::Cursor;

use image::ImageDecoder;

use super::{check_size, Input, PipelineError, Settings};

/// One input, as its headers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Jpeg {
        /// Bytes libjpeg-turbo keeps for the whole image's coefficients (multi-scan files only;
        /// 0 for a single scan, decoded a row of blocks at a time).
        coefficients: u64,
        /// Decoded samples per pixel (1 grey, 3 colour, 4 CMYK).
        channels: u32,
    },
    Png {
        /// Adam7: decoded whole; otherwise streamed a row at a time.
        interlaced: bool,
    },
    /// Frames are composited on a canvas of the logical screen.
    Gif,
    Webp,
    Avif {
        /// Bytes of the AV1 pictures dav1d returns (colour and alpha planes).
        planes: u64,
    },
}

/// Reads `data`'s headers (already sniffed as `input`) and checks the size against the limits.
pub fn probe(data: &[u8], input: Input, s: &Settings) -> Result<Probe, PipelineError> {
    let p = match input {
        Input::Jpeg => jpeg(data)?,
        Input::Png => png(data)?,
        Input::Gif => gif(data)?,
        Input::Webp => webp(data)?,
        Input::Avif => {
            let (width, height, planes) = super::avif::probe(data)?;
            Probe {
                width,
                height,
                kind: Kind::Avif { planes },
            }
        }
    };
    check_size(s, p.width as u64, p.height as u64)?;
    Ok(p)
}

fn corrupt(what: &str) -> PipelineError {
    PipelineError::Corrupt(format!("{what}: unreadable header"))
}

fn jpeg(data: &[u8]) -> Result<Probe, PipelineError> {
    let f = super::shrink::frame_of(data).ok_or_else(|| corrupt("jpeg"))?;
    let (hmax, vmax) = f.sampling.iter().fold((1u64, 1u64), |(h, v), &(ch, cv)| {
        (h.max(ch as u64), v.max(cv as u64))
    });
    let (w, h) = (f.width as u64, f.height as u64);
    // libjpeg-turbo's full-image buffer: every 8×8 block of every component, 64 coefficients of
    // two bytes, rows of blocks padded to whole MCUs.
    let coefficients = if f.multi_scan {
        f.sampling
            .iter()
            .map(|&(ch, cv)| {
                let bw = (w * ch as u64)
                    .div_ceil(hmax)
                    .div_ceil(8)
                    .next_multiple_of(ch as u64);
                let bh = (h * cv as u64)
                    .div_ceil(vmax)
                    .div_ceil(8)
                    .next_multiple_of(cv as u64);
                bw * bh * 128
            })
            .sum()
    } else {
        0
    };
    Ok(Probe {
        width: f.width as u32,
        height: f.height as u32,
        kind: Kind::Jpeg {
            coefficients,
            channels: if f.sampling.len() == 1 {
                1
            } else {
                f.sampling.len().min(4) as u32
            },
        },
    })
}

/// IHDR is the first chunk: signature (8), length (4), type (4), width, height, depth, colour
/// type, compression, filter, interlace.
fn png(data: &[u8]) -> Result<Probe, PipelineError> {
    let ihdr = data
        .get(8..29)
        .filter(|h| &h[4..8] == b"IHDR")
        .ok_or_else(|| corrupt("png"))?;
    let be = |i: usize| u32::from_be_bytes([ihdr[i], ihdr[i + 1], ihdr[i + 2], ihdr[i + 3]]);
    Ok(Probe {
        width: be(8),
        height: be(12),
        kind: Kind::Png {
            interlaced: ihdr[20] == 1,
        },
    })
}

/// The logical screen: bytes 6–9 after the `GIF8?a` signature.
fn gif(data: &[u8]) -> Result<Probe, PipelineError> {
    let screen = data.get(6..10).ok_or_else(|| corrupt("gif"))?;
    Ok(Probe {
        width: u16::from_le_bytes([screen[0], screen[1]]) as u32,
        height: u16::from_le_bytes([screen[2], screen[3]]) as u32,
        kind: Kind::Gif,
    })
}

fn webp(data: &[u8]) -> Result<Probe, PipelineError> {
    let d = image::codecs::webp::WebPDecoder::new(Cursor::new(data))
        .map_err(|e| PipelineError::Corrupt(format!("webp: {e}")))?;
    let (width, height) = d.dimensions();
    Ok(Probe {
        width,
        height,
        kind: Kind::Webp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ihdr(w: u32, h: u32, depth: u8, colour: u8, interlace: u8) -> Vec<u8> {
        let mut f = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        f.extend(w.to_be_bytes());
        f.extend(h.to_be_bytes());
        f.extend([depth, colour, 0, 0, interlace]);
        f.extend([0; 4]);
        f
    }

    #[test]
    fn headers_table() {
        let s = Settings::default();
        let p = probe(&ihdr(7000, 7000, 16, 6, 0), Input::Png, &s).expect("png");
        assert_eq!(
            (p.width, p.height, p.kind),
            (7000, 7000, Kind::Png { interlaced: false })
        );
        let p = probe(&ihdr(10, 20, 8, 2, 1), Input::Png, &s).expect("png");
        assert_eq!(p.kind, Kind::Png { interlaced: true });
        assert!(matches!(
            probe(&ihdr(20_000, 1, 8, 2, 0), Input::Png, &s),
            Err(PipelineError::TooLarge { .. })
        ));
        assert!(matches!(
            probe(&ihdr(0, 1, 8, 2, 0), Input::Png, &s),
            Err(PipelineError::Corrupt(_))
        ));
        assert!(probe(b"\x89PNG\r\n\x1a\n", Input::Png, &s).is_err());
        let p = probe(b"GIF89a\x88\x13\x88\x13\0\0\0", Input::Gif, &s).expect("gif");
        assert_eq!((p.width, p.height, p.kind), (5000, 5000, Kind::Gif));
        assert!(probe(b"GIF89a\x01", Input::Gif, &s).is_err());
    }
}
