//! A fault injector: a TCP proxy on loopback placed between two services, whose behaviour is
//! switched while a test runs (this kernel has no netem). It can pass traffic, add latency to
//! the answers, accept and then never answer, stall an answer part-way, cut connections, cap
//! the bandwidth, or swallow everything (a blackhole). The fault applies to the server's answers
//! (what a client waits on); requests always go through, so a stalled server still "received"
//! the request, as an overloaded one does. One thread per direction per connection.
//! [`on_small_disk`] gives a process a small disk of its own, to fill up.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the proxy treats connections from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Everything passes as it is.
    Pass,
    /// Each chunk of the answer waits this long before it is passed on.
    Latency(Duration),
    /// Connections are accepted and requests forwarded, but no answer byte ever comes back.
    Stall,
    /// The first `n` bytes of each answer pass; then it stalls.
    StallAfter(usize),
    /// New connections are closed at once; open ones are cut on their next chunk.
    Cut,
    /// Answers pass at most this many bytes a second.
    Bandwidth(u64),
    /// Connections are accepted and everything sent is read and dropped; nothing is forwarded.
    Blackhole,
}

struct Shared {
    fault: Mutex<Fault>,
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Answer bytes passed on to clients.
    answered: AtomicUsize,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fault proxy in front of `upstream`; stopped when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// How long a stalled or blackholed connection is held at most (tests end long before).
const HOLD: Duration = Duration::from_secs(600);
const CHUNK: usize = 16 << 10;

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, passing everything at first.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        s.connections.fetch_add(1, Ordering::Relaxed);
                        let s = s.clone();
                        std::thread::spawn(move || serve(client, upstream, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the behaviour; it applies to open connections at their next chunk.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Answer bytes passed on to clients so far (whether the server behind is being used).
    pub fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// `cmd`, to be run with a `bytes`-sized tmpfs mounted at `mount_at`: a disk that fills up on
/// demand. The command runs in its own user and mount namespaces (`unshare -Urm`, no root
/// needed; the network is shared, so it still listens on this loopback), with the same
/// arguments, environment and working directory; `unshare` execs it, so its PID is the child's.
pub fn on_small_disk(cmd: &Command, mount_at: &Path, bytes: u64) -> Command {
    let mut w = Command::new("unshare");
    w.args([
        "-Urm",
        "sh",
        "-c",
        r#"mount -t tmpfs -o "size=$1" tmpfs "$2" || exit 125; cd "$PWD" 2>/dev/null; shift 2; exec "$@""#,
        "sh",
    ])
    .arg(bytes.to_string())
    .arg(mount_at)
    .arg(cmd.get_program())
    .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        w.current_dir(dir);
    }
    w
}

fn serve(client: TcpStream, upstream: SocketAddr, s: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    match s.fault() {
        Fault::Cut => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Fault::Blackhole => {
            swallow(client, &s);
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // Requests go through as they are.
    let up = std::thread::spawn(move || {
        pipe_plain(c2, s2);
    });
    answers(server, client, &s);
    let _ = up.join();
}

/// Reads and drops what the client sends until it hangs up or the hold runs out.
fn swallow(mut client: TcpStream, s: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let mut buf = [0u8; CHUNK];
    while start.elapsed() < HOLD && !s.stop.load(Ordering::Acquire) {
        match client.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => return,
        }
    }
}

fn pipe_plain(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Server → client, with the fault applied to each chunk.
fn answers(mut server: TcpStream, mut client: TcpStream, s: &Shared) {
    let mut buf = [0u8; CHUNK];
    let mut sent = 0usize;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        match s.fault() {
            Fault::Pass => {}
            Fault::Latency(d) => std::thread::sleep(d),
            Fault::Stall | Fault::Blackhole => return hold(client, s),
            Fault::StallAfter(limit) => {
                if sent >= limit {
                    return hold(client, s);
                }
                chunk = &chunk[..chunk.len().min(limit - sent)];
                if client.write_all(chunk).is_err() {
                    return;
                }
                sent += chunk.len();
                s.answered.fetch_add(chunk.len(), Ordering::Relaxed);
                if sent >= limit {
                    return hold(client, s);
                }
                continue;
            }
            Fault::Cut => {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            Fault::Bandwidth(bps) => {
                let bps = bps.max(1);
                for part in chunk.chunks(1024) {
                    std::thread::sleep(Duration::from_secs_f64(part.len() as f64 / bps as f64));
                    if client.write_all(part).is_err() {
                        return;
                    }
                    s.answered.fetch_add(part.len(), Ordering::Relaxed);
                }
                sent += chunk.len();
                continue;
            }
        }
        if client.write_all(chunk).is_err() {
            return;
        }
        sent += chunk.len();
        s.answered.fetch_add(chunk.len(), Ordering::Relaxed);
    }
}

/// Keeps the client's connection open and silent until it hangs up (lifting the fault does not
/// resume it: a stalled answer stays stalled, as a wedged server's does).
fn hold(client: TcpStream, s: &Shared) {
    swallow(client, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::{Origin, Reply};

    fn get(addr: SocketAddr, timeout: Duration) -> std::io::Result<Vec<u8>> {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(timeout))?;
        c.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
        let mut out = Vec::new();
        c.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_small_disk_fills_up() {
        let dir = crate::tempdir();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "head -c 300000 /dev/zero > data; echo $?; ls -l data | cut -d' ' -f5",
        ])
        .current_dir(dir.path());
        let out = on_small_disk(&cmd, dir.path(), 100_000)
            .output()
            .expect("unshare");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"1"),
            "the write fails: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            lines
                .get(1)
                .and_then(|n| n.parse::<u64>().ok())
                // tmpfs rounds its size up to whole pages.
                .is_some_and(|n| n <= 100_000 + 4096),
            "{text}"
        );
        assert!(!dir.path().join("data").exists(), "the small disk was its own");
    }

    #[test]
    fn each_fault_as_a_client_sees_it() {
        let origin = Origin::start(|_| Reply::ok(vec![b'a'; 100_000]));
        let f = FaultProxy::start(origin.addr());
        let short = Duration::from_millis(300);
        assert!(get(f.addr(), short).expect("pass").ends_with(b"aaaa"));
        f.set(Fault::Stall);
        assert!(get(f.addr(), short).is_err(), "a stalled answer times out");
        f.set(Fault::StallAfter(50));
        let mut c = TcpStream::connect(f.addr()).expect("connect");
        c.set_read_timeout(Some(short)).expect("timeout");
        c.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), 50, "the first 50 bytes, then nothing");
        f.set(Fault::Cut);
        assert!(get(f.addr(), short).map_or(true, |b| b.is_empty()), "cut");
        f.set(Fault::Blackhole);
        assert!(get(f.addr(), short).is_err(), "blackholed");
        f.set(Fault::Latency(Duration::from_millis(100)));
        let t = Instant::now();
        assert!(get(f.addr(), Duration::from_secs(5))
            .expect("slow")
            .ends_with(b"aaaa"));
        assert!(t.elapsed() >= Duration::from_millis(100), "{:?}", t.elapsed());
        f.set(Fault::Bandwidth(1_000_000));
        assert!(get(f.addr(), Duration::from_secs(5))
            .expect("capped")
            .ends_with(b"aaaa"));
        f.set(Fault::Pass);
        assert!(get(f.addr(), short).expect("pass again").ends_with(b"aaaa"));
        assert!(f.connections() >= 8);
    }
}
