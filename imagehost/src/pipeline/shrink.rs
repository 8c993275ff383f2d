//! Shrink-on-load JPEG decoding for thumbnails: a baseline or progressive JPEG decoded straight
//! to 1/2, 1/4 or 1/8 of its size, keeping only the low-frequency coefficients each output pixel
//! needs and stepping over the rest without computing them (libjpeg-turbo computes and stores
//! all 64 of every block unless it scales by 1/8, and keeps a whole-image coefficient buffer for
//! a progressive file); a progressive file's scans that hold none of them are not read
//! (`shrink/progressive.rs`). Chroma is decoded at the luma grid, so there is no upsampling step.
//! Files it does not take (arithmetic, CMYK, RGB, 12-bit, odd sampling, a sequential file in
//! several scans) answer `None` and go to libjpeg-turbo, and so do damaged ones.

mod huffman;
mod idct;
mod markers;
mod progressive;
pub use markers::{frame_of, Frame};

use huffman::{Bits, Class, Table};
use idct::Idct;
use markers::{Component, Header};

use super::raster::Raster;

/// Zigzag index → natural (row-major) index, T.81 figure A.6.
const NATURAL: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
    14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39,
    46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Decodes `data` at 1/`denom` of its size (`denom` 2, 4 or 8), the size libjpeg-turbo gives:
/// ceil(side / denom). `None`: a file this decoder does not take, left to libjpeg-turbo, or
/// one above `max_pixels` (the caller's limits also apply before this is called).
pub fn decode(data: &[u8], denom: u32, max_pixels: u64) -> Option<Raster> {
    let n = match denom {
        2 => 4,
        4 => 2,
        8 => 1,
        _ => return None,
    };
    let mut header = markers::read(data)?;
    if header.width as u64 * header.height as u64 > max_pixels {
        return None;
    }
    let layout = Layout::new(&header, n);
    let mut planes = if header.progressive {
        progressive::decode(&layout, &mut header, data)?
    } else {
        layout.decode(&header, data.get(header.scan..)?)?
    };
    let (w, h) = (
        (header.width as usize).div_ceil(denom as usize),
        (header.height as usize).div_ceil(denom as usize),
    );
    let stride = layout.plane_width;
    Some(if planes.len() == 1 {
        let mut grey = planes.swap_remove(0);
        crop(&mut grey, stride, w, h);
        Raster {
            width: w as u32,
            height: h as u32,
            channels: 1,
            data: grey,
        }
    } else {
        Raster {
            width: w as u32,
            height: h as u32,
            channels: 3,
            data: ycc_to_rgb(&planes, stride, w, h),
        }
    })
}

/// Keeps the top-left `w`×`h` of a plane `stride` wide, in place.
fn crop(plane: &mut Vec<u8>, stride: usize, w: usize, h: usize) {
    for y in 1..h {
        plane.copy_within(y * stride..y * stride + w, y * w);
    }
    plane.truncate(w * h);
}

/// JFIF's full-range BT.601 to RGB, in 16-bit fixed point.
fn ycc_to_rgb(p: &[Vec<u8>], stride: usize, w: usize, h: usize) -> Vec<u8> {
    const ONE: i32 = 1 << 16;
    let f = |x: f64| (x * ONE as f64).round() as i32;
    let (cr_r, cb_g, cr_g, cb_b) = (f(1.402), f(0.344_136), f(0.714_136), f(1.772));
    let mut out = vec![0u8; w * h * 3];
    let clamp = |v: i32| (v >> 16).clamp(0, 255) as u8;
    for (row, line) in out.chunks_exact_mut(w * 3).enumerate() {
        let at = row * stride;
        let (y, cb, cr) = (&p[0][at..at + w], &p[1][at..at + w], &p[2][at..at + w]);
        for (((px, &y), &cb), &cr) in line.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
            let y = ((y as i32) << 16) | (ONE / 2);
            let (cb, cr) = (cb as i32 - 128, cr as i32 - 128);
            px[0] = clamp(y + cr_r * cr);
            px[1] = clamp(y - cb_g * cb - cr_g * cr);
            px[2] = clamp(y + cb_b * cb);
        }
    }
    out
}

/// Where each component's blocks go and how much of each is read.
struct Layout {
    mcus_x: usize,
    mcus_y: usize,
    plane_width: usize,
    plane_height: usize,
    parts: Vec<Part>,
}

/// One component: its block counts per MCU, output pixels per block, and how far into the
/// zigzag order its coefficients are needed.
struct Part {
    h: usize,
    v: usize,
    out_w: usize,
    out_h: usize,
    last_needed: usize,
    idct: Idct,
}

