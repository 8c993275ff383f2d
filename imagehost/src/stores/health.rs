//! What reads have seen of each fileserver, and the decisions made from it (no I/O here): the
//! order to try them in (best recent latency first, a tripped one last), how long to wait for
//! the first before asking the next (the hedge delay: the recent p95 of answers, clamped), and
//! a circuit breaker that skips a fileserver after consecutive failures or stalls and lets one
//! read probe it again when its cool-down ends (doubling while it keeps failing). A latency not
//! measured again fades (halving every `breaker_cooldown`), so a fileserver that was slow once
//! is tried first again later rather than never re-measured behind a healthy one.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::ReadsConfig;

/// How one read of one fileserver ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It answered (the object, or that it has no such object).
    Answered,
    /// It failed (connection refused, timeout, 5xx…).
    Failed,
    /// Another fileserver answered first and this read was dropped after running this long.
    Abandoned,
}

/// Samples of answer latency kept for the hedge delay.
const WINDOW: usize = 64;
/// Weight of a new sample in the moving average.
const ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Default)]
struct Server {
    /// Moving average of answer latency, in seconds; `None` until one is seen (or after the
    /// breaker re-opens the door: it is then tried first, as a probe).
    ewma: Option<f64>,
    /// When `ewma` was last updated.
    at: Option<Instant>,
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
}

#[derive(Debug)]
pub struct Health {
    config: ReadsConfig,
    servers: Mutex<Vec<Server>>,
    /// The latest answer latencies of every fileserver, in seconds (a ring).
    recent: Mutex<(Vec<f64>, usize)>,
}

impl Health {
    pub fn new(config: ReadsConfig, servers: usize) -> Self {
        let cooldown = config.breaker_cooldown;
        Self {
            config,
            servers: Mutex::new(vec![
                Server {
                    cooldown,
                    ..Server::default()
                };
                servers
            ]),
            recent: Mutex::new((Vec::with_capacity(WINDOW), 0)),
        }
    }

