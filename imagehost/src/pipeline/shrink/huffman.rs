//! Huffman tables and the bit reader of the shrink decoder: one lookup for short codes, a
//! canonical search for long ones, and a pair table that steps over two AC coefficients (codes
//! and magnitude bits together) without computing their values.

/// Bits looked up at once; longer codes (rare) take the canonical search.
pub const LOOKUP: u32 = 11;

/// A table as a DHT segment gives it: how many codes of each length 1–16, then the symbols.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub counts: [u8; 16],
    pub symbols: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadTable;

#[derive(Clone, Copy, Debug)]
pub enum Class {
    Dc,
    Ac,
}

const ENTRIES: usize = 1 << LOOKUP;

/// Bits looked up by the two-step skip table.
const PAIR: u32 = 12;

pub struct Table {
    /// `len << 8 | symbol` for each LOOKUP-bit prefix whose code is that short; 0 otherwise.
    fast: Box<[u16; ENTRIES]>,
    /// Two AC coefficients stepped over at once: `first_advance | first_bits << 8 |
    /// advance << 16 | bits << 24` for both together (the first alone where the second's code
    /// does not fit in PAIR bits after it), `bits` counting code and magnitude and `advance`
    /// how far the coefficient index moves (64 for an end of block). 0 where `fast` is 0.
    pair: Box<[u32; 1 << PAIR]>,
    /// Largest code of each length (-1: none), and the offset from a code to its symbol index.
    max_code: [i32; 17],
    offset: [i32; 17],
    symbols: Vec<u8>,
}

impl Table {
    /// Canonical codes (ITU T.81 annex C); a table whose codes do not fit their lengths is
    /// refused, as libjpeg refuses it, and so is one with a magnitude category 8-bit baseline
    /// cannot have (above 11 for DC, 10 for AC), which the skip steps rely on.
    pub fn new(spec: &Spec, class: Class) -> Result<Table, BadTable> {
        let total: usize = spec.counts.iter().map(|&c| c as usize).sum();
        if total > 256 || total != spec.symbols.len() {
            return Err(BadTable);
        }
        let too_big = |&s: &u8| match class {
            Class::Dc => s > 11,
            Class::Ac => s & 15 > 10,
        };
        if spec.symbols.iter().any(too_big) {
            return Err(BadTable);
        }
        let mut fast = Box::new([0u16; ENTRIES]);
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let (mut code, mut index) = (0u32, 0usize);
        for len in 1..=16u32 {
            let count = spec.counts[len as usize - 1] as usize;
            if code as usize + count > 1 << len {
                return Err(BadTable);
            }
            offset[len as usize] = index as i32 - code as i32;
            for &symbol in &spec.symbols[index..index + count] {
                if len <= LOOKUP {
                    let shift = LOOKUP - len;
                    let first = (code << shift) as usize;
                    for e in &mut fast[first..first + (1 << shift)] {
                        *e = (len as u16) << 8 | symbol as u16;
                    }
                }
                code += 1;
            }
            if count > 0 {
                max_code[len as usize] = code as i32 - 1;
            }
            index += count;
            code <<= 1;
        }
        let pair = Box::new(std::array::from_fn(|p| pair_entry(&fast, p as u32)));
        Ok(Table {
            fast,
            pair,
            max_code,
            offset,
            symbols: spec.symbols.clone(),
        })
    }
}

impl Table {
    /// The (symbol, code length) of the code at the top of a LOOKUP-bit `prefix`, for codes
    /// that short; `None` for a longer one or none.
    pub fn short(&self, prefix: u32) -> Option<(u8, u32)> {
        let e = self.fast[(prefix as usize) & (ENTRIES - 1)];
        (e != 0).then_some((e as u8, (e >> 8) as u32))
    }
}

/// The pair entry for a PAIR-bit prefix, from the single-symbol lookup.
fn pair_entry(fast: &[u16; ENTRIES], prefix: u32) -> u32 {
    let symbol = |bits: u32, avail: u32| -> Option<(u32, u32)> {
        // A symbol whose code lies within the `avail` bits at the top of `bits` (PAIR wide).
        let e = fast[((bits << (32 - PAIR)) >> (32 - LOOKUP)) as usize];
        let len = (e >> 8) as u32;
        (e != 0 && len <= avail).then(|| (advance(e as u8) as u32, len + (e & 15) as u32))
    };
    let Some((a1, c1)) = symbol(prefix, PAIR) else {
        return 0;
    };
    let (mut at, mut ct) = (a1, c1);
    if a1 < 64 && c1 < PAIR {
        if let Some((a2, c2)) = symbol((prefix << c1) & ((1 << PAIR) - 1), PAIR - c1) {
            (at, ct) = (a1 + a2, c1 + c2);
        }
    }
    a1 | c1 << 8 | at << 16 | ct << 24
}

