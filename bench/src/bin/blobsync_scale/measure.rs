//! `blobsync_scale`'s measures: CPU time (the daemon's and its own), peak RSS, and the time until
//! a burst's copies land.

use std::path::Path;
use std::time::{Duration, Instant};

use bench::arrivals::Arrivals;

use super::SIZE;

/// The peak resident memory of process `pid` so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Writes back everything dirty before a timed phase: the seeding leaves up to gigabytes of
/// unwritten files, and a burst's fsyncs would queue behind them (more of them at a larger N)
/// while the floor, measured later, would not.
pub fn settle() {
    let synced = std::process::Command::new("sync").status();
    assert!(synced.as_ref().is_ok_and(|s| s.success()), "sync: {synced:?}");
}

/// CPU time a process has used so far, in ns (every thread's, from the scheduler's accounting).
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time this process has used so far, in ns, its exited threads' included (the senders'
/// end with the burst).
#[allow(unsafe_code)]
pub fn own_cpu_ns() -> u64 {
    // SAFETY: rusage is plain integers (all zeroes is a valid value), and getrusage only writes
    // the struct it is given.
    let (u, ok) = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        let ok = libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0;
        (u, ok)
    };
    if !ok {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(u.ru_utime) + ns(u.ru_stime)
}

/// Runs `work` (given the start) while a thread of its own waits for the copies of `seeds` to be
/// renamed into `copies`: ms from the start until the last of them arrived. The burst and the
/// floor are timed alike, to the same point (a copy's rename), by the same watcher, which wakes
/// as each group of copies lands and so shares the cores with either the same way.
pub fn until_copied(copies: &Path, seeds: &[u64], work: impl FnOnce(Instant)) -> f64 {
    let names: Vec<String> = seeds
        .iter()
        .map(|s| harness::content::upload(*s, SIZE).0)
        .collect();
    let arrivals = Arrivals::watch(copies).expect("inotify on the target");
    let t = Instant::now();
    let took = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            arrivals
                .wait_for(&names, Duration::from_secs(600))
                .expect("every copy lands");
            t.elapsed()
        });
        work(t);
        watcher.join().expect("the watcher")
    });
    took.as_secs_f64() * 1e3
}
