//! The marker segments of a JPEG up to its first scan, for the shrink decoder: accepts only
//! what it can decode exactly (baseline, extended or progressive Huffman, 8-bit, grey or YCbCr,
//! sampling 1 or 2; a sequential file in one scan with every component) and answers `None` for
//! anything else, which then goes to libjpeg-turbo as before.

use super::huffman::Spec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub id: u8,
    pub h: u8,
    pub v: u8,
    pub quant: usize,
    pub dc: usize,
    pub ac: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub width: u16,
    pub height: u16,
    pub components: Vec<Component>,
    /// Quantisation tables in zigzag order.
    pub quant: [Option<[u16; 64]>; 4],
    pub dc: [Option<Spec>; 4],
    pub ac: [Option<Spec>; 4],
    /// MCUs per restart interval (0: none).
    pub restart: u16,
    /// Progressive (SOF2): `scan` is then the offset of the first SOS marker, whose scans
    /// `progressive.rs` reads with the markers between them.
    pub progressive: bool,
    /// Offset of the entropy-coded data of the (sequential) scan.
    pub scan: usize,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
}

/// Reads the header; `None` when this decoder does not take the file (or cannot read it).
pub fn read(data: &[u8]) -> Option<Header> {
    let mut r = Reader { data, pos: 0 };
    if r.u16()? != 0xffd8 {
        return None;
    }
    let mut h = Header {
        width: 0,
        height: 0,
        components: Vec::new(),
        quant: [None; 4],
        dc: [None, None, None, None],
        ac: [None, None, None, None],
        restart: 0,
        progressive: false,
        scan: 0,
    };
    let mut adobe_transform = None;
    loop {
        let at = r.pos;
        if r.u8()? != 0xff {
            return None;
        }
        let mut marker = r.u8()?;
        while marker == 0xff {
            marker = r.u8()?;
        }
        if marker == 0x01 || (0xd0..=0xd7).contains(&marker) {
            continue;
        }
        let len = r.u16()?.checked_sub(2)? as usize;
        let body = r.take(len)?;
        match marker {
            0xc0 | 0xc1 => frame(body, &mut h)?,
            0xc2 => {
                frame(body, &mut h)?;
                h.progressive = true;
            }
            // Lossless, hierarchical, arithmetic: libjpeg-turbo's.
            0xc3..=0xcf if marker != 0xc4 && marker != 0xc8 && marker != 0xcc => return None,
            0xc4 => tables(body, &mut h)?,
            0xdb => quant(body, &mut h)?,
            0xdd => h.restart = u16::from_be_bytes([*body.first()?, *body.get(1)?]),
            0xee if body.starts_with(b"Adobe") => adobe_transform = Some(*body.get(11)?),
            0xda if h.progressive => {
                h.scan = at;
                break;
            }
            0xda => {
                scan(body, &mut h)?;
                h.scan = r.pos;
                break;
            }
            0xd9 => return None,
            _ => {}
        }
    }
    if h.components.is_empty() {
        return None;
    }
    // Three components are YCbCr unless an Adobe marker or RGB ids say otherwise (libjpeg's rule).
    if h.components.len() == 3 {
        let rgb_ids = h.components.iter().map(|c| c.id).eq(*b"RGB");
        if adobe_transform.map_or(rgb_ids, |t| t != 1) {
            return None;
        }
    }
    // A progressive file may define its tables between scans; each scan checks its own.
    let ready = h
        .components
        .iter()
        .all(|c| h.quant[c.quant].is_some() && h.dc[c.dc].is_some() && h.ac[c.ac].is_some());
    (ready || h.progressive).then_some(h)
}

/// Any JPEG's frame as libjpeg-turbo will hold it (files [`read`] refuses included): for the
/// memory estimate made before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u16,
    pub height: u16,
    /// Sampling factors (h, v) of each component.
    pub sampling: Vec<(u8, u8)>,
    /// Progressive, or sequential with more than one scan: libjpeg-turbo then keeps every
    /// coefficient of the image in memory until the last scan.
    pub multi_scan: bool,
}

