//! Progress for the one-shot commands (`sync --once`, `scrub --once`), on stderr: one line
//! rewritten in place on a terminal, with a bar when the share done is known, and a plain line
//! every few seconds otherwise (a log file or a pipe), so log lines never glue onto a
//! half-written one.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Reporter {
    tty: bool,
    last: Option<Instant>,
    started: Instant,
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }
}

impl Reporter {
    pub fn new(tty: bool) -> Self {
        Self {
            tty,
            last: None,
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shows the current state (rate-limited when not on a terminal).
    pub fn update(&mut self, line: &str) {
        self.progress(None, line);
    }

    /// Shows the current state with how much is done (0…1) when that is known: a bar before
    /// the line on a terminal, the percentage in the periodic plain lines otherwise.
    pub fn progress(&mut self, done: Option<f64>, line: &str) {
        let mut err = std::io::stderr().lock();
        let line = match (done, self.tty) {
            (Some(f), true) => format!("{} {line}", bar(f, 24)),
            (Some(f), false) => format!("{:.0}% · {line}", f.clamp(0.0, 1.0) * 100.0),
            (None, _) => line.to_string(),
        };
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else if self.last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            let _ = writeln!(err, "{line}");
            self.last = Some(Instant::now());
        } else {
            return;
        }
        let _ = err.flush();
    }

    /// Ends the progress display with a final line.
    pub fn finish(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            writeln!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
    }
}

/// `[#########---------------]  37%`: `done` (0…1) of `width` cells.
pub fn bar(done: f64, width: usize) -> String {
    let done = if done.is_finite() {
        done.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (done * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        "-".repeat(width - filled),
        done * 100.0
    )
}

/// How much of a queue is done: items finished against those finished plus those left.
pub fn fraction(finished: u64, left: u64) -> Option<f64> {
    let all = finished + left;
    (all > 0).then(|| finished as f64 / all as f64)
}

/// `done` of `total`-ish work at `rate` per second: the ETA for `left`, or `?` before any rate.
pub fn eta(left: u64, rate: f64) -> String {
    if rate > 0.0 {
        format!("{:.0}s", left as f64 / rate)
    } else {
        "?".into()
    }
}

/// The end of a scrub's summary line naming the fileservers it could not check.
pub fn not_checked(unreachable: &[String]) -> String {
    if unreachable.is_empty() {
        String::new()
    } else {
        format!(
            "; NOT checked (did not answer): {}; run again when they are up",
            unreachable.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_table() {
        assert_eq!(bar(0.0, 4), "[----]   0%");
        assert_eq!(bar(0.5, 4), "[##--]  50%");
        assert_eq!(bar(1.0, 4), "[####] 100%");
        assert_eq!(bar(2.0, 4), "[####] 100%", "clamped");
        assert_eq!(bar(f64::NAN, 4), "[----]   0%");
        assert_eq!(fraction(0, 0), None);
        assert_eq!(fraction(1, 3), Some(0.25));
    }

    #[test]
    fn eta_table() {
        assert_eq!(eta(100, 10.0), "10s");
        assert_eq!(eta(0, 10.0), "0s");
        assert_eq!(eta(5, 0.0), "?");
    }
}