/// How far an AC symbol moves the coefficient index: run + 1, 16 for ZRL, 64 to end the block
/// (EOB, and the EOBn forms that baseline does not use, read as EOB like libjpeg).
fn advance(rs: u8) -> u8 {
    match (rs >> 4, rs & 15) {
        (15, 0) => 16,
        (_, 0) => 64,
        (run, _) => run + 1,
    }
}

/// An entropy-coded segment with its stuffing removed, read MSB first. Past its end it reads
/// zeros, as libjpeg does with a truncated file, so a decode always runs to its fixed length.
pub struct Bits<'a> {
    data: &'a [u8],
    start: usize,
    end: usize,
    pos: usize,
    buf: u64,
    count: u32,
    /// A bit pattern that is no code was met.
    bad_code: bool,
}

impl<'a> Bits<'a> {
    /// `data` must hold 8 bytes of padding after `end`.
    pub fn new(data: &'a [u8], start: usize, end: usize) -> Bits<'a> {
        debug_assert!(data.len() >= end + 8);
        let start = start.min(end);
        let mut b = Bits {
            data,
            start,
            end,
            pos: start,
            buf: 0,
            count: 0,
            bad_code: false,
        };
        b.refill();
        b
    }

    /// Whether the stream so far was sound: no invalid code, and no bit read past the end of
    /// the data (a truncated file, or a restart interval cut short).
    pub fn sound(&self) -> bool {
        let read = (self.pos - self.start) * 8 - self.count as usize;
        !self.bad_code && read <= (self.end - self.start) * 8
    }

    /// Tops the buffer up to at least 56 bits without a branch.
    #[inline(always)]
    pub fn refill(&mut self) {
        let p = self.pos.min(self.end);
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.data[p..p + 8]);
        self.buf |= u64::from_be_bytes(w) >> self.count;
        self.pos += ((63 - self.count) >> 3) as usize;
        self.count |= 56;
    }

    /// Refills only when fewer than `n` bits are buffered: a predictable branch, where the
    /// branchless refill would put its load on every symbol's dependency chain.
    #[inline(always)]
    pub fn ensure(&mut self, n: u32) {
        if self.count < n {
            self.refill();
        }
    }

    /// The next `n` bits (1 to 32) without consuming them; needs `n` bits buffered.
    #[inline(always)]
    pub fn peek(&self, n: u32) -> u32 {
        (self.buf >> (64 - n)) as u32
    }

    /// Drops `n` bits; needs `n` bits buffered.
    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.count -= n;
    }

    /// One symbol; needs 16 bits in the buffer.
    #[inline(always)]
    pub fn decode(&mut self, t: &Table) -> u8 {
        let e = t.fast[(self.buf >> (64 - LOOKUP)) as usize];
        let (symbol, len) = if e != 0 {
            (e as u8, (e >> 8) as u32)
        } else {
            self.long(t)
        };
        self.consume(len);
        symbol
    }

    /// `s` magnitude bits as a signed value (T.81 F.2.2.1 EXTEND); needs `s` bits buffered.
    #[inline(always)]
    pub fn receive(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = (self.buf >> (64 - s)) as i32;
        self.consume(s);
        if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// `n` bits (at most 32) as they are, unsigned; needs `n` bits buffered.
    #[inline(always)]
    pub fn raw(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = (self.buf >> (64 - n)) as u32;
        self.consume(n);
        v
    }

    /// Steps over `n` bits (any number), refilling as it goes.
    #[inline(always)]
    pub fn skip_bits(&mut self, mut n: u32) {
        while n > self.count {
            n -= self.count;
            self.buf = 0;
            self.count = 0;
            self.refill();
        }
        // At most 63 here: refill leaves no more in the buffer.
        self.consume(n);
    }

    /// Steps over one AC coefficient and returns how far the index moves; needs 26 bits.
    #[inline(always)]
    pub fn skip(&mut self, t: &Table) -> u32 {
        let rs = self.decode(t);
        self.consume((rs & 15) as u32);
        advance(rs) as u32
    }

    /// Steps over one or two AC coefficients from index `k` (the second only when the first
    /// does not end the block) and returns the new index; needs 22 bits.
    #[inline(always)]
    pub fn skip_pair(&mut self, t: &Table, k: u32) -> u32 {
        let e = t.pair[(self.buf >> (64 - PAIR)) as usize];
        if e == 0 {
            return k + self.skip(t);
        }
        let one = k + (e & 0xff) >= 64;
        let (advance, bits) = if one {
            (e & 0xff, (e >> 8) & 0xff)
        } else {
            ((e >> 16) & 0xff, e >> 24)
        };
        self.consume(bits);
        k + advance
    }

    /// A code longer than the lookup: (symbol, code length). No such code marks the stream
    /// unsound and reads a zero symbol over 16 bits, so decoding still ends.
    #[inline(always)]
    fn long(&mut self, t: &Table) -> (u8, u32) {
        let found = long(self.buf, t);
        self.bad_code |= found.is_none();
        found.unwrap_or((0, 16))
    }
}

