//! Progressive JPEGs for the shrink decoder: every scan is located first (a search for its
//! ending marker, nothing decoded); then only the scans the output size needs are decoded: those
//! holding a block's low coefficients, and those whose nonzero history a needed refinement scan
//! reads. Each block keeps only its low coefficients, plus one bit per higher coefficient saying
//! whether it is nonzero (all a refinement scan needs of it). At 1/8 every luma AC scan is
//! skipped unread; at 1/4 and 1/2 no coefficient buffer the size of the image is ever made.

mod refine;
mod scan;

use std::ops::Range;

use super::huffman::{Class, Table};
use super::markers::{self, Header};
use super::{unstuff, Layout, NATURAL};
use scan::{Kind, Store};

/// Scans allowed: libjpeg-turbo is given the same limit (decode.rs), against the many-scans
/// CPU bomb; a file with more goes to it and is refused there as before.
const SCAN_LIMIT: usize = 500;

/// A scan's header: its components (indices into the frame's), their tables, the band of
/// coefficients (zigzag `ss..=se`) and the successive approximation bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanHeader {
    pub comps: Vec<usize>,
    /// (DC, AC) table ids per component of the scan.
    pub tables: Vec<(usize, usize)>,
    pub ss: u8,
    pub se: u8,
    pub ah: u8,
    pub al: u8,
}

/// What lies between the first SOS and EOI, in file order.
enum Event {
    Tables(Range<usize>),
    Quant(Range<usize>),
    Restart(u16),
    Scan(ScanHeader, Range<usize>),
}

/// The planes of a progressive file (as `Layout::decode` gives a sequential one), or `None`
/// for anything this decoder leaves to libjpeg-turbo: damaged, truncated, odd progressions.
pub(super) fn decode(layout: &Layout, header: &mut Header, data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let events = locate(
        data,
        header.scan,
        &header.components.iter().map(|c| c.id).collect::<Vec<_>>(),
    )?;
    let keep: Vec<usize> = layout.parts.iter().map(|p| p.last_needed + 1).collect();
    let scans: Vec<&ScanHeader> = events
        .iter()
        .filter_map(|e| match e {
            Event::Scan(s, _) => Some(s),
            _ => None,
        })
        .collect();
    if scans.len() > SCAN_LIMIT {
        return None;
    }
    let mut needed = needed(&scans, &keep).into_iter();
    let mut stores: Vec<Store> = layout
        .parts
        .iter()
        .zip(&keep)
        .map(|(p, &k)| Store::new(layout.mcus_x * p.h, layout.mcus_y * p.v, k))
        .collect();
    // Quantisation tables are latched at each component's first scan, as libjpeg does.
    let mut latched: Vec<Option<[u16; 64]>> = vec![None; header.components.len()];
    for event in &events {
        match event {
            Event::Tables(r) => markers::tables(&data[r.clone()], header)?,
            Event::Quant(r) => markers::quant(&data[r.clone()], header)?,
            Event::Restart(n) => header.restart = *n,
            Event::Scan(s, r) => {
                for &c in &s.comps {
                    let q = header.components[c].quant;
                    latched[c] = latched[c].or(header.quant[q]);
                }
                if needed.next()? {
                    let geometry = scan::Geometry::of(layout, header, s);
                    let kind = kind(header, s)?;
                    let (bytes, segments) = unstuff(&data[r.clone()]);
                    geometry.run(&kind, s, &mut stores, &bytes, &segments, header.restart as usize)?;
                }
            }
        }
    }
    let quant = latched.into_iter().collect::<Option<Vec<_>>>()?;
    Some(planes(layout, &stores, &quant))
}

/// Builds the Huffman tables a scan reads: DC for a first DC scan, AC for an AC scan, none for
/// a DC refinement (its bits are raw).
fn kind(header: &Header, s: &ScanHeader) -> Option<Kind> {
    let table = |spec: &Option<super::huffman::Spec>, class| Table::new(spec.as_ref()?, class).ok();
    Some(match (s.ss, s.ah) {
        (0, 0) => Kind::DcFirst(
            s.tables
                .iter()
                .map(|&(dc, _)| table(&header.dc[dc], Class::Dc))
                .collect::<Option<_>>()?,
        ),
        (0, _) => Kind::DcRefine,
        (_, 0) => Kind::AcFirst(table(&header.ac[s.tables[0].1], Class::Ac)?),
        _ => {
            let t = table(&header.ac[s.tables[0].1], Class::Ac)?;
            let steps = refine::Steps::new(&t);
            Kind::AcRefine(t, steps)
        }
    })
}

