//! The queue's counts for `/status` and the gauges. Counting walks every pending item, so a
//! large backlog (a fileserver down for hours) makes it cost seconds. A costly count is reused
//! for a while, made on the blocking pool by one caller at a time (the others get the last
//! one), and finished and recorded even if the caller that started it goes away; so neither
//! polling nor an unauthenticated `/status` flood keeps a core counting or allocates in
//! proportion to the backlog. A cheap count (a queue of a few thousand items) is made again for
//! every caller, so the figures are exact whenever exactness is cheap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::queue::{Queue, Summary};

/// A count that took at least this long is reused for [`REUSE_FACTOR`] times its cost.
const COSTLY: Duration = Duration::from_millis(10);
const REUSE_FACTOR: u32 = 50;

/// Whether a count `age` old, which cost `took`, may still be reused.
pub fn is_fresh(age: Duration, took: Duration) -> bool {
    took >= COSTLY && age < took * REUSE_FACTOR
}

#[derive(Clone)]
struct Counted {
    summary: Summary,
    at: Instant,
    took: Duration,
    generation: u64,
}

#[derive(Default)]
struct Shared {
    last: Mutex<Option<Counted>>,
    counting: AtomicBool,
    /// Bumped by [`Counts::forget`]: counts started before it are not reused after it.
    generation: AtomicU64,
}

pub struct Counts {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
}

impl Counts {
    pub fn new(queue: Arc<Queue>) -> Self {
        Self {
            queue,
            shared: Arc::default(),
        }
    }

    /// The queue's counts: the last ones while fresh, else counted now.
    pub async fn get(&self) -> Summary {
        let generation = self.shared.generation.load(SeqCst);
        let last = self.shared.last.lock().ok().and_then(|g| g.clone());
        let current = last.filter(|c| c.generation == generation);
        if let Some(c) = &current {
            if is_fresh(c.at.elapsed(), c.took) {
                return c.summary.clone();
            }
        }
        let owner = !self.shared.counting.swap(true, SeqCst);
        if !owner {
            if let Some(c) = current {
                return c.summary; // another caller is counting; this one was current
            }
        }
        let (queue, shared) = (self.queue.clone(), self.shared.clone());
        // Detached: the count is finished, recorded and its flag cleared even if this caller is
        // dropped (a client that hangs up).
        let count = tokio::spawn(async move {
            let started = Instant::now();
            let counted = tokio::task::spawn_blocking(move || queue.summary()).await;
            if let Ok(summary) = &counted {
                if let Ok(mut g) = shared.last.lock() {
                    if shared.generation.load(SeqCst) == generation {
                        *g = Some(Counted {
                            summary: summary.clone(),
                            at: Instant::now(),
                            took: started.elapsed(),
                            generation,
                        });
                    }
                }
            }
            if owner {
                shared.counting.store(false, SeqCst);
            }
            counted.ok()
        });
        count.await.ok().flatten().unwrap_or_default()
    }

    /// Forgets the last count, so the next caller counts again: call when a pass has finished
    /// and before saying so, since callers wait on what it left (`untried`).
    pub fn forget(&self) {
        self.shared.generation.fetch_add(1, SeqCst);
        if let Ok(mut g) = self.shared.last.lock() {
            *g = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Action;

    #[test]
    fn a_count_is_reused_only_when_it_was_costly() {
        let ms = Duration::from_millis;
        let cases = [
            // (age, cost, reused)
            (ms(0), ms(1), false),
            (ms(1), ms(9), false),
            (ms(499), ms(10), true),
            (ms(500), ms(10), false),
            (ms(74_999), ms(1_500), true),
            (ms(75_000), ms(1_500), false),
        ];
        for (age, took, want) in cases {
            assert_eq!(is_fresh(age, took), want, "{age:?} {took:?}");
        }
    }

    #[tokio::test]
    async fn a_cheap_count_is_exact_and_forget_drops_the_last() {
        let q = Arc::new(Queue::temporary().unwrap());
        let counts = Counts::new(q.clone());
        assert_eq!(counts.get().await.backlog, 0);
        q.enqueue("uploads", "D1", Action::Copy, 1, &[]).unwrap();
        assert_eq!(counts.get().await.backlog, 1, "a cheap count is made again");
        counts.forget();
        assert!(counts.shared.last.lock().unwrap().is_none());
        assert_eq!(counts.get().await.untried, 1);
        assert!(!counts.shared.counting.load(SeqCst), "the flag is cleared");
    }

    #[tokio::test]
    async fn a_dropped_caller_still_clears_the_flag() {
        let q = Arc::new(Queue::temporary().unwrap());
        for i in 0..2_000 {
            q.enqueue("uploads", &format!("D{i}"), Action::Copy, 1, &[])
                .unwrap();
        }
        let counts = Counts::new(q);
        // Dropped at its first await, while the count runs.
        let _ = tokio::time::timeout(Duration::ZERO, counts.get()).await;
        for _ in 0..500 {
            if !counts.shared.counting.load(SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !counts.shared.counting.load(SeqCst),
            "the detached count finished"
        );
        assert_eq!(counts.get().await.backlog, 2_000);
    }
}
