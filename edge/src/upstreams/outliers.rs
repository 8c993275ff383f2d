//! Passive outlier detection (Envoy's, in short): every request's outcome at a node is a vote;
//! `eject_after` failures in a row (a connect error, an error or timeout mid-request, a 502/503,
//! or an answer whose headers took longer than `slow_after`) eject the node for `eject_time`,
//! doubling while it keeps failing its first request back (up to `max_eject_time`). An ejected
//! node is skipped by the balancer as a down one is, but never more than half the nodes at once:
//! the health checks say whether a node is up, this says whether it is serving well. No I/O here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub eject_after: u32,
    pub eject_time: Duration,
    pub max_eject_time: Duration,
    pub slow_after: Duration,
}

#[derive(Debug, Default, Clone)]
struct Node {
    failures: u32,
    until: Option<Instant>,
    time: Duration,
}

#[derive(Debug)]
pub struct Outliers {
    policy: Policy,
    nodes: Mutex<HashMap<SocketAddr, Node>>,
    total: usize,
}

/// What one attempt at a node came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    /// Answered, within `slow_after`.
    Good,
    /// Failed, or answered too slowly.
    Bad,
}

impl Outliers {
    pub fn new(policy: Policy, total: usize) -> Self {
        Self {
            policy,
            nodes: Mutex::new(HashMap::new()),
            total,
        }
    }

    /// A good answer, or a bad one by its latency.
    pub fn vote_for(&self, latency: Duration) -> Vote {
        if latency >= self.policy.slow_after {
            Vote::Bad
        } else {
            Vote::Good
        }
    }

    /// Whether `addr` is ejected now.
    pub fn ejected(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.nodes
            .lock()
            .get(addr)
            .and_then(|n| n.until)
            .is_some_and(|t| t > now)
    }

    /// Forgets what was seen of `addr` (the health checks saw it come back up).
    pub fn forget(&self, addr: &SocketAddr) {
        self.nodes.lock().remove(addr);
    }

    /// Records one attempt's outcome; true when it ejected the node.
    pub fn record(&self, addr: SocketAddr, vote: Vote, now: Instant) -> bool {
        let p = self.policy;
        let mut nodes = self.nodes.lock();
        let ejected_now = nodes
            .values()
            .filter(|n| n.until.is_some_and(|t| t > now))
            .count();
        let node = nodes.entry(addr).or_insert_with(|| Node {
            time: p.eject_time,
            ..Node::default()
        });
        if vote == Vote::Good {
            node.failures = 0;
            node.until = None;
            node.time = p.eject_time;
            return false;
        }
        if node.until.is_some_and(|t| t > now) {
            return false; // already out: a request that was on its way when it was ejected
        }
        node.failures += 1;
        if node.failures < p.eject_after {
            return false;
        }
        // Never more than half the nodes out at once: the rest must carry the load.
        if (ejected_now + 1) * 2 > self.total {
            return false;
        }
        let back_from_ejection = node.failures > p.eject_after;
        if back_from_ejection {
            node.time = (node.time * 2).min(p.max_eject_time);
        }
        node.until = Some(now + node.time);
        // One short of the threshold: its first request back decides.
        node.failures = p.eject_after;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            eject_after: 3,
            eject_time: Duration::from_secs(10),
            max_eject_time: Duration::from_secs(30),
            slow_after: Duration::from_secs(2),
        }
    }

    #[test]
    fn failures_in_a_row_eject_and_the_first_request_back_decides() {
        let o = Outliers::new(policy(), 3);
        let (a, b) = ("10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(o.vote_for(Duration::from_millis(1999)), Vote::Good);
        assert_eq!(o.vote_for(Duration::from_secs(2)), Vote::Bad);
        assert!(!o.record(a, Vote::Bad, t0));
        assert!(!o.record(a, Vote::Bad, t0));
        assert!(
            !o.record(a, Vote::Good, t0),
            "a good answer starts the count again"
        );
        assert!(!o.record(a, Vote::Bad, t0) && !o.record(a, Vote::Bad, t0));
        assert!(o.record(a, Vote::Bad, t0), "three in a row");
        assert!(o.ejected(&a, t0) && !o.ejected(&a, t0 + Duration::from_secs(10)));
        // Half the nodes at most: with a out, b cannot be ejected as well (3 nodes).
        for _ in 0..5 {
            assert!(!o.record(b, Vote::Bad, t0));
        }
        assert!(!o.ejected(&b, t0));
        // Back after 10 s: one bad answer ejects it for twice as long, capped at 30 s.
        let t1 = t0 + Duration::from_secs(10);
        assert!(o.record(a, Vote::Bad, t1));
        assert!(o.ejected(&a, t1 + Duration::from_secs(19)) && !o.ejected(&a, t1 + Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(20);
        assert!(o.record(a, Vote::Bad, t2));
        assert!(
            !o.ejected(&a, t2 + Duration::from_secs(30)),
            "capped at max_eject_time"
        );
        // A good answer on its return closes the story.
        let t3 = t2 + Duration::from_secs(30);
        assert!(!o.record(a, Vote::Good, t3));
        assert!(!o.record(a, Vote::Bad, t3), "counting from zero again");
        // Seen up again by the health checks: a clean record.
        assert!(!o.record(a, Vote::Bad, t3) && o.record(a, Vote::Bad, t3) && o.ejected(&a, t3));
        o.forget(&a);
        assert!(!o.ejected(&a, t3));
    }

    #[test]
    fn one_node_alone_is_never_ejected() {
        let o = Outliers::new(policy(), 1);
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(!o.record(a, Vote::Bad, t0));
        }
        assert!(!o.ejected(&a, t0));
    }
}
