//! The CPU pool for image work: at most `workers` jobs run at once on blocking threads, at most
//! `queue` wait; past that a job is refused at once (the handler answers 503 with `Retry-After`)
//! instead of building an unbounded backlog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::metrics::{POOL_QUEUED, POOL_REJECTED, POOL_RUNNING};

#[derive(Debug)]
pub struct Pool {
    slots: Arc<Semaphore>,
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
    /// `workers == 0` means one per core.
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            workers
        };
        Self {
            slots: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    POOL_REJECTED.inc();
                    return Err(PoolError::Busy);
                }
                POOL_QUEUED.inc();
                // Counted out again even when the request is dropped while it waits.
                let _waiting = Waiting(&self.waiting);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| PoolError::Busy)?
            }
        };
        POOL_RUNNING.inc();
        let result = tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await;
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
    use std::time::Duration;

    #[tokio::test]
    async fn full_queue_refuses_at_once() {
        let pool = Arc::new(Pool::new(1, 1));
        let slow = |ms| move || std::thread::sleep(Duration::from_millis(ms));
        let a = tokio::spawn({
            let p = pool.clone();
            async move { p.run(slow(300)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = tokio::spawn({
            let p = pool.clone();
            async move { p.run(slow(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.run(|| ()).await, Err(PoolError::Busy));
        assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