/// Reads markers up to the first scan header; `None` if there is no readable frame.
pub fn frame_of(data: &[u8]) -> Option<Frame> {
    let mut r = Reader { data, pos: 0 };
    if r.u16()? != 0xffd8 {
        return None;
    }
    let mut frame: Option<Frame> = None;
    loop {
        if r.u8()? != 0xff {
            return None;
        }
        let mut marker = r.u8()?;
        while marker == 0xff {
            marker = r.u8()?;
        }
        if marker == 0x01 || (0xd0..=0xd7).contains(&marker) {
            continue;
        }
        let len = r.u16()?.checked_sub(2)? as usize;
        let body = r.take(len)?;
        match marker {
            0xc0..=0xcf if marker != 0xc4 && marker != 0xc8 && marker != 0xcc => {
                let mut b = Reader { data: body, pos: 0 };
                let _precision = b.u8()?;
                let (height, width, n) = (b.u16()?, b.u16()?, b.u8()?);
                let sampling = (0..n)
                    .map(|_| {
                        let (_, hv, _) = (b.u8()?, b.u8()?, b.u8()?);
                        Some(((hv >> 4).max(1), (hv & 15).max(1)))
                    })
                    .collect::<Option<Vec<_>>>()?;
                // SOF2, 6, 10 and 14 are progressive.
                let progressive = matches!(marker, 0xc2 | 0xc6 | 0xca | 0xce);
                frame = Some(Frame {
                    width,
                    height,
                    sampling,
                    multi_scan: progressive,
                });
            }
            0xda => {
                let mut f = frame?;
                let in_scan = *body.first()? as usize;
                f.multi_scan |= in_scan < f.sampling.len();
                return Some(f);
            }
            0xd9 => return None,
            _ => {}
        }
    }
}

fn frame(b: &[u8], h: &mut Header) -> Option<()> {
    let mut r = Reader { data: b, pos: 0 };
    let precision = r.u8()?;
    h.height = r.u16()?;
    h.width = r.u16()?;
    let n = r.u8()?;
    // A height of 0 is set later by a DNL marker, which libjpeg-turbo does not take either.
    if precision != 8 || h.width == 0 || h.height == 0 || !(n == 1 || n == 3) {
        return None;
    }
    if !h.components.is_empty() {
        return None;
    }
    for _ in 0..n {
        let (id, hv, quant) = (r.u8()?, r.u8()?, r.u8()?);
        let (sh, sv) = (hv >> 4, hv & 15);
        if !(1..=2).contains(&sh) || !(1..=2).contains(&sv) || quant > 3 {
            return None;
        }
        // A lone component is coded one block at a time whatever its factors say.
        let (sh, sv) = if n == 1 { (1, 1) } else { (sh, sv) };
        h.components.push(Component {
            id,
            h: sh,
            v: sv,
            quant: quant as usize,
            dc: 0,
            ac: 0,
        });
    }
    Some(())
}

pub(super) fn tables(b: &[u8], h: &mut Header) -> Option<()> {
    let mut r = Reader { data: b, pos: 0 };
    while r.pos < b.len() {
        let tc_th = r.u8()?;
        let (class, id) = (tc_th >> 4, (tc_th & 15) as usize);
        if class > 1 || id > 3 {
            return None;
        }
        let mut counts = [0u8; 16];
        counts.copy_from_slice(r.take(16)?);
        let total = counts.iter().map(|&c| c as usize).sum();
        let symbols = r.take(total)?.to_vec();
        let spec = Some(Spec { counts, symbols });
        if class == 0 {
            h.dc[id] = spec;
        } else {
            h.ac[id] = spec;
        }
    }
    Some(())
}

pub(super) fn quant(b: &[u8], h: &mut Header) -> Option<()> {
    let mut r = Reader { data: b, pos: 0 };
    while r.pos < b.len() {
        let pq_tq = r.u8()?;
        let (wide, id) = (pq_tq >> 4, (pq_tq & 15) as usize);
        if wide > 1 || id > 3 {
            return None;
        }
        let mut q = [0u16; 64];
        for v in &mut q {
            *v = if wide == 1 { r.u16()? } else { u16::from(r.u8()?) };
        }
        h.quant[id] = Some(q);
    }
    Some(())
}