impl Layout {
    fn new(header: &Header, n: usize) -> Layout {
        let hmax = header.components.iter().map(|c| c.h).max().unwrap_or(1) as usize;
        let vmax = header.components.iter().map(|c| c.v).max().unwrap_or(1) as usize;
        let (w, h) = (header.width as usize, header.height as usize);
        let (mcus_x, mcus_y) = (w.div_ceil(8 * hmax), h.div_ceil(8 * vmax));
        let parts = header
            .components
            .iter()
            .map(|c: &Component| {
                let (ch, cv) = (c.h as usize, c.v as usize);
                let (out_w, out_h) = (n * hmax / ch, n * vmax / cv);
                let last_needed = (0..64)
                    .filter(|&k| {
                        let z = NATURAL[k] as usize;
                        z % 8 < out_w && z / 8 < out_h
                    })
                    .max()
                    .unwrap_or(0);
                Part {
                    h: ch,
                    v: cv,
                    out_w,
                    out_h,
                    last_needed,
                    idct: Idct::new(out_w, out_h),
                }
            })
            .collect();
        Layout {
            mcus_x,
            mcus_y,
            plane_width: mcus_x * hmax * n,
            plane_height: mcus_y * vmax * n,
            parts,
        }
    }

    /// Every MCU of the scan into one plane per component. `None` for a table libjpeg refuses
    /// and for damaged data (a bit pattern that is no code, data that ends too soon), which
    /// libjpeg-turbo then refuses as before rather than this decoder guessing.
    fn decode(&self, header: &Header, scan: &[u8]) -> Option<Vec<Vec<u8>>> {
        let tables = |specs: &[Option<huffman::Spec>; 4], class| -> Option<Vec<Option<Table>>> {
            specs
                .iter()
                .map(|s| match s {
                    None => Some(None),
                    Some(s) => Table::new(s, class).ok().map(Some),
                })
                .collect()
        };
        let dc = tables(&header.dc, Class::Dc)?;
        let ac = tables(&header.ac, Class::Ac)?;
        let quant: Vec<[f32; 64]> = header
            .quant
            .iter()
            .map(|q| q.map_or([0.0; 64], |q| q.map(f32::from)))
            .collect();
        // Each component's tables, looked up once rather than per MCU.
        let coding: Vec<(&Table, &Table, &[f32; 64])> = header
            .components
            .iter()
            .map(|c| Some((dc[c.dc].as_ref()?, ac[c.ac].as_ref()?, &quant[c.quant])))
            .collect::<Option<_>>()?;
        let (data, segments) = unstuff(scan);
        let mut planes: Vec<Vec<u8>> = self
            .parts
            .iter()
            .map(|_| vec![0u8; self.plane_width * self.plane_height])
            .collect();
        let restart = header.restart as usize;
        let mut coef = [0f32; 64];
        let mut preds = [0i32; 3];
        let mut bits = Bits::new(&data, segments[0].0, segments[0].1);
        let mut mcu = 0usize;
        for my in 0..self.mcus_y {
            for mx in 0..self.mcus_x {
                if restarted(&mut bits, &data, &segments, restart, mcu)? {
                    preds = [0; 3];
                }
                mcu += 1;
                for (i, (part, &(dc, ac, q))) in self.parts.iter().zip(&coding).enumerate() {
                    for by in 0..part.v {
                        for bx in 0..part.h {
                            let x = (mx * part.h + bx) * part.out_w;
                            let y = (my * part.v + by) * part.out_h;
                            let at = y * self.plane_width + x;
                            let out = &mut planes[i][at..];
                            let pred = &mut preds[i];
                            if block(&mut bits, dc, ac, pred, part.last_needed, q, &mut coef) {
                                part.idct.block(&coef, out, self.plane_width);
                            } else {
                                part.idct.flat(coef[0], out, self.plane_width);
                            }
                            for &z in &NATURAL[..=part.last_needed] {
                                coef[z as usize] = 0.0;
                            }
                        }
                    }
                }
            }
        }
        bits.sound().then_some(planes)
    }
}