/// Which scans must be decoded, walking back from the last: a scan is needed when it holds a
/// coefficient kept for one of its components (`keep[c]`: zigzag 0..keep), or one whose
/// nonzero history a later needed AC refinement reads (that refinement's whole band).
pub fn needed(scans: &[&ScanHeader], keep: &[usize]) -> Vec<bool> {
    let bits = |lo: u8, hi: u8| -> u64 {
        let top = if hi >= 63 {
            u64::MAX
        } else {
            (1u64 << (hi + 1)) - 1
        };
        top & !((1u64 << lo) - 1)
    };
    let mut need: Vec<u64> = keep.iter().map(|&k| bits(0, (k.max(1) - 1) as u8)).collect();
    let mut out: Vec<bool> = scans
        .iter()
        .rev()
        .map(|s| {
            let band = bits(s.ss, s.se.max(s.ss));
            let wanted = s.comps.iter().any(|&c| need[c] & band != 0);
            if wanted && s.ss > 0 && s.ah > 0 {
                for &c in &s.comps {
                    need[c] |= band;
                }
            }
            wanted
        })
        .collect();
    out.reverse();
    out
}

/// Walks the markers from the first SOS to EOI, locating each scan's entropy-coded data.
/// `None`: no EOI (a truncated file), a second frame, a DNL, or a scan header libjpeg refuses.
fn locate(data: &[u8], from: usize, ids: &[u8]) -> Option<Vec<Event>> {
    let mut events = Vec::new();
    let mut pos = from;
    loop {
        if *data.get(pos)? != 0xff {
            return None;
        }
        while *data.get(pos)? == 0xff {
            pos += 1;
        }
        let marker = data[pos];
        pos += 1;
        if marker == 0xd9 {
            return Some(events);
        }
        // A stray restart, a second frame, DNL, or anything odd: libjpeg-turbo's to judge.
        if matches!(marker, 0x00 | 0x01 | 0xd0..=0xd8 | 0xc0..=0xc3 | 0xc5..=0xcf | 0xdc) {
            return None;
        }
        let len = u16::from_be_bytes([*data.get(pos)?, *data.get(pos + 1)?]) as usize;
        let body = pos + 2..pos.checked_add(len)?;
        data.get(body.clone())?;
        pos = body.end;
        events.push(match marker {
            0xc4 => Event::Tables(body),
            0xdb => Event::Quant(body),
            0xdd => Event::Restart(u16::from_be_bytes([
                *data.get(body.start)?,
                *data.get(body.start + 1)?,
            ])),
            0xda => {
                let header = scan_header(&data[body], ids)?;
                let end = scan_end(data, pos);
                let range = pos..end;
                pos = end;
                Event::Scan(header, range)
            }
            _ => continue,
        });
        if events.len() > 4 * SCAN_LIMIT {
            return None;
        }
    }
}

/// Where a scan's entropy-coded data ends: at the first marker other than a restart (or the
/// file's end).
fn scan_end(data: &[u8], start: usize) -> usize {
    let mut i = start;
    loop {
        let Some(j) = memchr::memchr(0xff, &data[i..]) else {
            return data.len();
        };
        let mut m = i + j + 1;
        while data.get(m) == Some(&0xff) {
            m += 1;
        }
        match data.get(m) {
            Some(0) | Some(0xd0..=0xd7) => i = m + 1,
            _ => return i + j,
        }
    }
}

/// An SOS segment of a progressive frame, with libjpeg's checks (jdphuff.c's start pass):
/// components in frame order, a DC band alone or one component's AC band, each refinement one
/// bit below the last.
pub fn scan_header(b: &[u8], ids: &[u8]) -> Option<ScanHeader> {
    let n = *b.first()? as usize;
    if n == 0 || n > ids.len() || b.len() != 1 + 2 * n + 3 {
        return None;
    }
    let (mut comps, mut tables) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (id, t) = (b[1 + 2 * i], b[2 + 2 * i]);
        let c = ids.iter().position(|&x| x == id)?;
        if comps.last().is_some_and(|&last| c <= last) {
            return None;
        }
        let (dc, ac) = ((t >> 4) as usize, (t & 15) as usize);
        if dc > 3 || ac > 3 {
            return None;
        }
        comps.push(c);
        tables.push((dc, ac));
    }
    let (ss, se, a) = (b[1 + 2 * n], b[2 + 2 * n], b[3 + 2 * n]);
    let (ah, al) = (a >> 4, a & 15);
    let band_ok = if ss == 0 {
        se == 0
    } else {
        ss <= se && se <= 63 && n == 1
    };
    let approx_ok = (ah == 0 || al + 1 == ah) && al <= 13;
    (band_ok && approx_ok).then_some(ScanHeader {
        comps,
        tables,
        ss,
        se,
        ah,
        al,
    })
}

