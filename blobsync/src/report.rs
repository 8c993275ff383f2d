//! Progress for the one-shot commands (`sync --once`, `scrub --once`), on stderr: one line
//! rewritten in place on a terminal, and a plain line every few seconds otherwise (a log file or
//! a pipe), so log lines never glue onto a half-written one.

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
        let mut err = std::io::stderr().lock();
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

/// `done` of `total`-ish work at `rate` per second: the ETA for `left`, or `?` before any rate.
pub fn eta(left: u64, rate: f64) -> String {
    if rate > 0.0 {
        format!("{:.0}s", left as f64 / rate)
    } else {
        "?".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_table() {
        assert_eq!(eta(100, 10.0), "10s");
        assert_eq!(eta(0, 10.0), "0s");
        assert_eq!(eta(5, 0.0), "?");
    }
}
