//! Hedged reads (the tail-at-scale technique): one read goes to the fileserver [`Health`] ranks
//! first; when it has not answered within the hedge delay, the same read goes to the next one
//! as well, and whichever answers first with the object wins (the others are dropped, which
//! cancels them). A fileserver that answers "not found" or fails hands over to the next at
//! once. Every ending is recorded, so a stalled fileserver sinks in the order and trips its
//! breaker.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use blobstore::StoreError;
use futures::stream::{FuturesUnordered, StreamExt};

use super::health::{Health, Outcome};
use super::Fileserver;
use crate::metrics::{READ_BREAKER_OPEN, READ_FALLBACKS, READ_HEDGES};

/// How a hedged read ended.
#[derive(Debug)]
pub enum Raced<T> {
    /// Fileserver `index` answered with the object.
    Found(usize, T),
    /// Every fileserver answered that it has no such object.
    NotFound,
    /// None had it and at least one could not be asked.
    Unavailable,
    /// An answer that ends the read whoever gives it (e.g. a range past the end).
    Final(StoreError),
}

type Attempt<'a, T> =
    Pin<Box<dyn Future<Output = (usize, Instant, Result<Option<T>, StoreError>)> + Send + 'a>>;

/// Runs `read` against the fileservers, hedged. `read` answers `Ok(None)` for "not here";
/// errors for which `is_final` holds end the race at once.
pub async fn race<'a, T, F, Fut>(
    health: &Health,
    servers: &'a [Fileserver],
    read: F,
    is_final: impl Fn(&StoreError) -> bool,
) -> Raced<T>
where
    F: Fn(&'a Fileserver) -> Fut,
    Fut: Future<Output = Result<Option<T>, StoreError>> + Send + 'a,
    T: Send + 'a,
{
    let now = Instant::now();
    let order = health.order(now);
    let delay = health.hedge_delay();
    let mut next = 0;
    let mut running: FuturesUnordered<Attempt<'a, T>> = FuturesUnordered::new();
    let mut started: Vec<(usize, Instant)> = Vec::new();
    let mut unavailable = false;
    let launch =
        |i: usize, running: &mut FuturesUnordered<Attempt<'a, T>>, started: &mut Vec<(usize, Instant)>| {
            let t = Instant::now();
            started.push((i, t));
            let fut = read(&servers[i]);
            running.push(Box::pin(async move { (i, t, fut.await) }));
        };
    if let Some(&i) = order.first() {
        launch(i, &mut running, &mut started);
        next = 1;
    }
    loop {
        let more = next < order.len();
        let ended = if more {
            tokio::select! {
                ended = running.next() => ended,
                _ = tokio::time::sleep(delay) => {
                    // Unanswered within the delay: ask the next one too.
                    READ_HEDGES.with_label_values(&[servers[order[next]].name.as_str()]).inc();
                    launch(order[next], &mut running, &mut started);
                    next += 1;
                    continue;
                }
            }
        } else {
            running.next().await
        };
        let Some((i, t, result)) = ended else {
            return if unavailable {
                Raced::Unavailable
            } else {
                Raced::NotFound
            };
        };
        started.retain(|(j, _)| *j != i);
        let outcome = match &result {
            Ok(_) => Outcome::Answered,
            Err(e) if e.is_not_found() => Outcome::Answered,
            Err(_) => Outcome::Failed,
        };
        note(health, servers, i, outcome, t.elapsed(), delay);
        match result {
            Ok(Some(v)) => {
                // The rest lost the race: dropping them cancels them.
                for (j, t) in started {
                    note(health, servers, j, Outcome::Abandoned, t.elapsed(), delay);
                }
                return Raced::Found(i, v);
            }
            Ok(None) => {}
            Err(e) if is_final(&e) => return Raced::Final(e),
            Err(e) => {
                unavailable |= !e.is_not_found();
                READ_FALLBACKS
                    .with_label_values(&[servers[i].name.as_str(), e.kind()])
                    .inc();
                if !e.is_not_found() {
                    tracing::warn!(fileserver = %servers[i].name, error = %e, "read failed; asking the next fileserver");
                }
            }
        }
        // Not here, or failed: the next one at once rather than after the delay.
        if next < order.len() {
            launch(order[next], &mut running, &mut started);
            next += 1;
        }
    }
}

fn note(
    health: &Health,
    servers: &[Fileserver],
    i: usize,
    outcome: Outcome,
    elapsed: std::time::Duration,
    delay: std::time::Duration,
) {
    let now = Instant::now();
    if health.record(i, outcome, elapsed, delay, now) {
        tracing::warn!(
            fileserver = %servers[i].name,
            "fileserver failing or stalling: tried last until its cool-down ends"
        );
    }
    READ_BREAKER_OPEN
        .with_label_values(&[servers[i].name.as_str()])
        .set(health.is_open(i, now) as i64);
}
