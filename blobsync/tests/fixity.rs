//! Fixity beside a running daemon: `blobsync sync --once` finds a truncated copy by its size,
//! `blobsync scrub --once` finds a corrupt one of the right size by its hash, both through the
//! daemon's API (the daemon holds the queue) and both repaired from the good replica; without a
//! daemon the same commands run on their own. The scrub's last completion survives a restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use blobstore::{DirStore, Key, Layout};
use harness::content::upload;
use harness::process::{spawn_tied, terminate, wait_exit};

const BIN: &str = env!("CARGO_BIN_EXE_blobsync");

struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn new() -> Self {
        Self {
            dir: harness::tempdir(),
            port: harness::free_port(),
        }
    }

    fn args(&self) -> Vec<String> {
        let d = self.dir.path().display();
        [
            format!("server.listen=127.0.0.1:{}", self.port),
            format!("queue.path={d}/queue"),
            format!(
                "fileservers=[{{ name = \"a\", directory = {{ path = \"{d}/a\" }} }}, {{ name = \"b\", directory = {{ path = \"{d}/b\" }} }}]"
            ),
            "anti_entropy.interval=0s".into(),
            "scrub.interval=0s".into(),
            "copy.initial_backoff=100ms".into(),
        ]
        .into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
    }

    fn daemon(&self) -> Child {
        let child = spawn_tied(
            Command::new(BIN)
                .args(self.args())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("spawn blobsync");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            (harness::http_status(addr, "/status") == Some(200)).then_some(())
        })
        .expect("daemon ready");
        child
    }

    fn once(&self, what: &str) -> (Option<i32>, String) {
        let out: Output = Command::new(BIN)
            .args([what, "--once"])
            .args(self.args())
            .output()
            .expect("run once");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn path(&self, server: &str, key: &str) -> PathBuf {
        let store = DirStore::open(
            server,
            &self.dir.path().join(server),
            "uploads",
            Layout::Flat,
            true,
        )
        .expect("open");
        store.path_of(&Key::new(key).expect("key")).expect("path")
    }

    fn status(&self) -> serde_json::Value {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let r = harness::http::get(addr, "/status").expect("status");
        serde_json::from_slice(&r.body).expect("json")
    }
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

#[test]
fn truncated_and_corrupt_copies_are_found_and_repaired_beside_a_running_daemon() {
    let c = Cluster::new();
    let objects: Vec<(String, Vec<u8>)> = (0..12).map(|i| upload(700 + i, 3_000)).collect();
    for (k, d) in &objects {
        write(&c.path("a", k), d);
        write(&c.path("b", k), d);
    }
    let mut daemon = c.daemon();
    // The daemon's own first pass ends before the damage, so only the asked-for pass can find it
    // (a first pass still listing could find and repair it itself, and the asked pass then queues
    // nothing).
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (c.status()["sync"]["finished_ms"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .expect("the daemon's first pass finished");

    // A torn write: b's copy of object 3 is cut short. Same names on both sides, so only the
    // sizes can tell.
    let (k3, d3) = &objects[3];
    write(&c.path("b", k3), &d3[..1000]);
    let (code, err) = c.once("sync");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("by the running daemon") && err.contains("1 queued"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(c.path("b", k3)).expect("read"),
        *d3,
        "the truncated copy was replaced"
    );

    // Bit rot of the same size: only re-hashing finds it.
    let (k5, d5) = &objects[5];
    let mut rotten = d5.clone();
    rotten[100] ^= 0x20;
    write(&c.path("a", k5), &rotten);
    let (code, err) = c.once("sync");
    assert!(
        code == Some(0) && err.contains("0 queued"),
        "a listing cannot see it: {err}"
    );
    let (code, err) = c.once("scrub");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("by the running daemon") && err.contains("24 copies checked, 1 corrupt"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(c.path("a", k5)).expect("read"),
        *d5,
        "the corrupt copy was replaced"
    );
    let done = c.status()["scrub"]["last_complete_ms"]
        .as_u64()
        .expect("a pass finished");

    // The last completion is kept across a restart (the next pass is due from it).
    terminate(&daemon);
    wait_exit(&mut daemon, Duration::from_secs(15)).expect("stops");
    let mut daemon = c.daemon();
    assert_eq!(c.status()["scrub"]["last_complete_ms"].as_u64(), Some(done));
    terminate(&daemon);
    wait_exit(&mut daemon, Duration::from_secs(15)).expect("stops");

    // Without a daemon, the same commands do the work themselves.
    let (k7, d7) = &objects[7];
    write(&c.path("b", k7), &[]);
    let mut rotten = d5.clone();
    rotten[0] ^= 1;
    write(&c.path("b", k5), &rotten);
    let (code, err) = c.once("scrub");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("by the running daemon") && err.contains("2 corrupt"),
        "{err}"
    );
    assert_eq!(std::fs::read(c.path("b", k7)).expect("read"), *d7);
    assert_eq!(std::fs::read(c.path("b", k5)).expect("read"), *d5);
}

#[test]
fn sync_and_scrub_refuse_to_run_without_once() {
    for what in ["sync", "scrub"] {
        let out = Command::new(BIN).arg(what).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{what}: an argument error");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--once"),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