/// The kept coefficients dequantised through the reduced inverse DCTs, one plane per
/// component at the luma grid, as the sequential decoder writes them.
fn planes(layout: &Layout, stores: &[Store], quant: &[[u16; 64]]) -> Vec<Vec<u8>> {
    let mut coef = [0f32; 64];
    layout
        .parts
        .iter()
        .zip(stores)
        .zip(quant)
        .map(|((part, store), q)| {
            let mut plane = vec![0u8; layout.plane_width * layout.plane_height];
            for by in 0..store.bh {
                for bx in 0..store.bw {
                    let at = by * part.out_h * layout.plane_width + bx * part.out_w;
                    let values = store.block(by * store.bw + bx);
                    let mut any = false;
                    for (k, &v) in values.iter().enumerate() {
                        coef[NATURAL[k] as usize] = v as f32 * q[k] as f32;
                        any |= k > 0 && v != 0;
                    }
                    let out = &mut plane[at..];
                    if any {
                        part.idct.block(&coef, out, layout.plane_width);
                    } else {
                        part.idct.flat(coef[0], out, layout.plane_width);
                    }
                }
            }
            plane
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(comps: &[usize], ss: u8, se: u8, ah: u8, al: u8) -> ScanHeader {
        ScanHeader {
            comps: comps.to_vec(),
            tables: vec![(0, 0); comps.len()],
            ss,
            se,
            ah,
            al,
        }
    }

    /// libjpeg's jpeg_simple_progression for YCbCr.
    fn libjpeg_default() -> Vec<ScanHeader> {
        vec![
            scan(&[0, 1, 2], 0, 0, 0, 1),
            scan(&[0], 1, 5, 0, 2),
            scan(&[2], 1, 63, 0, 1),
            scan(&[1], 1, 63, 0, 1),
            scan(&[0], 6, 63, 0, 2),
            scan(&[0], 1, 63, 2, 1),
            scan(&[0, 1, 2], 0, 0, 1, 0),
            scan(&[2], 1, 63, 1, 0),
            scan(&[1], 1, 63, 1, 0),
            scan(&[0], 1, 63, 1, 0),
        ]
    }

    #[test]
    fn which_scans_each_output_size_needs() {
        let default = libjpeg_default();
        let refs: Vec<&ScanHeader> = default.iter().collect();
        let all = vec![true; 10];
        // 1/8 of 4:2:0: luma keeps its DC only, chroma 2×2 of each block (zigzag 0..=4).
        let no_luma_ac = vec![true, false, true, true, false, false, true, true, true, false];
        let cases: Vec<(&str, &[usize], Vec<bool>)> = vec![
            ("1/8 4:2:0", &[1, 5, 5], no_luma_ac),
            (
                "1/8 4:4:4, DC only",
                &[1, 1, 1],
                vec![true, false, false, false, false, false, true, false, false, false],
            ),
            // The luma refinement of 1..63 reads the history of 6..63: its first scan too.
            ("1/4 4:2:0", &[5, 25, 25], all.clone()),
            ("1/2 4:4:4", &[25, 25, 25], all),
        ];
        for (what, keep, want) in cases {
            assert_eq!(needed(&refs, keep), want, "{what}");
        }
        // Without successive approximation (mozjpeg's kind of script), a band above what is
        // kept is skipped.
        let plain = [
            scan(&[0, 1, 2], 0, 0, 0, 0),
            scan(&[0], 1, 2, 0, 0),
            scan(&[0], 3, 8, 0, 0),
            scan(&[0], 9, 63, 0, 0),
            scan(&[1], 1, 63, 0, 0),
        ];
        let refs: Vec<&ScanHeader> = plain.iter().collect();
        assert_eq!(needed(&refs, &[5, 5, 5]), [true, true, true, false, true]);
        assert_eq!(needed(&refs, &[1, 1, 1]), [true, false, false, false, false]);
    }

    #[test]
    fn scan_headers_libjpeg_refuses_are_refused() {
        let ids = [1, 2, 3];
        let sos = |comps: &[u8], ss: u8, se: u8, a: u8| {
            let mut b = vec![comps.len() as u8];
            for &c in comps {
                b.extend([c, 0x00]);
            }
            b.extend([ss, se, a]);
            b
        };
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("DC first, all", sos(&[1, 2, 3], 0, 0, 0x01), true),
            ("AC first, one", sos(&[1], 1, 5, 0x02), true),
            ("AC refine", sos(&[3], 1, 63, 0x10), true),
            ("DC with AC band", sos(&[1], 0, 5, 0x00), false),
            ("AC of two components", sos(&[1, 2], 1, 5, 0x00), false),
            ("band backwards", sos(&[1], 9, 5, 0x00), false),
            ("band past 63", sos(&[1], 1, 64, 0x00), false),
            ("refinement of two bits", sos(&[1], 1, 63, 0x20), false),
            ("Al over 13", sos(&[1], 1, 63, 0x0e), false),
            ("unknown component", sos(&[9], 1, 63, 0x00), false),
            ("out of frame order", sos(&[2, 1], 0, 0, 0x00), false),
            ("repeated component", sos(&[1, 1], 0, 0, 0x00), false),
        ];
        for (what, b, ok) in cases {
            assert_eq!(scan_header(&b, &ids).is_some(), ok, "{what}");
        }
        assert!(scan_header(&[], &ids).is_none());
        assert!(scan_header(&sos(&[1], 1, 5, 0)[..5], &ids).is_none(), "cut short");
    }

    #[test]
    fn a_scan_ends_at_the_first_marker_not_a_restart() {
        let data = [9, 1, 0xff, 0x00, 2, 0xff, 0xd3, 3, 0xff, 0xff, 0xc4, 0, 0];
        assert_eq!(scan_end(&data, 1), 8);
        assert_eq!(scan_end(&[1, 2, 3], 0), 3, "no marker: the data's end");
    }
}
