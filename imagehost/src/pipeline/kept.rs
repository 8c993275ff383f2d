//! Decoded originals kept for a burst of sizes: a byte-bounded LRU of oriented rasters, keyed by
//! the original's content key and the scale it was decoded at. A page of a new post asks for
//! several sizes of each image at once (srcset widths, the feed's and the post's); each size
//! after the first resizes from the kept pixels instead of decoding the original again (a
//! 1200×800 JPEG's full decode is most of a render; a 4000×3000's at 1/2, nearly all of it).
//! JPEGs are kept per DCT scale, PNGs per box factor (the rows are shrunk as they stream);
//! WebP and AVIF stills and a GIF's first frame, always decoded at full size, at scale 1.
//!
//! The lock is held only to look up, insert or evict, never across a decode. Small rasters are
//! not kept (decoding them again is cheap), nor ones over a quarter of the capacity. A takedown
//! forgets every scale of its key.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::raster::Raster;
use crate::metrics::KEPT_PIXELS_BYTES;

/// Rasters smaller than this are decoded again rather than kept.
const SMALLEST: u64 = 256 << 10;

/// A kept raster, with when it was last used.
struct Entry {
    raster: Arc<Raster>,
    bytes: u64,
    used: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<(String, u32), Entry>,
    bytes: u64,
    clock: u64,
}

/// The kept rasters of one node.
pub struct Kept {
    capacity: u64,
    lru: Mutex<Lru>,
}

/// What a render looks up and keeps its decode under.
#[derive(Clone, Copy)]
pub struct KeptAs<'a> {
    pub kept: &'a Kept,
    /// The original's content key (an upload's key, or the one its bytes would have).
    pub key: &'a str,
}

impl Kept {
    /// Keeps up to `capacity` bytes of pixels; 0 keeps none.
    pub fn new(capacity: u64) -> Kept {
        Kept {
            capacity,
            lru: Mutex::new(Lru::default()),
        }
    }

    /// The raster of `key` decoded at 1/`scale`, if kept.
    pub fn get(&self, key: &str, scale: u32) -> Option<Arc<Raster>> {
        let mut lru = self.lru.lock();
        lru.clock += 1;
        let now = lru.clock;
        let e = lru.entries.get_mut(&(key.to_string(), scale))?;
        e.used = now;
        Some(e.raster.clone())
    }

    /// Keeps `raster` as `key` at 1/`scale`, evicting the least recently used past the capacity;
    /// whether it was kept.
    pub fn put(&self, key: &str, scale: u32, raster: Arc<Raster>) -> bool {
        let bytes = raster.data.len() as u64;
        if bytes < SMALLEST || bytes > self.capacity / 4 {
            return false;
        }
        let mut lru = self.lru.lock();
        lru.clock += 1;
        let used = lru.clock;
        if let Some(old) = lru
            .entries
            .insert((key.to_string(), scale), Entry { raster, bytes, used })
        {
            lru.bytes -= old.bytes;
        }
        lru.bytes += bytes;
        while lru.bytes > self.capacity {
            let Some(oldest) = lru
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = lru.entries.remove(&oldest) {
                lru.bytes -= e.bytes;
            }
        }
        KEPT_PIXELS_BYTES.set(lru.bytes as i64);
        true
    }

