//! AC refinement scans (T.81 G.1.2.3), most of a progressive file's decoding work: each
//! symbol found with one lookup (code and sign together), the coefficients it runs over found in
//! the block's nonzero mask at once rather than one by one, and the correction bits of the
//! coefficients not kept stepped over together.

use super::super::huffman::{Bits, Table};
use super::scan::{Decoder, State};

/// Bits a refinement symbol is looked up by, with its sign bit.
const STEP_BITS: u32 = 12;

/// A refinement scan's symbols as one lookup each: for every STEP_BITS-bit prefix, the bits a
/// whole symbol takes (its code, and the sign of a new coefficient), its zero run and what it
/// places: `bits | run << 5 | what << 9`, `what` 0 for a run of 16 zeros, 1 and 2 for a new
/// coefficient of + and −, 3 for anything else (an end-of-band run, a long code, damage),
/// which takes the general path.
pub struct Steps(Box<[u16; 1 << STEP_BITS]>);

impl Steps {
    pub fn new(t: &Table) -> Steps {
        use super::super::huffman::LOOKUP;
        Steps(Box::new(std::array::from_fn(|p| {
            let p = p as u32;
            let Some((rs, len)) = t.short(p >> (STEP_BITS - LOOKUP)) else {
                return 3 << 9;
            };
            let (r, s) = (u16::from(rs >> 4), rs & 15);
            match s {
                0 if r == 15 => len as u16 | r << 5,
                1 if len < STEP_BITS => {
                    let negative = p >> (STEP_BITS - 1 - len) & 1 == 0;
                    (len + 1) as u16 | r << 5 | (1 + u16::from(negative)) << 9
                }
                _ => 3 << 9,
            }
        })))
    }
}

pub struct AcRefine<'a> {
    pub t: &'a Table,
    pub steps: &'a Steps,
    pub band: Band,
}

impl Decoder for AcRefine<'_> {
    #[inline(always)]
    fn block(
        &mut self,
        bits: &mut Bits,
        _: usize,
        state: &mut State,
        values: &mut [i16],
        nonzero: &mut u64,
    ) -> bool {
        ac_refine(
            bits,
            (self.t, self.steps),
            &self.band,
            &mut state.eobrun,
            values,
            nonzero,
        )
    }
}

/// An AC refinement scan's constants: its band as a mask, the bit it adds, and which
/// coefficients of a block are kept.
pub struct Band {
    band: u64,
    p1: i16,
    m1: i16,
    kept: u64,
}

impl Band {
    pub fn new(ss: usize, se: usize, al: u32, keep: usize) -> Band {
        let below = |n: usize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        Band {
            band: below(se + 1) & !below(ss),
            p1: 1 << al,
            m1: -1 << al,
            kept: below(keep),
        }
    }
}

/// A block of an AC refinement scan (G.1.2.3): one correction bit for each coefficient of the
/// band already nonzero, new coefficients of ±1 (at this bit) placed among the zero ones. The
/// coefficients a symbol runs over are found in the block's nonzero mask at once (`rest` holds
/// the band's coefficients not yet passed), and the correction bits of coefficients not kept
/// are stepped over together.
#[inline(always)]
fn ac_refine(
    bits: &mut Bits,
    (t, steps): (&Table, &Steps),
    band: &Band,
    eobrun: &mut u32,
    values: &mut [i16],
    nonzero: &mut u64,
) -> bool {
    let mut rest = band.band;
    // Kept in a register for the block, stored once at its end.
    let mut nz = *nonzero;
    if *eobrun == 0 {
        while rest != 0 {
            // The general path needs 30 bits (a 16-bit code and a 14-bit run length).
            bits.ensure(30);
            let step = steps.0[bits.peek(STEP_BITS) as usize];
            let (r, new) = if step >> 9 != 3 {
                bits.consume(u32::from(step & 31));
                let new = [0, band.p1, band.m1][usize::from(step >> 9)];
                (u32::from(step >> 5 & 15), new)
            } else {
                let rs = bits.decode(t);
                let (r, s) = ((rs >> 4) as u32, rs & 15);
                match (s, r) {
                    (1, _) => (r, if bits.raw(1) == 1 { band.p1 } else { band.m1 }),
                    (0, 15) => (r, 0),
                    (0, _) => {
                        *eobrun = (1 << r) + bits.raw(r);
                        break;
                    }
                    _ => return false,
                }
            };
            // The coefficient r zeros on (a new one's place, or the end of a run of 16 zeros):
            // none when there are not so many, and the symbol then runs to the band's end.
            // Mostly the r zeros after the first are the next r coefficients: one test.
            let zeros = !nz & rest;
            let first = zeros.trailing_zeros();
            let run = (2u64 << r).wrapping_sub(1).wrapping_shl(first);
            let target = if first + r < 64 && zeros & run == run {
                1 << (first + r)
            } else {
                nth_bit(zeros, r)
            };
            correct(bits, values, nz & target.wrapping_sub(1) & rest, band);
            if new != 0 {
                if target == 0 {
                    return false;
                }
                nz |= target;
                if target & band.kept != 0 {
                    values[target.trailing_zeros() as usize] = new;
                }
            }
            // What lies above the target (nothing when there was none).
            rest &= (target << 1).wrapping_neg();
        }
    }
    if *eobrun > 0 {
        // Only correction bits are left in this block.
        correct(bits, values, nz & rest, band);
        *eobrun -= 1;
    }
    *nonzero = nz;
    true
}

