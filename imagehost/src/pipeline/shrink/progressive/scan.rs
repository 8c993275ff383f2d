//! One progressive scan's entropy decoding (T.81 G.1.2): first DC scans and their refinement
//! bits, first AC scans with their end-of-band runs, and AC refinements, each block's
//! coefficients above what is kept reduced to a nonzero bit. Damaged data (no such code, a run
//! past the band, a refinement symbol other than ±1, data ending too soon) answers `None`.

use super::super::huffman::{Bits, Table};
use super::super::markers::Header;
use super::super::{restarted, Layout};
use super::refine::{AcRefine, Band, Steps};
use super::ScanHeader;

/// What a scan decodes, with its tables built.
pub enum Kind {
    /// One DC table per component of the scan.
    DcFirst(Vec<Table>),
    DcRefine,
    AcFirst(Table),
    AcRefine(Table, Steps),
}

/// One component's coefficients: `keep` per block (zigzag order), and for each block a mask
/// of its coefficients that are nonzero (bit k for zigzag k), kept or not.
pub struct Store {
    pub bw: usize,
    pub bh: usize,
    keep: usize,
    values: Vec<i16>,
    nonzero: Vec<u64>,
}

impl Store {
    pub fn new(bw: usize, bh: usize, keep: usize) -> Store {
        Store {
            bw,
            bh,
            keep,
            values: vec![0; bw * bh * keep],
            nonzero: vec![0; bw * bh],
        }
    }

    pub fn block(&self, b: usize) -> &[i16] {
        &self.values[b * self.keep..(b + 1) * self.keep]
    }
}

/// Which blocks a scan visits, in order: MCU by MCU over the padded grid when it interleaves
/// components, the component's own (unpadded) block grid when it holds one.
pub struct Geometry {
    /// MCUs across and down.
    across: usize,
    down: usize,
    /// Blocks per MCU across and down, per component of the scan (1×1 for one component).
    sampling: Vec<(usize, usize)>,
}

impl Geometry {
    pub fn of(layout: &Layout, header: &Header, s: &ScanHeader) -> Geometry {
        if s.comps.len() > 1 {
            let sampling = s
                .comps
                .iter()
                .map(|&c| (layout.parts[c].h, layout.parts[c].v))
                .collect();
            return Geometry {
                across: layout.mcus_x,
                down: layout.mcus_y,
                sampling,
            };
        }
        let part = &layout.parts[s.comps[0]];
        let hmax = layout.parts.iter().map(|p| p.h).max().unwrap_or(1);
        let vmax = layout.parts.iter().map(|p| p.v).max().unwrap_or(1);
        Geometry {
            across: (header.width as usize * part.h).div_ceil(hmax * 8),
            down: (header.height as usize * part.v).div_ceil(vmax * 8),
            sampling: vec![(1, 1)],
        }
    }

    /// Decodes the scan's unstuffed `data` (split at its restart markers) into `stores`.
    pub fn run(
        &self,
        kind: &Kind,
        s: &ScanHeader,
        stores: &mut [Store],
        data: &[u8],
        segments: &[(usize, usize)],
        restart: usize,
    ) -> Option<()> {
        // An interleaved scan holds at most 10 blocks per MCU (T.81 B.2.3), as libjpeg checks.
        if self.sampling.iter().map(|&(h, v)| h * v).sum::<usize>() > 10 {
            return None;
        }
        let scan = Scan {
            comps: &s.comps,
            data,
            segments,
            restart,
        };
        let (ss, se, al) = (s.ss as usize, s.se as usize, s.al as u32);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") && std::arch::is_x86_feature_detected!("bmi1") {
            #[allow(unsafe_code)]
            // SAFETY: the features `with_bit_instructions` is compiled for were just detected.
            return unsafe { self.with_bit_instructions(kind, scan, stores, (ss, se, al)) };
        }
        self.dispatch(kind, scan, stores, (ss, se, al))
    }

    /// `dispatch` compiled with the bit-counting instructions of every x86-64 CPU since 2013
    /// (the masks of refinement scans are counted and searched per symbol).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt,bmi1")]
    fn with_bit_instructions(
        &self,
        kind: &Kind,
        scan: Scan,
        stores: &mut [Store],
        band: (usize, usize, u32),
    ) -> Option<()> {
        self.dispatch(kind, scan, stores, band)
    }

    /// One walk per kind of scan, so the block decoder is chosen once, not per block.
    #[inline(always)]
    fn dispatch(
        &self,
        kind: &Kind,
        scan: Scan,
        stores: &mut [Store],
        (ss, se, al): (usize, usize, u32),
    ) -> Option<()> {
        match kind {
            Kind::DcFirst(tables) => self.walk(scan, stores, DcFirst { tables, al }),
            Kind::DcRefine => self.walk(scan, stores, DcRefine { al }),
            Kind::AcFirst(t) => self.walk(scan, stores, AcFirst { t, ss, se, al }),
            Kind::AcRefine(t, steps) => {
                let band = Band::new(ss, se, al, stores[scan.comps[0]].keep);
                self.walk(scan, stores, AcRefine { t, steps, band })
            }
        }
    }

    /// Visits every block of the scan in order with the decoder, starting each restart
    /// interval afresh. `None` when a block says
    /// its data is damaged, or the data runs short.
    #[inline(always)]
    fn walk(&self, scan: Scan, stores: &mut [Store], mut decoder: impl Decoder) -> Option<()> {
        let Scan {
            comps,
            data,
            segments,
            restart,
        } = scan;
        let mut bits = Bits::new(data, segments[0].0, segments[0].1);
        let mut state = State::default();
        let mut mcu = 0usize;
        for my in 0..self.down {
            for mx in 0..self.across {
                if restarted(&mut bits, data, segments, restart, mcu)? {
                    state = State::default();
                }
                mcu += 1;
                for (i, &(h, v)) in self.sampling.iter().enumerate() {
                    let store = &mut stores[comps[i]];
                    for by in 0..v {
                        for bx in 0..h {
                            let b = (my * v + by) * store.bw + mx * h + bx;
                            let keep = store.keep;
                            let values = &mut store.values[b * keep..(b + 1) * keep];
                            if !decoder.block(&mut bits, i, &mut state, values, &mut store.nonzero[b]) {
                                return None;
                            }
                        }
                    }
                }
            }
        }
        bits.sound().then_some(())
    }
}

