//! Starting edge processes for the tests: each with its own ports, upgrade socket and pid file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use harness::origin::{Origin, Reply, Request};
use harness::process::{kill, spawn_tied, terminate, wait_exit};

pub const BIN: &str = env!("CARGO_BIN_EXE_edge");

pub struct Edge {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// The settings every test edge gets, before the test's own.
fn base_args(port: u16, admin: u16, nodes: &[SocketAddr], dir: &std::path::Path) -> Vec<String> {
    let nodes: Vec<String> = nodes.iter().map(|a| format!("\"{a}\"")).collect();
    [
        format!("server.listen=127.0.0.1:{port}"),
        format!("admin.listen=127.0.0.1:{admin}"),
        format!("upstreams.nodes=[{}]", nodes.join(",")),
        "upstreams.health_interval=200ms".into(),
        "upstreams.health_path=/healthcheck".into(),
        "server.grace_period=1s".into(),
        "server.shutdown_timeout=1s".into(),
        "server.threads=2".into(),
        format!("server.upgrade_sock={}", dir.join("upgrade.sock").display()),
        format!("server.pid_file={}", dir.join("edge.pid").display()),
    ]
    .into()
}

impl Edge {
    /// Starts an edge in front of `nodes` with extra `--set` settings; waits until it serves.
    pub fn start(nodes: &[SocketAddr], extra: &[String]) -> Edge {
        Self::start_in(harness::tempdir(), nodes, extra, false)
    }

    /// Like [`Edge::start`], in `dir` (its upgrade socket and pid file live there); `upgrade`
    /// takes the listeners over from the edge already running there.
    pub fn start_in(dir: tempfile::TempDir, nodes: &[SocketAddr], extra: &[String], upgrade: bool) -> Edge {
        let ports = harness::ports::free_ports(2);
        Self::spawn(dir, ports[0], ports[1], nodes, extra, upgrade)
    }

    pub fn spawn(
        dir: tempfile::TempDir,
        port: u16,
        admin: u16,
        nodes: &[SocketAddr],
        extra: &[String],
        upgrade: bool,
    ) -> Edge {
        Self::spawn_wrapped(dir, port, admin, nodes, extra, upgrade, |c| c)
    }

    /// An edge whose disk tier (`<dir>/disk`) is a disk of its own holding `bytes`, to fill up.
    pub fn start_on_small_disk(nodes: &[SocketAddr], extra: &[String], bytes: u64) -> Edge {
        let dir = harness::tempdir();
        let disk = dir.path().join("disk");
        std::fs::create_dir_all(&disk).expect("disk dir");
        let mut extra = extra.to_vec();
        extra.push(format!("cache.disk_dir={}", disk.display()));
        let ports = harness::ports::free_ports(2);
        Self::spawn_wrapped(dir, ports[0], ports[1], nodes, &extra, false, |c| {
            harness::faults::on_small_disk(&c, &disk, bytes)
        })
    }

    fn spawn_wrapped(
        dir: tempfile::TempDir,
        port: u16,
        admin: u16,
        nodes: &[SocketAddr],
        extra: &[String],
        upgrade: bool,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Edge {
        let mut cmd = Command::new(BIN);
        for s in base_args(port, admin, nodes, dir.path()).iter().chain(extra) {
            cmd.args(["--set", s]);
        }
        if upgrade {
            cmd.arg("--upgrade");
        }
        let mut cmd = wrap(cmd);
        let log = std::fs::File::create(dir.path().join("edge.log")).expect("log file");
        let child = spawn_tied(cmd.stdout(Stdio::null()).stderr(log)).expect("spawn edge");
        let e = Edge {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            dir,
        };
        if !upgrade {
            e.wait_ready();
        }
        e
    }

    pub fn wait_ready(&self) {
        let admin = self.admin;
        harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            harness::http_status(admin, "/healthz").filter(|s| *s == 200)
        })
        .unwrap_or_else(|| panic!("edge admin listens; log:\n{}", self.log()));
        // pingora binds the proxy listener in its own service, which may come up after the
        // admin one on a loaded machine.
        assert!(
            harness::listening(self.addr, Duration::from_secs(20)),
            "edge proxy listens; log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edge.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> harness::http::Response {
        self.request("GET", path, &[])
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> harness::http::Response {
        harness::http::request(self.addr, method, path, headers, &[])
            .unwrap_or_else(|e| panic!("{method} {path} through edge: {e}"))
    }

    /// `/stats.json` from the admin listener.
    pub fn stats(&self) -> serde_json::Value {
        let r = harness::http::get(self.admin, "/stats.json").expect("stats");
        serde_json::from_slice(&r.body).expect("stats json")
    }

    /// Whether the health checks consider `node` up.
    pub fn node_up(&self, node: SocketAddr) -> Option<bool> {
        let s = self.stats();
        s["backends"]
            .as_array()?
            .iter()
            .find(|b| b["addr"] == node.to_string())
            .and_then(|b| b["up"].as_bool())
    }

    pub fn rss_kib(&self) -> u64 {
        harness::process::rss_kib(self.child.id())
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(mut self) -> tempfile::TempDir {
        terminate(&self.child);
        let status = wait_exit(&mut self.child, Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "edge exits cleanly on SIGTERM: {status:?}\n{}",
            self.log()
        );
        std::mem::replace(&mut self.dir, harness::tempdir())
    }
}

impl Edge {
    /// SIGKILL (a crash): nothing is flushed, nothing drains.
    pub fn crash(mut self) -> tempfile::TempDir {
        kill(&mut self.child);
        std::mem::replace(&mut self.dir, harness::tempdir())
    }

    /// The value of the metric line `name` (with its labels, if any) on the admin listener's
    /// `/metrics`; 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        let r = harness::http::get(self.admin, "/metrics").expect("metrics");
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Deterministic bytes of length `n`, different for each `seed`.
pub fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// An origin that counts the requests it answers, health probes aside.
pub fn origin(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> (Origin, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    let o = Origin::start(move |req| {
        if req.path == "/healthcheck" {
            return Reply::ok("ok");
        }
        count.fetch_add(1, Ordering::SeqCst);
        handler(req)
    });
    (o, n)
}

pub fn count(n: &AtomicUsize) -> usize {
    n.load(Ordering::SeqCst)
}

/// One response read off a raw connection: status, lower-cased headers, body.
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    BufReader::new(s)
}

pub fn send(conn: &mut BufReader<TcpStream>, raw: &str) {
    conn.get_mut().write_all(raw.as_bytes()).expect("write");
}

pub fn read(conn: &mut BufReader<TcpStream>, head_only: bool) -> Raw {
    let mut line = String::new();
    conn.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header line");
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut r = Raw {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = r
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !head_only {
        r.body.resize(len, 0);
        conn.read_exact(&mut r.body).expect("body");
    }
    r
}

pub fn closed(conn: &mut BufReader<TcpStream>) -> bool {
    let mut b = [0u8; 1];
    matches!(conn.read(&mut b), Ok(0))
}
