//! Paired rounds: the edge and one peer run side by side, warmed once each, then measured in
//! turn, round after round, the one that goes first changing every round. On a shared machine
//! whose speed drifts between runs (the edge alone has measured from 43,000 to 59,000
//! requests/s minutes apart), a single run of each compares two different machines; pairs taken
//! seconds apart compare the servers. Medians over the rounds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use bench::median;

/// What one measured turn gave.
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    pub rps: f64,
    pub p99_ms: f64,
    pub hit_ratio: f64,
}

/// The medians over the rounds, each side's and of the per-round ratios (ours / theirs).
pub struct Medians {
    pub ours: Turn,
    pub theirs: Turn,
    pub ratio: Turn,
}

/// Measures `ours` and `theirs` (both already serving) in `rounds` pairs of `seconds` each, after
/// a `warm`-second run of each; the origin's fetch counter tells each turn's hit ratio, since
/// only one server has load at a time. `drive(addr, seed, seconds)` runs the load.
pub fn rounds(
    ours: SocketAddr,
    theirs: SocketAddr,
    rounds: usize,
    (warm, seconds): (u32, u32),
    fetches: &AtomicUsize,
    drive: &dyn Fn(SocketAddr, u32, u32) -> bench::Wrk,
) -> Medians {
    drive(ours, 1, warm);
    drive(theirs, 1, warm);
    let turn = |addr: SocketAddr, seed: u32| {
        let before = fetches.load(Ordering::Relaxed);
        let w = drive(addr, seed, seconds);
        let fetched = fetches.load(Ordering::Relaxed) - before;
        Turn {
            rps: w.rps,
            p99_ms: w.p99_ms,
            hit_ratio: 1.0 - fetched as f64 / w.requests.max(1) as f64,
        }
    };
    let mut pairs = Vec::with_capacity(rounds);
    for r in 0..rounds {
        // A new stretch of the trace each round, the same for both.
        let seed = 10 + r as u32;
        let (o, t) = if r % 2 == 0 {
            let o = turn(ours, seed);
            (o, turn(theirs, seed))
        } else {
            let t = turn(theirs, seed);
            (turn(ours, seed), t)
        };
        println!(
            "  round {}: edge {:.0} req/s, p99 {:.2} ms, hits {:.1} % | peer {:.0} req/s, p99 {:.2} ms, hits {:.1} % | {:.2}x, {:.2}x",
            r + 1,
            o.rps,
            o.p99_ms,
            o.hit_ratio * 100.0,
            t.rps,
            t.p99_ms,
            t.hit_ratio * 100.0,
            o.rps / t.rps,
            o.p99_ms / t.p99_ms
        );
        pairs.push((o, t));
    }
    let side = |f: &dyn Fn(&(Turn, Turn)) -> Turn| Turn {
        rps: median(pairs.iter().map(|p| f(p).rps).collect()),
        p99_ms: median(pairs.iter().map(|p| f(p).p99_ms).collect()),
        hit_ratio: median(pairs.iter().map(|p| f(p).hit_ratio).collect()),
    };
    Medians {
        ours: side(&|p| p.0),
        theirs: side(&|p| p.1),
        ratio: side(&|(o, t)| Turn {
            rps: o.rps / t.rps,
            p99_ms: o.p99_ms / t.p99_ms,
            hit_ratio: o.hit_ratio / t.hit_ratio,
        }),
    }
}
