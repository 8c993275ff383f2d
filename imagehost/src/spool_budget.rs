//! The memory all uploads' spools may hold at once (`upload.spool_memory_total`). An upload takes
//! room as its bytes arrive, never waiting, a chunk of the spool's memory at a time (up to 1 MiB,
//! [`blobstore::blocks::RUN`]), before that chunk is allocated: so a flood of uploads that each
//! send a few bytes holds no more than the budget either. One that finds no room left is spooled
//! to a file instead. The room is given back when the last fileserver write of the upload is
//! done with its bytes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::UPLOAD_SPOOL_BYTES;

/// Room is counted in KiB (the semaphore takes permits in `u32`s).
const UNIT: u64 = 1024;
/// Room is taken a spool chunk at a time (the last one sized by the upload's `limit`).
const STEP: u64 = blobstore::blocks::RUN as u64;

/// The budget shared by every upload.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
}

/// The room one upload holds; given back when dropped.
#[derive(Debug, Default)]
pub struct Room {
    permit: Option<OwnedSemaphorePermit>,
}

impl Budget {
    pub fn new(bytes: u64) -> Self {
        let units = (bytes / UNIT).min(Semaphore::MAX_PERMITS as u64) as usize;
        Self {
            sem: Arc::new(Semaphore::new(units)),
        }
    }

    /// Grows `room` to hold `bytes`, rounded up to the spool's next chunk but not past `limit`
    /// (the most the upload's chunks take: its expected size, rounded up to a block); false,
    /// with `room` as it was, if the budget has not that much left.
    pub fn cover(&self, room: &mut Room, bytes: u64, limit: u64) -> bool {
        let have = room.units() as u64;
        if bytes <= have * UNIT {
            return true;
        }
        let want = bytes.next_multiple_of(STEP).min(limit.max(bytes)).div_ceil(UNIT);
        let Ok(more) = u32::try_from(want - have) else {
            return false;
        };
        let Ok(permit) = self.sem.clone().try_acquire_many_owned(more) else {
            return false;
        };
        UPLOAD_SPOOL_BYTES.add((more as u64 * UNIT) as i64);
        match &mut room.permit {
            Some(held) => held.merge(permit),
            None => room.permit = Some(permit),
        }
        true
    }
}

impl Room {
    fn units(&self) -> u32 {
        self.permit.as_ref().map_or(0, |p| p.num_permits() as u32)
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        UPLOAD_SPOOL_BYTES.sub((self.units() as u64 * UNIT) as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room grows by steps within the budget, is refused past it (leaving what is held), and
    /// comes back when dropped.
    #[test]
    fn room_is_taken_by_steps_refused_past_the_budget_and_given_back() {
        const MIB: u64 = 1 << 20;
        let budget = Budget::new(4 * MIB);
        let mut a = Room::default();
        assert!(budget.cover(&mut a, 1, 4 * MIB));
        assert_eq!(a.units(), 1024, "room for a first chunk of 1 MiB");
        assert!(
            budget.cover(&mut a, 200 << 10, 4 * MIB),
            "within it: nothing asked"
        );
        assert_eq!(a.units(), 1024);
        assert!(budget.cover(&mut a, MIB + 1, 1200 << 10));
        assert_eq!(
            a.units(),
            1200,
            "a chunk more, but no more than the upload's limit"
        );
        let mut b = Room::default();
        assert!(budget.cover(&mut b, 2 * MIB, 4 * MIB));
        assert!(!budget.cover(&mut b, 2 * MIB + 1, 4 * MIB), "past the budget");
        assert_eq!(b.units(), 2048, "what it held is kept");
        drop(a);
        assert!(budget.cover(&mut b, 2 * MIB + 1, 4 * MIB), "a's room came back");
        assert_eq!(b.units(), 3072);
    }
}
