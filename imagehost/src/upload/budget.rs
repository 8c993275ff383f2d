//! The memory all uploads' spools may hold at once (`upload.spool_memory_total`). An upload takes
//! room as its bytes arrive, a step at a time and never waiting; one that finds none left is
//! spooled to a file instead. The room is given back when the last fileserver write of the
//! upload is done with its bytes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::UPLOAD_SPOOL_BYTES;

/// Room is counted in KiB (the semaphore takes permits in `u32`s).
const UNIT: u64 = 1024;
/// Room is taken at least this much at a time.
const STEP: u64 = 256 << 10;

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

    /// Grows `room` to hold `bytes` (a step more, up to `limit`, so that room is not asked for
    /// at every chunk); false, with `room` as it was, if the budget has not that much left.
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
        let budget = Budget::new(1 << 20);
        let mut a = Room::default();
        assert!(budget.cover(&mut a, 1, 1 << 20));
        assert_eq!(a.units(), 256, "a first step of 256 KiB");
        assert!(
            budget.cover(&mut a, 200 << 10, 1 << 20),
            "within the step: nothing asked"
        );
        assert_eq!(a.units(), 256);
        assert!(budget.cover(&mut a, 300 << 10, 400 << 10));
        assert_eq!(a.units(), 400, "a step, but no more than the upload's limit");
        let mut b = Room::default();
        assert!(budget.cover(&mut b, 500 << 10, 1 << 20));
        assert!(!budget.cover(&mut b, 700 << 10, 1 << 20), "past the budget");
        assert_eq!(b.units(), 512, "what it held is kept");
        drop(a);
        assert!(budget.cover(&mut b, 700 << 10, 1 << 20), "a's room came back");
    }
}