/// A scan's data as `walk` reads it.
struct Scan<'a> {
    comps: &'a [usize],
    data: &'a [u8],
    segments: &'a [(usize, usize)],
    restart: usize,
}

/// What carries from block to block within a restart interval.
#[derive(Default)]
pub struct State {
    preds: [i32; 4],
    pub eobrun: u32,
}

/// One block of one kind of scan: its kept values and nonzero mask updated from `bits`; false
/// for damaged data. `slot` is the component's place in the scan.
pub trait Decoder {
    fn block(
        &mut self,
        bits: &mut Bits,
        slot: usize,
        state: &mut State,
        values: &mut [i16],
        nonzero: &mut u64,
    ) -> bool;
}

/// A first DC scan: each block's DC difference (F.2.2.1), shifted up by the approximation.
struct DcFirst<'a> {
    tables: &'a [Table],
    al: u32,
}

impl Decoder for DcFirst<'_> {
    #[inline(always)]
    fn block(
        &mut self,
        bits: &mut Bits,
        slot: usize,
        state: &mut State,
        values: &mut [i16],
        _: &mut u64,
    ) -> bool {
        // A 16-bit code and 11 bits of difference.
        bits.ensure(27);
        let s = bits.decode(&self.tables[slot]) as u32;
        let pred = &mut state.preds[slot];
        *pred = pred.wrapping_add(bits.receive(s));
        values[0] = (*pred << self.al) as i16;
        true
    }
}

/// A DC refinement: one raw bit per block.
struct DcRefine {
    al: u32,
}

impl Decoder for DcRefine {
    #[inline(always)]
    fn block(&mut self, bits: &mut Bits, _: usize, _: &mut State, values: &mut [i16], _: &mut u64) -> bool {
        bits.ensure(1);
        if bits.raw(1) == 1 {
            values[0] |= 1 << self.al;
        }
        true
    }
}

struct AcFirst<'a> {
    t: &'a Table,
    ss: usize,
    se: usize,
    al: u32,
}

impl Decoder for AcFirst<'_> {
    #[inline(always)]
    fn block(
        &mut self,
        bits: &mut Bits,
        _: usize,
        state: &mut State,
        values: &mut [i16],
        nonzero: &mut u64,
    ) -> bool {
        ac_first(
            bits,
            self.t,
            (self.ss, self.se, self.al),
            &mut state.eobrun,
            values,
            nonzero,
        )
    }
}

/// A block of a first AC scan (G.1.2.2): the band's coefficients, or one block of an
/// end-of-band run. False for damaged data.
#[inline(always)]
fn ac_first(
    bits: &mut Bits,
    t: &Table,
    (ss, se, al): (usize, usize, u32),
    eobrun: &mut u32,
    values: &mut [i16],
    nonzero: &mut u64,
) -> bool {
    if *eobrun > 0 {
        *eobrun -= 1;
        return true;
    }
    let mut k = ss;
    while k <= se {
        // A 16-bit code, then 10 bits of value or 14 of run length.
        bits.ensure(30);
        let rs = bits.decode(t);
        let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
        if s != 0 {
            k += r;
            let v = (bits.receive(s) << al) as i16;
            if k > se {
                return false;
            }
            if let Some(value) = values.get_mut(k) {
                *value = v;
            }
            if v != 0 {
                *nonzero |= 1 << k;
            }
        } else if r == 15 {
            k += 15;
        } else {
            *eobrun = (1 << r) + bits.raw(r as u32) - 1;
            break;
        }
        k += 1;
    }
    true
}
