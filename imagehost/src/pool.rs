//! The CPU pool for image work: at most `workers` jobs run at once on blocking threads, and the
//! jobs admitted hold at most `memory` bytes by their estimates ([`crate::pipeline::prepare`]);
//! at most `queue` wait for either. Past that a job is refused at once (the handler answers 503
//! with `Retry-After`) instead of building an unbounded backlog, and concurrent large jobs wait
//! for each other instead of adding up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::metrics::{POOL_MEMORY, POOL_QUEUED, POOL_REJECTED, POOL_RUNNING};

/// Memory is counted in KiB (the semaphore counts permits in `u32`s).
const UNIT: u64 = 1024;

#[derive(Debug)]
pub struct Pool {
    slots: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    memory_units: u32,
    waiting: AtomicUsize,
    max_waiting: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("image queue full")]
    Busy,
    #[error("image job panicked")]
    Panicked,
}

impl Pool {
    /// `workers == 0` means one per core; `memory` is the bytes admitted jobs may hold.
    pub fn new(workers: usize, max_waiting: usize, memory: u64) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            workers
        };
        let memory_units = (memory / UNIT).clamp(1, u32::MAX as u64) as u32;
        Self {
            slots: Arc::new(Semaphore::new(workers)),
            memory: Arc::new(Semaphore::new(memory_units as usize)),
            memory_units,
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Runs `job`, which holds about `cost` bytes at its peak, once a worker and that much of the
    /// memory budget are free. A cost over the whole budget is admitted alone.
    pub async fn run<T, F>(&self, cost: u64, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let units = (cost.div_ceil(UNIT)).clamp(1, self.memory_units as u64) as u32;
        let ready = match self.memory.clone().try_acquire_many_owned(units) {
            Ok(m) => match self.slots.clone().try_acquire_owned() {
                Ok(s) => Some((m, s)),
                Err(_) => {
                    drop(m);
                    None
                }
            },
            Err(_) => None,
        };
        let (memory, permit) = match ready {
            Some(both) => both,
            None => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    POOL_REJECTED.inc();
                    return Err(PoolError::Busy);
                }
                POOL_QUEUED.inc();
                // Counted out again even when the request is dropped while it waits.
                let _waiting = Waiting(&self.waiting);
                // Memory first (the queue is fair, so a large job is not starved by small
                // ones), then a worker: a job waiting for a worker holds memory it will use at
                // once, and every worker's holder is running.
                let memory = self
                    .memory
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .map_err(|_| PoolError::Busy)?;
                let permit = self
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| PoolError::Busy)?;
                (memory, permit)
            }
        };
        POOL_RUNNING.inc();
        POOL_MEMORY.add(units as i64 * UNIT as i64);
        let result = tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            drop(memory);
            out
        })
        .await;
        POOL_MEMORY.sub(units as i64 * UNIT as i64);
        POOL_RUNNING.dec();
        result.map_err(|_| PoolError::Panicked)
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        POOL_QUEUED.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    #[tokio::test]
    async fn full_queue_refuses_at_once() {
        let pool = Arc::new(Pool::new(1, 1, 1 << 30));
        let slow = |ms| move || std::thread::sleep(Duration::from_millis(ms));
        let a = tokio::spawn({
            let p = pool.clone();
            async move { p.run(1, slow(300)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = tokio::spawn({
            let p = pool.clone();
            async move { p.run(1, slow(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.run(1, || ()).await, Err(PoolError::Busy));
        assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
        assert_eq!(pool.run(1, || 7).await, Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_are_admitted_by_memory_as_well_as_by_count() {
        // Four workers but 100 MB: three 40 MB jobs never run at once, nor a 100 MB one
        // beside anything else; the largest is admitted alone (it does not wait forever).
        let pool = Arc::new(Pool::new(4, 16, 100 << 20));
        let held = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let job = |cost: u64| {
            let (held, peak) = (held.clone(), peak.clone());
            move || {
                let now = held.fetch_add(cost, Ordering::SeqCst) + cost;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(60));
                held.fetch_sub(cost, Ordering::SeqCst);
            }
        };
        let mut tasks = Vec::new();
        for cost in [40u64 << 20, 40 << 20, 40 << 20, 100 << 20, 500 << 20, 10 << 20] {
            let (p, j) = (pool.clone(), job(cost.min(100 << 20)));
            tasks.push(tokio::spawn(async move { p.run(cost, j).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert!(
            peak.load(Ordering::SeqCst) <= 100 << 20,
            "{}",
            peak.load(Ordering::SeqCst)
        );
    }
}