    /// The order to try the fileservers in: closed breakers by latency (unknown first, then
    /// configured order on ties), then tripped ones, soonest to reopen first.
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let half_life = self.config.breaker_cooldown.as_secs_f64();
        let mut servers = self.servers.lock();
        let mut order: Vec<(bool, f64, usize)> = servers
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                let open = match s.open_until {
                    Some(t) if t > now => true,
                    Some(_) => {
                        // Cool-down over: half open. One read tries it first; a failure trips
                        // it again at once (failures are kept one short of the threshold).
                        s.open_until = None;
                        s.ewma = None;
                        false
                    }
                    None => false,
                };
                let rank = match (open, s.open_until) {
                    (true, Some(t)) => t.saturating_duration_since(now).as_secs_f64(),
                    _ => s.ewma.map_or(0.0, |e| {
                        let age =
                            s.at.map_or(0.0, |a| now.saturating_duration_since(a).as_secs_f64());
                        e * 0.5f64.powf(age / half_life)
                    }),
                };
                (open, rank, i)
            })
            .collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        order.into_iter().map(|(_, _, i)| i).collect()
    }

    /// How long to wait for a read before asking the next fileserver as well.
    pub fn hedge_delay(&self) -> Duration {
        let recent = self.recent.lock();
        let samples = &recent.0;
        if samples.len() < 8 {
            return self.config.hedge_max;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
        Duration::from_secs_f64(p95).clamp(self.config.hedge_min, self.config.hedge_max)
    }

    /// Whether fileserver `i`'s breaker is open now.
    pub fn is_open(&self, i: usize, now: Instant) -> bool {
        self.servers
            .lock()
            .get(i)
            .and_then(|s| s.open_until)
            .is_some_and(|t| t > now)
    }

    /// Records how a read of fileserver `i` ended after `elapsed`; true when this tripped its
    /// breaker.
    pub fn record(
        &self,
        i: usize,
        outcome: Outcome,
        elapsed: Duration,
        hedge_delay: Duration,
        now: Instant,
    ) -> bool {
        let secs = elapsed.as_secs_f64();
        let mut servers = self.servers.lock();
        let Some(s) = servers.get_mut(i) else {
            return false;
        };
        // A read dropped before the hedge delay says nothing about this fileserver.
        let failed = match outcome {
            Outcome::Answered => false,
            Outcome::Failed => true,
            Outcome::Abandoned => elapsed >= hedge_delay,
        };
        if outcome != Outcome::Failed && (outcome == Outcome::Answered || failed) {
            // An abandoned read took at least this long: a lower bound, still a sample.
            s.ewma = Some(match s.ewma {
                Some(e) => e + ALPHA * (secs - e),
                None => secs,
            });
            s.at = Some(now);
        }
        if outcome == Outcome::Answered {
            let mut recent = self.recent.lock();
            let (ring, next) = &mut *recent;
            if ring.len() < WINDOW {
                ring.push(secs);
            } else {
                ring[*next] = secs;
            }
            *next = (*next + 1) % WINDOW;
            s.failures = 0;
            s.cooldown = self.config.breaker_cooldown;
            return false;
        }
        if !failed {
            return false;
        }
        s.failures += 1;
        if s.failures < self.config.breaker_failures {
            return false;
        }
        let was_probe = s.failures > self.config.breaker_failures;
        if was_probe {
            s.cooldown = (s.cooldown * 2).min(self.config.breaker_max_cooldown);
        }
        s.open_until = Some(now + s.cooldown);
        // One short of the threshold: after the cool-down, one more failure trips it again.
        s.failures = self.config.breaker_failures;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_fastest_goes_first_and_a_tripped_one_last_until_its_probe() {
        let h = Health::new(ReadsConfig::default(), 3);
        let t0 = Instant::now();
        assert_eq!(
            h.order(t0),
            [0, 1, 2],
            "configured order until something is known"
        );
        let d = h.hedge_delay();
        assert_eq!(d, ms(500), "hedge_max until enough answers are seen");
        for _ in 0..10 {
            h.record(0, Outcome::Answered, ms(30), d, t0);
            h.record(1, Outcome::Answered, ms(5), d, t0);
            h.record(2, Outcome::Answered, ms(10), d, t0);
        }
        assert_eq!(h.order(t0), [1, 2, 0]);
        let d = h.hedge_delay();
        assert!(d >= ms(20) && d <= ms(30), "recent p95, clamped: {d:?}");
        // Fileserver 1 stalls: reads abandoned past the delay count as failures.
        assert!(
            !h.record(1, Outcome::Abandoned, ms(5), d, t0),
            "dropped early: no verdict"
        );
        assert!(!h.record(1, Outcome::Abandoned, d, d, t0));
        assert!(!h.record(1, Outcome::Failed, ms(1), d, t0));
        assert!(
            h.record(1, Outcome::Abandoned, d * 3, d, t0),
            "third failure trips it"
        );
        assert!(h.is_open(1, t0));
        assert_eq!(h.order(t0), [2, 0, 1], "tripped: last");
        // After the cool-down, one read probes it first; a failure trips it for twice as long.
        let t1 = t0 + ms(5_001);
        assert_eq!(h.order(t1)[0], 1, "probe");
        assert!(
            h.record(1, Outcome::Failed, ms(1), d, t1),
            "a failed probe trips at once"
        );
        assert!(h.is_open(1, t1 + ms(9_999)) && !h.is_open(1, t1 + ms(10_001)));
        // A probe that answers closes it for good.
        let t2 = t1 + ms(10_001);
        assert_eq!(h.order(t2)[0], 1);
        assert!(!h.record(1, Outcome::Answered, ms(4), d, t2));
        assert!(
            !h.record(1, Outcome::Failed, ms(1), d, t2),
            "one failure after recovery: not tripped"
        );
        assert!(!h.is_open(1, t2));
    }

    #[test]
    fn a_slow_spell_fades_so_the_fileserver_is_measured_again() {
        let h = Health::new(ReadsConfig::default(), 2);
        let t0 = Instant::now();
        let d = ms(150);
        h.record(0, Outcome::Abandoned, ms(150), d, t0);
        h.record(1, Outcome::Answered, ms(5), d, t0);
        assert_eq!(h.order(t0), [1, 0]);
        // fs1 keeps being read (and measured); fs0, not read, fades.
        let t1 = t0 + ms(10_000);
        h.record(1, Outcome::Answered, ms(5), d, t1);
        assert_eq!(h.order(t1), [1, 0], "150 ms halved twice is still slower");
        let t2 = t0 + ms(30_000);
        h.record(1, Outcome::Answered, ms(5), d, t2);
        assert_eq!(h.order(t2), [0, 1], "faded below 5 ms: tried first again");
    }
}