fn scan(b: &[u8], h: &mut Header) -> Option<()> {
    let mut r = Reader { data: b, pos: 0 };
    let n = r.u8()? as usize;
    // One scan with every component, in frame order (T.81 B.2.3); anything else is multi-scan.
    if n != h.components.len() || n == 0 {
        return None;
    }
    for c in h.components.iter_mut() {
        let (id, tables) = (r.u8()?, r.u8()?);
        let (dc, ac) = ((tables >> 4) as usize, (tables & 15) as usize);
        if id != c.id || dc > 3 || ac > 3 {
            return None;
        }
        (c.dc, c.ac) = (dc, ac);
    }
    let (ss, se, a) = (r.u8()?, r.u8()?, r.u8()?);
    (ss == 0 && se == 63 && a == 0).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xff, marker];
        v.extend(((body.len() + 2) as u16).to_be_bytes());
        v.extend(body);
        v
    }

    fn jpeg(sof: u8, comps: &[(u8, u8)], extra: &[Vec<u8>]) -> Vec<u8> {
        let mut f = vec![0xff, 0xd8];
        f.extend(segment(0xdb, &[[0u8].as_slice(), &[1; 64]].concat()));
        let mut table = vec![0x00];
        table.extend([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend(segment(0xc4, &table));
        table[0] = 0x10;
        f.extend(segment(0xc4, &table));
        for e in extra {
            f.extend(e);
        }
        let mut frame = vec![8, 0, 16, 0, 32, comps.len() as u8];
        for &(id, hv) in comps {
            frame.extend([id, hv, 0]);
        }
        f.extend(segment(sof, &frame));
        let mut sos = vec![comps.len() as u8];
        for &(id, _) in comps {
            sos.extend([id, 0x00]);
        }
        sos.extend([0, 63, 0]);
        f.extend(segment(0xda, &sos));
        f.extend([0x00, 0xff, 0xd9]);
        f
    }

    #[test]
    fn which_files_the_shrink_decoder_takes() {
        let ycc = [(1, 0x22), (2, 0x11), (3, 0x11)];
        let adobe = |t: u8| segment(0xee, &[b"Adobe".as_slice(), &[0, 100, 0, 0, 0, 0, t]].concat());
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("baseline 4:2:0", jpeg(0xc0, &ycc, &[]), true),
            ("extended Huffman", jpeg(0xc1, &ycc, &[]), true),
            ("grey", jpeg(0xc0, &[(1, 0x11)], &[]), true),
            ("grey with odd factors", jpeg(0xc0, &[(1, 0x22)], &[]), true),
            ("progressive", jpeg(0xc2, &ycc, &[]), true),
            ("arithmetic", jpeg(0xc9, &ycc, &[]), false),
            ("lossless", jpeg(0xc3, &ycc, &[]), false),
            (
                "sampling 3",
                jpeg(0xc0, &[(1, 0x31), (2, 0x11), (3, 0x11)], &[]),
                false,
            ),
            (
                "four components",
                jpeg(0xc0, &[(1, 0x11), (2, 0x11), (3, 0x11), (4, 0x11)], &[]),
                false,
            ),
            (
                "RGB ids",
                jpeg(0xc0, &[(b'R', 0x11), (b'G', 0x11), (b'B', 0x11)], &[]),
                false,
            ),
            ("Adobe RGB", jpeg(0xc0, &ycc, &[adobe(0)]), false),
            ("Adobe YCbCr", jpeg(0xc0, &ycc, &[adobe(1)]), true),
            (
                "restart interval",
                jpeg(0xc0, &ycc, &[segment(0xdd, &[0, 4])]),
                true,
            ),
        ];
        let mut twelve = jpeg(0xc1, &ycc, &[]);
        let sof = twelve.windows(2).position(|w| w == [0xff, 0xc1]).expect("SOF");
        twelve[sof + 4] = 12;
        let cases = [cases, vec![("12-bit", twelve, false)]].concat();
        for (what, file, takes) in cases {
            assert_eq!(read(&file).is_some(), takes, "{what}");
        }
        let file = jpeg(0xc0, &ycc, &[segment(0xdd, &[0, 4])]);
        let h = read(&file).expect("header");
        assert_eq!((h.width, h.height, h.restart), (32, 16, 4));
        assert_eq!((h.components[0].h, h.components[1].v), (2, 1));
        assert_eq!(h.scan, file.len() - 3, "scan data right after the SOS segment");
    }

    #[test]
    fn frames_of_every_kind() {
        let ycc = [(1, 0x22), (2, 0x11), (3, 0x11)];
        let f = frame_of(&jpeg(0xc0, &ycc, &[])).expect("baseline");
        assert_eq!((f.width, f.height, f.multi_scan), (32, 16, false));
        assert_eq!(f.sampling, [(2, 2), (1, 1), (1, 1)]);
        assert!(frame_of(&jpeg(0xc2, &ycc, &[])).expect("progressive").multi_scan);
        assert!(
            frame_of(&jpeg(0xc9, &ycc, &[])).is_some(),
            "arithmetic: libjpeg-turbo's, still sized"
        );
        // A sequential file whose first scan has one component of three: multi-scan.
        let mut file = jpeg(0xc0, &ycc, &[]);
        let sos = file.windows(2).position(|w| w == [0xff, 0xda]).expect("SOS");
        file[sos + 4] = 1;
        assert!(frame_of(&file).expect("frame").multi_scan);
        assert!(frame_of(b"\xff\xd8\xff\xd9").is_none());
    }

    #[test]
    fn truncated_or_inconsistent_headers_are_not_taken() {
        let file = jpeg(0xc0, &[(1, 0x11), (2, 0x11), (3, 0x11)], &[]);
        for cut in 0..file.len() - 3 {
            assert!(read(&file[..cut]).is_none(), "cut at {cut}");
        }
        let mut wrong_id = file.clone();
        // The last scan component's id: before its table byte, Ss, Se, Ah/Al and the trailer.
        let last = wrong_id.len() - 8;
        wrong_id[last] = 9;
        assert!(read(&wrong_id).is_none());
        assert!(read(b"not a jpeg").is_none());
    }
}