/// The canonical search on the buffer's top 16 bits. Takes the buffer by value so the
/// reader's state stays in registers.
#[cold]
#[inline(never)]
fn long(buf: u64, t: &Table) -> Option<(u8, u32)> {
    let peek = (buf >> 48) as i32;
    (LOOKUP + 1..=16).find_map(|len| {
        let code = peek >> (16 - len);
        (code <= t.max_code[len as usize]).then(|| {
            let i = (code + t.offset[len as usize]) as usize;
            (t.symbols.get(i).copied().unwrap_or(0), len)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T.81 table K.3 (luminance DC).
    fn dc() -> Spec {
        Spec {
            counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
            symbols: (0..12).collect(),
        }
    }

    fn bits(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v.extend([0; 8]);
        v
    }

    #[test]
    fn canonical_codes_decode_to_their_symbols() {
        // K.3: 0 → 00, 1 → 010, 2 → 011, 5 → 110, 6 → 1110, 11 → 111111110.
        let t = Table::new(&dc(), Class::Dc).expect("table");
        // 00 010 011 110 1110 111111110 then zeros
        let data = bits(&[0b0001_0011, 0b1101_1101, 0b1111_1110, 0]);
        let mut b = Bits::new(&data, 0, 4);
        for want in [0, 1, 2, 5, 6, 11] {
            b.refill();
            assert_eq!(b.decode(&t), want);
        }
    }

    #[test]
    fn long_codes_take_the_canonical_search() {
        // One code of each length 1..=15, then two of length 16: the last one is 16 ones.
        let mut counts = [1u8; 16];
        counts[15] = 2;
        let spec = Spec {
            counts,
            symbols: (0..17).map(|i| i % 12).collect(),
        };
        let t = Table::new(&spec, Class::Dc).expect("complete code");
        let data = bits(&[0xff, 0xff, 0xff, 0xfe]);
        let mut b = Bits::new(&data, 0, 4);
        assert_eq!(b.decode(&t), 16 % 12); // 1111111111111111
        b.refill();
        assert_eq!(b.decode(&t), 15 % 12); // 1111111111111110
    }

    #[test]
    fn oversubscribed_and_inconsistent_tables_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three one-bit codes
        let over = Spec {
            counts,
            symbols: vec![1, 2, 3],
        };
        assert_eq!(Table::new(&over, Class::Ac).err(), Some(BadTable));
        let short = Spec {
            counts: dc().counts,
            symbols: vec![0; 3],
        };
        assert_eq!(Table::new(&short, Class::Dc).err(), Some(BadTable));
        let wide = Spec {
            counts: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            symbols: vec![0x0b],
        };
        assert_eq!(Table::new(&wide, Class::Ac).err(), Some(BadTable), "AC size 11");
        assert!(Table::new(&wide, Class::Dc).is_ok(), "DC size 11");
    }

    #[test]
    fn receive_extends_the_sign() {
        // T.81 table F.1: with s bits, values below 2^(s-1) are negative.
        let cases: [(u8, u32, i32); 5] = [
            (0b1000_0000, 1, 1),
            (0b0000_0000, 1, -1),
            (0b0100_0000, 3, -5),
            (0b1010_0000, 3, 5),
            (0b0000_0000, 0, 0),
        ];
        for (byte, s, want) in cases {
            let data = bits(&[byte]);
            let mut b = Bits::new(&data, 0, 1);
            assert_eq!(b.receive(s), want, "{byte:08b} with {s} bits");
        }
    }

    #[test]
    fn skip_steps_over_code_and_magnitude() {
        // AC table: 0x00 (EOB) → 0, 0x01 → 10, 0x23 → 110, 0xF0 (ZRL) → 111.
        let spec = Spec {
            counts: [1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            symbols: vec![0x00, 0x01, 0x23, 0xf0],
        };
        let t = Table::new(&spec, Class::Ac).expect("table");
        // 10 x | 110 xxx | 111 | 0  → advances 1, 3, 16, 64
        let data = bits(&[0b1011_1010, 0b1111_0000]);
        let mut b = Bits::new(&data, 0, 2);
        let mut got = Vec::new();
        for _ in 0..4 {
            b.refill();
            got.push(b.skip(&t));
        }
        assert_eq!(got, [1, 3, 16, 64]);
    }

    #[test]
    fn reading_past_the_end_gives_zeros_and_is_unsound() {
        let data = bits(&[0xff]);
        let mut b = Bits::new(&data, 0, 1);
        assert_eq!(b.receive(8), 255);
        assert!(b.sound(), "all of the data, not more");
        for _ in 0..10 {
            b.refill();
            assert_eq!(b.receive(8), -255);
        }
        assert!(!b.sound());
    }

    #[test]
    fn a_pattern_that_is_no_code_is_unsound() {
        // K.3 has no code of nine ones.
        let t = Table::new(&dc(), Class::Dc).expect("table");
        let data = bits(&[0xff, 0xff, 0xff]);
        let mut b = Bits::new(&data, 0, 3);
        assert_eq!(b.decode(&t), 0);
        assert!(!b.sound());
    }
}
