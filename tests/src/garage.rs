//! Garage 2.5.0 instances for tests: one single-node cluster per fileserver, on loopback.
//!
//! [`Garage::start`] installs Garage if it is missing (`cargo install`, under a lock so parallel test
//! processes build it once), writes a config with free ports, starts the server, applies a layout,
//! imports a key, creates the buckets, and returns once a signed S3 request succeeds (Garage keeps
//! running even when its S3 listener failed to bind, so its own health check is not enough).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::ports::free_ports;
use crate::process::{kill, spawn_tied};
use crate::wait::{http_status, wait_until};

pub const GARAGE_VERSION: &str = "2.5.0";
pub const REGION: &str = "us-east-1";

/// How to reach one instance's S3 API.
#[derive(Debug, Clone)]
pub struct S3Access {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub buckets: Vec<String>,
}

/// A running (or stopped) Garage instance; killed when dropped.
pub struct Garage {
    name: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
    admin: SocketAddr,
    access: S3Access,
}

impl Garage {
    /// Starts one instance with `buckets` created and readable/writable by its key.
    pub fn start(name: &str, buckets: &[&str]) -> Garage {
        let bin = ensure_installed();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            match Self::try_start(name, &bin, buckets) {
                Ok(g) => return g,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start Garage `{name}` after 3 attempts:\n{last_err}");
    }

    /// Starts `n` independent instances (`fs0`, `fs1`, …), each with the same bucket names.
    pub fn start_many(n: usize, buckets: &[&str]) -> Vec<Garage> {
        (0..n).map(|i| Self::start(&format!("fs{i}"), buckets)).collect()
    }

    fn try_start(name: &str, bin: &Path, buckets: &[&str]) -> Result<Garage, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hive-garage-{name}-"))
            .tempdir()
            .map_err(|e| e.to_string())?;
        let ports = free_ports(3);
        let (rpc, s3, admin) = (ports[0], ports[1], ports[2]);
        let config = dir.path().join("garage.toml");
        let secret: [u8; 32] = rand::random();
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "{engine}"
replication_factor = 1
consistency_mode = "consistent"
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"
bootstrap_peers = []

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
                d = dir.path().display(),
                engine = db_engine(),
                secret = hex::encode(secret),
                token = hex::encode(rand::random::<[u8; 16]>()),
            ),
        )
        .map_err(|e| e.to_string())?;

        let key_id = format!("GK{}", hex::encode(rand::random::<[u8; 12]>()));
        let key_secret = hex::encode(rand::random::<[u8; 32]>());
        let mut g = Garage {
            name: name.to_string(),
            bin: bin.to_path_buf(),
            config,
            child: None,
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            access: S3Access {
                endpoint: format!("http://127.0.0.1:{s3}"),
                region: REGION.into(),
                access_key: key_id.clone(),
                secret_key: key_secret.clone(),
                buckets: buckets.iter().map(|b| b.to_string()).collect(),
            },
            dir,
        };
        g.spawn()?;
        // The admin API answers (503 until a layout exists).
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            http_status(g.admin, "/health")
        })
        .ok_or_else(|| g.failure("admin API never answered"))?;

        let node = g.cli(&["node", "id", "-q"])?;
        let node = node.trim().split('@').next().unwrap_or_default().to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        g.cli(&["layout", "apply", "--version", "1"])?;
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            (http_status(g.admin, "/health") == Some(200)).then_some(())
        })
        .ok_or_else(|| g.failure("cluster never became healthy"))?;
        g.cli(&["key", "import", "--yes", "-n", "test", &key_id, &key_secret])?;
        for b in buckets {
            g.cli(&["bucket", "create", b])?;
            g.cli(&[
                "bucket", "allow", "--read", "--write", "--owner", b, "--key", "test",
            ])?;
        }
        g.wait_s3_ready()?;
        Ok(g)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = spawn_tied(
            Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .arg("server")
                .env("RUST_LOG", "garage=warn")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err),
        )
        .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_s3_ready(&mut self) -> Result<(), String> {
        let first = self.access.buckets.first().cloned();
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
            }
            match &first {
                Some(b) => (self.signed_status(b).as_deref() == Some("200")).then_some(true),
                None => Some(true),
            }
        })
        .filter(|ok| *ok)
        .map(|_| ())
        .ok_or_else(|| self.failure("S3 API never answered a signed request"))
    }

    /// Status of a signed ListObjectsV2 on `bucket`, via curl's SigV4 support.
    fn signed_status(&self, bucket: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"])
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{REGION}:s3"))
            .arg("--user")
            .arg(format!("{}:{}", self.access.access_key, self.access.secret_key))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .arg(format!(
                "{}/{bucket}?list-type=2&max-keys=1",
                self.access.endpoint
            ))
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs the `garage` CLI against this instance (e.g. to grant a key more rights).
    pub fn cli(&mut self, args: &[&str]) -> Result<String, String> {
        let out: Output = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .map_err(|e| format!("run garage {args:?}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failure(&format!(
                "garage {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    /// An error message with the tail of the server log, then the instance is killed.
    fn failure(&mut self, what: &str) -> String {
        let tail = tail(&self.log_path(), 4000);
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
        format!(
            "garage `{}`: {what}\n--- garage.log (tail) ---\n{tail}",
            self.name
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin API's address (`/health` answers 200 once the node serves).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn access(&self) -> &S3Access {
        &self.access
    }

    /// This instance as a fileserver, with the S3 client's default timeouts and retries.
    pub fn fileserver(&self) -> blobstore::FileserverConfig {
        let a = &self.access;
        blobstore::FileserverConfig::s3(&self.name, &a.endpoint, &a.access_key, &a.secret_key)
    }

    /// This instance as a fileserver that fails fast: one attempt per request and a short
    /// connect timeout, so a test that stops it sees the failure at once.
    pub fn fileserver_failing_fast(&self, connect_timeout: Duration) -> blobstore::FileserverConfig {
        let mut fs = self.fileserver();
        if let Some(s3) = fs.s3.as_mut() {
            s3.connect_timeout = connect_timeout;
            s3.max_attempts = 1;
        }
        fs
    }

    /// The directory holding this instance's data blocks (to corrupt a copy behind its back).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the server (as a crash or power loss would). Its data stays for [`Garage::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Starts the stopped server again on the same ports and data; returns once S3 answers.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn().and_then(|_| self.wait_s3_ready()) {
            panic!("{e}");
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// The path of a Garage 2.5.0 binary, installing it with cargo if none is found.
/// Garage's metadata engine: `sqlite` (what `scripts/test` builds), or `GARAGE_DB_ENGINE` for a
/// Garage built with another (`lmdb`, Garage's own default, for benchmarks by hand).
fn db_engine() -> String {
    std::env::var("GARAGE_DB_ENGINE").unwrap_or_else(|_| "sqlite".into())
}

#[allow(unsafe_code)]
pub fn ensure_installed() -> PathBuf {
    if let Some(p) = find_garage() {
        return p;
    }
    // Parallel test processes: one installs, the others wait on the lock and then find it.
    let lock_path = std::env::temp_dir().join("hive-garage-install.lock");
    let lock = File::create(&lock_path).expect("create the Garage install lock");
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    }
    if let Some(p) = find_garage() {
        return p;
    }
    eprintln!("Garage {GARAGE_VERSION} not found: installing it with cargo (about 12 minutes on 2 cores)…");
    let status = Command::new("cargo")
        .args([
            "install",
            "garage",
            "--version",
            GARAGE_VERSION,
            "--locked",
            "--no-default-features",
        ])
        .args(["--features", "sqlite,bundled-libs"])
        .status()
        .expect("run cargo install garage");
    assert!(status.success(), "cargo install garage {GARAGE_VERSION} failed");
    find_garage().expect("garage installed but not found in PATH or ~/.cargo/bin")
}

/// `garage --version` prints `garage cargo:2.5.0 [features: …]` for a cargo build, `garage v2.5.0` for
/// release binaries.
fn is_wanted_version(out: &str) -> bool {
    out.split(|c: char| c.is_whitespace() || c == ':')
        .any(|w| w.trim_start_matches('v') == GARAGE_VERSION)
}

/// `$GARAGE_BIN`, then `garage` on `PATH`, then `~/.cargo/bin/garage`, if it is version 2.5.0.
pub fn find_garage() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("garage")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/garage"));
    }
    candidates.into_iter().find(|p| {
        p.is_file()
            && Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| is_wanted_version(&String::from_utf8_lossy(&o.stdout)))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_strings() {
        assert!(super::is_wanted_version(
            "garage cargo:2.5.0 [features: bundled-libs, sqlite]"
        ));
        assert!(super::is_wanted_version("garage v2.5.0"));
        assert!(!super::is_wanted_version("garage v2.5.01"));
        assert!(!super::is_wanted_version("garage v1.0.0"));
    }
}
