//! What the memory bound charges for a cached object: what its body's allocation really holds and
//! the fixed cost of its entry, as measured by `bench/src/bin/edge_memory.rs`.

/// What an entry costs beyond its body's, URL's and header's allocations and its fast-path
/// wire form: the entry itself, its `Arc`, the shard's map slot and variant list, pingora's LRU
/// node, the admission sketch's share. Measured at 620–680 B an object (50,000 objects of
/// 2,000 B, and of log-normal sizes around 16 KB, each fetched then hit); kept a little above.
/// It was 1,536 B while each entry also held its parsed header, which alone cost about 1.5 KiB
/// (see [`super::head`]).
pub(super) const ENTRY_OVERHEAD: usize = 736;

/// The bytes an allocation of `len` bytes holds under the edge's allocator (mimalloc v3): sizes
/// up to 512 KiB are rounded up to a size class, four per doubling (up to 12.5 % more, 6 % on
/// average for images); a larger one gets a page of its own, its size rounded to 64 KiB (up to
/// 2 MiB), 256 KiB (up to 8 MiB) or 1 MiB, with a page header, in 64 KiB slices. A bound that
/// counted only `len` held ~10 % more than it said (`bench/src/bin/edge_memory.rs`).
pub(super) fn allocated(len: usize) -> usize {
    const WORD: usize = 8;
    const SLICE: usize = 64 << 10;
    let words = len.div_ceil(WORD).max(1);
    if words <= 8 {
        return words * WORD;
    }
    if len > 512 << 10 {
        let step = if len <= 2 << 20 {
            SLICE
        } else if len <= 8 << 20 {
            256 << 10
        } else {
            1 << 20
        };
        return (len.next_multiple_of(step) + 4096).next_multiple_of(SLICE);
    }
    // The class of `words - 1` is named by its top three bits.
    let top = (usize::BITS - 1 - (words - 1).leading_zeros()) as usize;
    let step = 1usize << (top - 2);
    (((words - 1) >> (top - 2)) + 1) * step * WORD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_counted_at_their_size_class() {
        let cases = [
            (0, 8),
            (1, 8),
            (64, 64),
            (65, 80),
            (2_000, 2_048),
            (16_384, 16_384),
            (16_385, 20_480),
            (19_256, 20_480),
            (512 << 10, 512 << 10),
            (600_000, 720_896),
            (3_000_000, 3_211_264),
            (20_000_000, 21_037_056),
        ];
        for (len, held) in cases {
            assert_eq!(allocated(len), held, "{len}");
        }
    }
}
