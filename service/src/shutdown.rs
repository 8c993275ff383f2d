//! Shutdown: one token cancelled by SIGTERM/SIGINT (or by a test), and a bounded drain.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown signal. `run` functions select on [`Shutdown::cancelled`].
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self(CancellationToken::new())
    }

    /// A token cancelled on the first SIGTERM or SIGINT. Must be called inside a Tokio runtime.
    pub fn on_signals() -> Self {
        let s = Self::new();
        let trigger = s.clone();
        tokio::spawn(async move {
            let name = wait_for_signal().await;
            tracing::info!(signal = name, "shutdown requested; draining");
            trigger.trigger();
        });
        s
    }

    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }

    pub fn token(&self) -> CancellationToken {
        self.0.clone()
    }

    /// Runs `work` to completion unless shutdown was requested and `drain` then elapsed first.
    /// Returns `None` when the drain deadline cut the work short.
    pub async fn drain<F: Future>(&self, drain: Duration, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        tokio::select! {
            out = &mut work => Some(out),
            _ = async { self.cancelled().await; tokio::time::sleep(drain).await } => {
                tracing::warn!(?drain, "drain deadline passed; abandoning remaining work");
                None
            }
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_finishes_quick_work_and_cuts_slow_work() {
        let s = Shutdown::new();
        assert_eq!(s.drain(Duration::from_millis(50), async { 7 }).await, Some(7));
        s.trigger();
        let slow = tokio::time::sleep(Duration::from_secs(30));
        let started = std::time::Instant::now();
        assert_eq!(s.drain(Duration::from_millis(50), slow).await, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
