//! Single-flight: concurrent requests for one key share one piece of work. The work runs as its
//! own task, so a client that disconnects never cancels it for the others, and the key is
//! released when it finishes (successes are then found in the caches; failures are retried).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::metrics::COALESCED;

type Running<T> = Arc<Mutex<HashMap<String, Shared<BoxFuture<'static, Option<T>>>>>>;

pub struct Flights<T: Clone + Send + Sync + 'static> {
    running: Running<T>,
}

impl<T: Clone + Send + Sync + 'static> Default for Flights<T> {
    fn default() -> Self {
        Self {
            running: Arc::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Runs `work` for `key`, or joins the run already in flight. `None` only if the work panicked.
    pub async fn run<F>(&self, key: &str, work: F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let shared = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = running.get(key) {
                COALESCED.inc();
                s.clone()
            } else {
                let map = self.running.clone();
                let k = key.to_string();
                let task = tokio::spawn(async move {
                    let out = work.await;
                    map.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
                    out
                });
                let s = async move { task.await.ok() }.boxed().shared();
                running.insert(key.to_string(), s.clone());
                s
            }
        };
        shared.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn one_run_for_many_waiters_then_released() {
        let flights: Arc<Flights<usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let waiters = (0..50).map(|_| {
            let (f, runs) = (flights.clone(), runs.clone());
            tokio::spawn(async move {
                f.run("k", async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await
            })
        });
        for w in futures::future::join_all(waiters).await {
            assert_eq!(w.unwrap(), Some(1));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let again = flights.run("k", async { 2 }).await;
        assert_eq!(again, Some(2), "a finished key runs again");
    }
}
