//! A body gathered in memory as block-aligned chunks: the form a directory fileserver writes
//! straight from, around the page cache, with no copy of its own (`dir/direct.rs`). A writer
//! that holds a body for several fileservers (an upload's spool) copies it once into these,
//! rather than each fileserver copying it into an aligned buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Alignment of direct writes (memory, offsets and lengths): a page, and every common device's
/// logical block.
pub const BLOCK: usize = 4096;
/// The largest chunk gathered, and the most bytes one direct write takes.
pub const RUN: usize = 1 << 20;

/// Bytes appended into chunks that each start at a [`BLOCK`]-aligned address and, but for the
/// last, hold a whole number of blocks.
#[derive(Debug, Default)]
pub struct Blocks {
    done: Vec<Bytes>,
    current: BytesMut,
    /// What `current` may hold before it is frozen (it never grows past its allocation, which
    /// would move it off the alignment).
    room: usize,
    /// Bytes still expected beyond the chunks made so far, to size the next one.
    expected: usize,
    len: u64,
}

impl Blocks {
    /// Ready for about `expected` bytes (a Content-Length, say): chunks are sized for it, up
    /// to [`RUN`]; more than that is taken too.
    pub fn new(expected: usize) -> Self {
        Self {
            expected,
            ..Self::default()
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `bytes` in.
    pub fn extend(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.current.len() == self.room {
                self.next_chunk(bytes.len());
            }
            let n = bytes.len().min(self.room - self.current.len());
            self.current.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }

    /// Freezes the current chunk (if any) and starts the next, aligned: sized for what is still
    /// expected (at least `wanted` bytes, whole blocks, at most [`RUN`]), so that a body within
    /// its expectation allocates no more than it (each chunk rounded up to a block): what a
    /// caller bounding memory by the expectation relies on. Past it (or with none given), as
    /// large as all before it, so a long body still makes few chunks.
    fn next_chunk(&mut self, wanted: usize) {
        // `len` counts `wanted`, the bytes not placed yet: the rest are in the chunks before.
        let before = self.len as usize - wanted;
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current).freeze());
        }
        let size = if self.expected > 0 {
            self.expected.max(wanted)
        } else {
            wanted.max(before)
        };
        let size = size.clamp(BLOCK, RUN).next_multiple_of(BLOCK);
        self.expected = self.expected.saturating_sub(size);
        let mut chunk = BytesMut::with_capacity(size + BLOCK);
        let pad = chunk.as_ptr().align_offset(BLOCK).min(BLOCK);
        chunk.put_bytes(0, pad);
        chunk.advance(pad);
        self.current = chunk;
        self.room = size;
    }

    /// The chunks, in order.
    pub fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(self.current.freeze());
        }
        self.done
    }
}

/// Whether `chunk` starts at a [`BLOCK`]-aligned address.
pub fn aligned(chunk: &[u8]) -> bool {
    chunk.as_ptr().align_offset(BLOCK) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the pieces and the expectation, the chunks hold the bytes in order, each starts
    /// aligned, and all but the last hold whole blocks.
    #[test]
    fn chunks_are_aligned_whole_blocks_and_hold_every_byte() {
        let cases = [
            (0usize, 0usize, 1usize),
            (10, 10, 3),
            (BLOCK + 1, BLOCK + 1, 1000),
            (RUN, RUN + 300, 65_536),
            (RUN + 1, 100, 7_000),
            (3 * RUN + 5, 3 * RUN + 5, 1 << 20),
            (200_000, 0, 50_000),
            (300_000, 0, 100),
        ];
        for (len, expected, piece) in cases {
            let want: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
            let mut b = Blocks::new(expected);
            for p in want.chunks(piece) {
                b.extend(p);
            }
            assert_eq!(b.len(), len as u64);
            let chunks = b.finish();
            assert_eq!(chunks.concat(), want, "{len} bytes, expected {expected}");
            for (i, c) in chunks.iter().enumerate() {
                assert!(aligned(c), "{len}: chunk {i} unaligned");
                assert!(c.len() <= RUN);
                if i + 1 < chunks.len() {
                    assert_eq!(c.len() % BLOCK, 0, "{len}: chunk {i} of {} bytes", c.len());
                }
            }
            if expected >= len && len > 0 {
                assert_eq!(
                    chunks.len(),
                    len.div_ceil(RUN),
                    "{len}: sized for what was expected"
                );
            }
            // Past the expectation, each chunk is as large as all before it.
            assert!(
                chunks.len() <= len.div_ceil(RUN) + 8,
                "{len}: {} chunks",
                chunks.len()
            );
        }
    }
}
