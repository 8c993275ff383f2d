//! What the memory bound charges for a cached object: what its body's allocation really holds and
//! the fixed cost of its entry, as measured by `bench/src/bin/edge_memory.rs`.

/// What an entry costs beyond its body's allocation, URL and serialized meta: the entry itself,
/// its `Arc`, the shard's map slot and variant list, pingora's LRU node, the admission sketch's
/// share. Measured at 500–580 B an object (50,000 objects of 2,000 B, and of log-normal sizes
/// around 16 KB); kept a little above. It was 1,536 B while each entry also held its parsed
/// header, which alone cost about 1.5 KiB (see [`super::head`]).
pub(super) const ENTRY_OVERHEAD: usize = 640;

/// The bytes an allocation of `len` bytes holds under the edge's allocator (mimalloc): sizes up to
/// 512 KiB are rounded up to a size class, four per doubling (up to 12.5 % more, 6 % on average
/// for images), larger ones to whole pages. A bound that counted only `len` held ~10 % more than
/// it said (`bench/src/bin/edge_memory.rs`).
pub(super) fn allocated(len: usize) -> usize {
    const WORD: usize = 8;
    let words = len.div_ceil(WORD).max(1);
    if words <= 8 {
        return words * WORD;
    }
    if len > 512 << 10 {
        return len.next_multiple_of(4096);
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
            (600_000, 602_112),
        ];
        for (len, held) in cases {
            assert_eq!(allocated(len), held, "{len}");
        }
    }
}