    /// Forgets every scale of `key`; how many were kept.
    pub fn forget(&self, key: &str) -> usize {
        let mut lru = self.lru.lock();
        let before = lru.entries.len();
        let mut freed = 0;
        lru.entries.retain(|(k, _), e| {
            let keep = k != key;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        lru.bytes -= freed;
        KEPT_PIXELS_BYTES.set(lru.bytes as i64);
        before - lru.entries.len()
    }

    /// Rasters and bytes kept.
    pub fn usage(&self) -> (usize, u64) {
        let lru = self.lru.lock();
        (lru.entries.len(), lru.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(bytes: usize) -> Arc<Raster> {
        Arc::new(Raster {
            width: (bytes / 3) as u32,
            height: 1,
            channels: 3,
            data: vec![0; bytes],
        })
    }

    #[test]
    fn keeps_the_recently_used_within_its_bytes() {
        const MB: usize = 1 << 20;
        let kept = Kept::new(4 * MB as u64);
        // Too small, and over a quarter of the capacity: not kept.
        assert!(!kept.put("small", 1, raster(1000)));
        assert!(!kept.put("huge", 1, raster(MB + 3)));
        assert!(kept.put("a", 1, raster(MB)));
        assert!(kept.put("a", 2, raster(MB / 2)));
        assert!(kept.put("b", 1, raster(MB)));
        assert!(kept.put("c", 1, raster(MB)));
        assert_eq!(kept.usage(), (4, 3 * MB as u64 + MB as u64 / 2));
        // "a" at 1/1 used again: the least recent is now "a" at 1/2.
        assert!(kept.get("a", 1).is_some());
        assert!(kept.get("a", 4).is_none());
        assert!(kept.put("d", 1, raster(MB)));
        assert!(kept.get("a", 2).is_none(), "the least recently used out first");
        // "b" used: "c" is now the least recent.
        assert!(kept.get("b", 1).is_some());
        assert!(kept.put("e", 1, raster(MB)));
        assert!(kept.get("c", 1).is_none(), "then the next least recent");
        assert_eq!(kept.usage(), (4, 4 * MB as u64));
        // Replacing an entry counts its bytes once.
        assert!(kept.put("d", 1, raster(MB)));
        assert_eq!(kept.usage(), (4, 4 * MB as u64));
        // Room for another scale of "b" pushes "a" out; a takedown forgets every scale of "b".
        assert!(kept.put("b", 2, raster(MB / 2)));
        assert!(kept.get("a", 1).is_none());
        assert_eq!(kept.forget("b"), 2);
        assert!(kept.get("b", 1).is_none() && kept.get("b", 2).is_none());
        assert_eq!(kept.usage(), (2, 2 * MB as u64));
        // Capacity 0 keeps nothing.
        assert!(!Kept::new(0).put("a", 1, raster(MB)));
    }

    /// Every size rendered from kept pixels is byte for byte the size rendered from a decode of
    /// its own: a JPEG at every DCT scale, cropped or not, and WebP and AVIF sources (decoded at
    /// full size); each scale of each source is decoded once.
    #[test]
    fn renders_from_kept_pixels_are_the_renders_from_a_decode() {
        use super::super::geometry::Mode;
        use super::super::{av1, encode, render, render_kept, AvifSource, Input, Output, Request, Settings};
        let (w, h) = (1200u32, 800u32);
        let data = (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [(x / 5) as u8, (y / 4) as u8, ((x + y) / 9) as u8]))
            .collect();
        let source = Raster {
            width: w,
            height: h,
            channels: 3,
            data,
        };
        let s = Settings::default();
        let kept = Kept::new(64 << 20);
        // Widths at 1/1, 1/2, 1/4 and 1/8 of the JPEG; a cover crop.
        let asks = [
            (Some(1100), None),
            (Some(700), None),
            (Some(300), None),
            (Some(150), None),
            (Some(90), None),
            (Some(500), Some(500)),
        ];
        // A PNG turned by its eXIf chunk (orientation 6: the kept raster is portrait), and a
        // GIF (asked for as JPEG: its first frame, decoded whole).
        let budget = super::super::Budget::start(s.budget);
        let mut png = encode::png(&source, &budget).expect("png");
        let tiff = &super::super::exif::app1_with_orientation(6)[10..];
        let mut chunk = (tiff.len() as u32).to_be_bytes().to_vec();
        chunk.extend_from_slice(b"eXIf");
        chunk.extend_from_slice(tiff);
        chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
        png.splice(33..33, chunk); // after the signature and IHDR
        let small = Raster {
            width: 600,
            height: 400,
            channels: 4,
            data: (0..400u32)
                .flat_map(|y| (0..600u32).flat_map(move |x| [(x / 3) as u8, (y / 2) as u8, 90, 255]))
                .collect(),
        };
        let mut gif = Vec::new();
        image::codecs::gif::GifEncoder::new_with_speed(&mut gif, 30)
            .encode(&small.data, 600, 400, image::ExtendedColorType::Rgba8)
            .expect("gif");
        // Box factors, from the smaller shrink of either orientation with the 1.5× margin: 1, 2,
        // 2 again (resized from the kept 1/2), 5 (under the smallest kept), and 1 again.
        let png_asks = [
            (Some(700), None),
            (Some(250), None),
            (Some(240), None),
            (Some(90), None),
            (Some(300), Some(300)),
        ];
        let sources = [
            ("DQmPng", Input::Png, png, &png_asks[..]),
            ("DQmGif", Input::Gif, gif, &asks[2..4]),
            (
                "DQmJpeg",
                Input::Jpeg,
                encode::jpeg(&source, 90).expect("jpeg"),
                &asks[..],
            ),
            (
                "DQmWebp",
                Input::Webp,
                encode::webp(&source, &s).expect("webp"),
                &asks[1..3],
            ),
            (
                "DQmAvif",
                Input::Avif,
                av1::encode(&source, 80, 10).expect("avif"),
                &asks[4..],
            ),
        ];
        for (key, input, bytes, asks) in &sources {
            let as_ = KeptAs { kept: &kept, key };
            for round in 0..2 {
                for &(width, height) in asks.iter() {
                    for format in [Output::Jpeg, Output::Webp] {
                        let req = Request {
                            width,
                            height,
                            mode: Mode::Cover,
                            format,
                            avif: AvifSource::AsRequested,
                        };
                        let fresh = render(bytes, *input, &req, &s).expect("render");
                        let from_kept = render_kept(bytes, *input, &req, &s, Some(as_)).expect("kept");
                        assert!(
                            fresh.bytes == from_kept.bytes,
                            "{key} round {round}, {width:?}×{height:?} {format:?}"
                        );
                    }
                }
            }
        }
        // The JPEG's 1/1 and 1/2 were kept (1/4, 300×200, and 1/8 are under the smallest kept),
        // and the WebP's and the AVIF's full size; the PNG's whole and halved rows (its other
        // factors make rasters under the smallest kept), and the GIF's frame.
        let full = 1200 * 800 * 3;
        assert_eq!(kept.usage(), (7, 4 * full + 2 * 600 * 400 * 3 + 600 * 400 * 4));
        assert_eq!(kept.forget("DQmAvif"), 1);
        assert_eq!(kept.forget("DQmPng"), 2);
    }
}