/// One block: the DC difference, the AC coefficients up to zigzag index `last` dequantised into
/// `coef` (natural order), the rest stepped over. True when an AC coefficient was stored.
#[inline(always)]
fn block(
    bits: &mut Bits,
    dc: &Table,
    ac: &Table,
    pred: &mut i32,
    last: usize,
    q: &[f32; 64],
    coef: &mut [f32; 64],
) -> bool {
    bits.refill();
    let s = bits.decode(dc) as u32;
    *pred = pred.wrapping_add(bits.receive(s));
    coef[0] = *pred as f32 * q[0];
    let mut k = 1usize;
    let mut any = false;
    while k <= last {
        bits.refill();
        let rs = bits.decode(ac);
        let (run, size) = ((rs >> 4) as usize, (rs & 15) as u32);
        if size == 0 {
            if run != 15 {
                return any;
            }
            k += 16;
            continue;
        }
        k += run;
        let value = bits.receive(size);
        if k <= last {
            coef[NATURAL[k] as usize] = value as f32 * q[k];
            any = true;
        }
        k += 1;
    }
    // Two steps per refill: a step takes at most 26 bits (16 of code, 10 of magnitude).
    let mut k = k as u32;
    while k < 64 {
        bits.refill();
        k = bits.skip_pair(ac, k);
        if k < 64 {
            k = bits.skip_pair(ac, k);
        }
    }
    any
}

/// Moves `bits` to its next segment when MCU `mcu` starts a restart interval (`restart` MCUs
/// each, 0: none): `Some(true)` then, and the caller resets what carries between MCUs. `None`
/// for an interval cut short or a missing restart marker, which libjpeg-turbo then judges.
fn restarted<'a>(
    bits: &mut Bits<'a>,
    data: &'a [u8],
    segments: &[(usize, usize)],
    restart: usize,
    mcu: usize,
) -> Option<bool> {
    if restart == 0 || mcu == 0 || mcu % restart != 0 {
        return Some(false);
    }
    let &(start, end) = segments.get(mcu / restart)?;
    if !bits.sound() {
        return None;
    }
    *bits = Bits::new(data, start, end);
    Some(true)
}

/// The scan's entropy-coded bytes with stuffing removed, split at its restart markers, each
/// part followed by 8 zero bytes (what a reader past its end sees); the scan ends at any other
/// marker. Returns the bytes and each part's (start, end).
fn unstuff(scan: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out = Vec::with_capacity(scan.len() + 16);
    let mut segments = Vec::new();
    let mut start = 0;
    let mut i = 0;
    loop {
        let Some(j) = memchr::memchr(0xff, &scan[i..]) else {
            out.extend_from_slice(&scan[i..]);
            break;
        };
        out.extend_from_slice(&scan[i..i + j]);
        let mut m = i + j + 1;
        while scan.get(m) == Some(&0xff) {
            m += 1;
        }
        match scan.get(m) {
            Some(0) => out.push(0xff),
            Some(0xd0..=0xd7) => {
                segments.push((start, out.len()));
                out.extend([0; 8]);
                start = out.len();
            }
            _ => break,
        }
        i = m + 1;
    }
    segments.push((start, out.len()));
    out.extend([0; 8]);
    (out, segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstuffing_splits_at_restarts_and_stops_at_other_markers() {
        let scan = [
            1, 0xff, 0x00, 2, 0xff, 0xd0, 3, 0xff, 0xff, 0xd1, 4, 0xff, 0xd9, 5,
        ];
        let (data, segs) = unstuff(&scan);
        let part = |(s, e): (usize, usize)| data[s..e].to_vec();
        let parts: Vec<Vec<u8>> = segs.iter().map(|&s| part(s)).collect();
        assert_eq!(parts, [vec![1, 0xff, 2], vec![3], vec![4]]);
        for &(_, e) in &segs {
            assert_eq!(data[e..e + 8], [0; 8], "zeros after each part");
        }
        let (data, segs) = unstuff(&[7, 8, 0xff]);
        assert_eq!((&data[..2], segs), (&[7u8, 8][..], vec![(0, 2)]));
    }

    #[test]
    fn the_zigzag_reaches_each_reduced_block_where_expected() {
        let last = |w: usize, h: usize| {
            (0..64)
                .filter(|&k| (NATURAL[k] as usize % 8) < w && (NATURAL[k] as usize / 8) < h)
                .max()
        };
        assert_eq!(last(1, 1), Some(0));
        assert_eq!(last(2, 2), Some(4));
        assert_eq!(last(4, 4), Some(24));
        assert_eq!(last(8, 8), Some(63));
        assert_eq!(last(4, 2), Some(13));
        let mut seen = NATURAL.to_vec();
        seen.sort_unstable();
        assert_eq!(seen, (0..64).collect::<Vec<u8>>(), "a permutation");
    }
}
