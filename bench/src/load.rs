//! Load from real clients: `wrk` runs (optionally pinned to CPUs) read into figures, and a
//! keep-alive HTTP/1.1 connection that tells cache hits from misses.

use std::process::Command;

/// Requests per second and p99 latency (ms) of one `wrk --latency` run.
pub struct Wrk {
    pub rps: f64,
    pub p99_ms: f64,
    /// Requests completed in the run.
    pub requests: u64,
}

/// Runs `wrk -t<threads> -c<conns> -d<seconds>s --latency [-s script] url` and reads its figures;
/// non-2xx answers and socket errors are reported on stderr.
pub fn wrk(url: &str, script: Option<&std::path::Path>, threads: u32, conns: u32, seconds: u32) -> Wrk {
    wrk_on(None, url, script, threads, conns, seconds)
}

/// `wrk`, pinned to the CPU list `cpus` (`taskset -c`) when given.
pub fn wrk_on(
    cpus: Option<&str>,
    url: &str,
    script: Option<&std::path::Path>,
    threads: u32,
    conns: u32,
    seconds: u32,
) -> Wrk {
    let mut cmd = pinned(cpus, "wrk");
    cmd.args([
        format!("-t{threads}"),
        format!("-c{conns}"),
        format!("-d{seconds}s"),
        "--latency".into(),
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd.arg(url).output().expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk output without Requests/sec:\n{text}"));
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| latency_ms(v.trim()))
        .unwrap_or_else(|| panic!("wrk output without 99%:\n{text}"));
    if let Some(l) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        eprintln!("wrk {url}: {l}");
    }
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    Wrk {
        rps,
        p99_ms,
        requests,
    }
}

/// `program`, started under `taskset -c cpus` when a CPU list is given.
pub fn pinned(cpus: Option<&str>, program: &str) -> Command {
    match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", c, program]);
            cmd
        }
        None => Command::new(program),
    }
}

/// wrk's `1.23ms`, `456.00us`, `1.20s` as milliseconds.
fn latency_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// One keep-alive HTTP/1.1 client connection, as the cache benchmarks drive the edge: a request
/// is one write (separate small writes meet Nagle and delayed ACKs, 40 ms each), and a failed or
/// closed connection is opened again.
pub struct KeepAlive {
    addr: std::net::SocketAddr,
    conn: Option<std::io::BufReader<std::net::TcpStream>>,
}

impl KeepAlive {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// `GET path` with `Host: host` until a 200 is read whole; whether it was a cache hit.
    pub fn get(&mut self, path: &str, host: &str) -> bool {
        use std::io::{BufRead, Read, Write};
        loop {
            let addr = self.addr;
            let c = self.conn.get_or_insert_with(|| {
                let s = std::net::TcpStream::connect(addr).expect("connect");
                let _ = s.set_nodelay(true);
                std::io::BufReader::new(s)
            });
            let got = (|| -> std::io::Result<(bool, bool)> {
                c.get_mut()
                    .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
                let (mut len, mut hit, mut close) = (0usize, false, false);
                let mut line = String::new();
                c.read_line(&mut line)?;
                if !line.starts_with("HTTP/1.1 200") {
                    return Err(std::io::Error::other(line.clone()));
                }
                loop {
                    line.clear();
                    c.read_line(&mut line)?;
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    hit |= l == "x-cache: hit";
                    close |= l == "connection: close";
                }
                let mut body = vec![0u8; len];
                c.read_exact(&mut body)?;
                Ok((hit, close))
            })();
            match got {
                Ok((hit, close)) => {
                    if close {
                        self.conn = None;
                    }
                    return hit;
                }
                Err(_) => self.conn = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_latencies_in_milliseconds() {
        for (text, ms) in [("456.00us", 0.456), ("1.23ms", 1.23), ("1.20s", 1200.0)] {
            assert!((super::latency_ms(text) - ms).abs() < 1e-9, "{text}");
        }
        assert!(super::latency_ms("12parsecs").is_nan());
    }
}