/// The `n`th lowest set bit of `x` (from 0; `n` < 128) alone, 0 when `x` has no more than
/// `n`; without a loop (a refinement symbol's zero run is as long as the data says):
/// the byte holding it is found from running byte counts, the bit in that byte from a table.
#[inline(always)]
fn nth_bit(x: u64, n: u32) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut c = x - ((x >> 1) & 0x5555_5555_5555_5555);
    c = (c & 0x3333_3333_3333_3333) + ((c >> 2) & 0x3333_3333_3333_3333);
    c = (c + (c >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // Byte i: how many bits are set in bytes 0..=i.
    let running = c.wrapping_mul(ONES);
    // Bytes whose running count is at most n lie wholly below the bit wanted.
    let below = (((n as u64 * ONES) | HIGH) - running) & HIGH;
    let byte = below.count_ones();
    if byte >= 8 {
        return 0;
    }
    // The running count of the bytes below it.
    let before = ((running << 8) >> (8 * byte)) as u8 as u32;
    let bits = (x >> (8 * byte)) as u8;
    let at = SELECT[bits as usize][((n - before) & 7) as usize];
    if at == 8 {
        0
    } else {
        1u64 << (8 * byte + at as u32)
    }
}

/// For each byte and n, where its `n`th lowest set bit is (8: none).
static SELECT: [[u8; 8]; 256] = {
    let mut t = [[8u8; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let (mut i, mut seen) = (0, 0);
        while i < 8 {
            if b >> i & 1 == 1 {
                t[b][seen] = i as u8;
                seen += 1;
            }
            i += 1;
        }
        b += 1;
    }
    t
};

/// Reads the correction bits of the nonzero coefficients in `which`, in order: a set bit adds
/// this bit of magnitude to a kept value (away from zero, once); the bits of coefficients not
/// kept are stepped over together.
#[inline(always)]
fn correct(bits: &mut Bits, values: &mut [i16], which: u64, band: &Band) {
    let mut low = which & band.kept;
    while low != 0 {
        let k = low.trailing_zeros() as usize;
        low &= low - 1;
        bits.ensure(1);
        if bits.raw(1) == 1 {
            let v = values[k];
            if v & band.p1 == 0 {
                values[k] = v.wrapping_add(if v >= 0 { band.p1 } else { band.m1 });
            }
        }
    }
    bits.skip_bits((which & !band.kept).count_ones());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_bit_is_the_nth_set_bit() {
        let naive = |mut x: u64, n: u32| {
            for _ in 0..n {
                x &= x.wrapping_sub(1);
            }
            x & x.wrapping_neg()
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match round % 4 {
                0 => x,
                1 => x & (x >> 3) & (x >> 5),
                2 => !x & (x << 2),
                _ => x >> (round % 64),
            };
            for n in 0..20 {
                assert_eq!(nth_bit(v, n), naive(v, n), "{v:#x} n {n}");
            }
        }
        for n in 0..70 {
            assert_eq!(nth_bit(u64::MAX, n), if n < 64 { 1 << n } else { 0 });
            assert_eq!(nth_bit(0, n), 0);
        }
    }
}
