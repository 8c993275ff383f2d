//! The memory budget for originals held in memory: bodies being fetched, originals read from the
//! fileservers, and the inputs of renders waiting for the CPU pool. The pool bounds what running
//! jobs decode; this bounds what waits for them, so that many distinct large originals asked at
//! once wait (or get a fast 503) instead of adding up.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::INPUT_BYTES;

/// Memory is counted in KiB (the semaphore counts permits in `u32`s).
const UNIT: u64 = 1024;

/// Room is taken at least this much at a time while a body of unknown length streams in.
pub const STEP: u64 = 256 << 10;

#[derive(Debug)]
pub struct Inputs {
    sem: Arc<Semaphore>,
    units: u32,
    wait: Duration,
}

/// No room for an input within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("originals in memory are at their budget")]
pub struct Full;

/// Room held for one original; given back when the last holder drops it.
#[derive(Debug, Default)]
pub struct Held {
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Held {
    pub fn bytes(&self) -> u64 {
        self.permit
            .lock()
            .as_ref()
            .map_or(0, |p| p.num_permits() as u64 * UNIT)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        INPUT_BYTES.sub(self.bytes() as i64);
    }
}

impl Inputs {
    /// `bytes` may be held at once; a request for room waits at most `wait`.
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let units = (bytes / UNIT).clamp(1, u32::MAX as u64 >> 3) as u32;
        Self {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
            wait,
        }
    }

    /// Grows `held` to cover at least `total` bytes. One input larger than the whole budget
    /// takes the whole budget (it runs alone rather than never).
    pub async fn hold(&self, held: &Held, total: u64) -> Result<(), Full> {
        let want = (total.div_ceil(UNIT)).min(self.units as u64) as u32;
        let have = held.permit.lock().as_ref().map_or(0, |p| p.num_permits() as u32);
        if want <= have {
            return Ok(());
        }
        let more = want - have;
        let permit = match self.sem.clone().try_acquire_many_owned(more) {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(more))
                .await
                .map_err(|_| Full)?
                .map_err(|_| Full)?,
        };
        INPUT_BYTES.add(more as i64 * UNIT as i64);
        let mut slot = held.permit.lock();
        match slot.as_mut() {
            Some(p) => p.merge(permit),
            None => *slot = Some(permit),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_held_until_dropped_and_a_full_budget_refuses_after_the_wait() {
        let inputs = Inputs::new(4 << 20, Duration::from_millis(50));
        let a = Held::default();
        inputs.hold(&a, 3 << 20).await.expect("room");
        inputs.hold(&a, 1 << 20).await.expect("already held");
        assert_eq!(a.bytes(), 3 << 20);
        let b = Held::default();
        assert_eq!(inputs.hold(&b, 2 << 20).await, Err(Full));
        inputs.hold(&b, 1 << 20).await.expect("what is left");
        drop(a);
        inputs.hold(&b, 3 << 20).await.expect("room given back");
        // Larger than the whole budget: takes all of it, once it is free.
        let c = Held::default();
        drop(b);
        inputs.hold(&c, 64 << 20).await.expect("alone");
        assert_eq!(c.bytes(), 4 << 20);
    }
}
