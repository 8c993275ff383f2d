//! A crash under uploads, on the imagehost binary over two directory fileservers (write quorum
//! 2, so each answer waits for both group commits): every upload answered 200 before a SIGKILL
//! is served whole after a restart and is on both fileservers, and no object file anywhere is
//! torn (each one hashes to its key), whatever the kill cut short.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::process::{spawn_tied, Killed};
use imagehost::auth::signature::public_key_string;
use imagehost::keys::UploadDigests;

use super::fixture::{fresh_key, signature};
use super::images;

const BIN: &str = env!("CARGO_BIN_EXE_imagehost");
const CLIENTS: usize = 4;
/// Uploads each client tries at most (the kill usually comes well before).
const PER_CLIENT: u32 = 60;

fn start(d: &Path, addr: SocketAddr, run: &str) -> Killed {
    let mut cmd = std::process::Command::new(BIN);
    let fileservers = format!(
        "fileservers=[{{ name = \"fs1\", directory = {{ path = \"{0}/fs1\", create = true }} }}, \
         {{ name = \"fs2\", directory = {{ path = \"{0}/fs2\", create = true }} }}]",
        d.display()
    );
    for s in [
        format!("server.listen={addr}"),
        format!("server.service_url=http://{addr}"),
        fileservers,
        "upload.write_quorum=2".into(),
        format!("accounts.static_file={}/accounts.json", d.display()),
        format!("blacklist.images_file={}/bl-images.json", d.display()),
        format!("blacklist.accounts_file={}/bl-accounts.json", d.display()),
        "upload_limits.max=100000".into(),
    ] {
        cmd.args(["--set", &s]);
    }
    let log = std::fs::File::create(d.join(format!("imagehost-{run}.log"))).expect("log");
    let child =
        Killed(spawn_tied(cmd.stdout(std::process::Stdio::null()).stderr(log)).expect("spawn imagehost"));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (harness::http_status(addr, "/healthcheck") == Some(200)).then_some(())
    })
    .unwrap_or_else(|| {
        let log = std::fs::read_to_string(d.join(format!("imagehost-{run}.log")));
        panic!("imagehost up: {}", log.unwrap_or_default())
    });
    child
}

#[test]
fn uploads_acknowledged_before_a_kill_9_are_all_there_after_it() {
    let dir = harness::tempdir();
    let d = dir.path().to_path_buf();
    let key = fresh_key();
    harness::hive::static_account_files(&d, "alice", &public_key_string(key.verifying_key()));
    let addr = SocketAddr::from(([127, 0, 0, 1], harness::free_port()));
    let mut server = start(&d, addr, "first");

    let acknowledged = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS as u32)
        .map(|c| {
            let (acknowledged, stop, key) = (acknowledged.clone(), stop.clone(), key.clone());
            let cut = cut.clone();
            std::thread::spawn(move || {
                for i in 0..PER_CLIENT {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Distinct images of 30–120 kB.
                    let data = images::jpeg(200 + c * PER_CLIENT + i, 150);
                    let sig = signature(&key, &data, false);
                    let (ty, body) = harness::http::multipart_file(&data, "a.jpg");
                    let path = format!("/alice/{sig}");
                    match harness::http::request(addr, "POST", &path, &[("Content-Type", &ty)], &body) {
                        Ok(r) if r.status == 200 => {
                            let k = UploadDigests::of(&data).upload_key();
                            acknowledged.lock().expect("list").push((k, data));
                        }
                        // Cut by the kill: not acknowledged, so nothing is owed.
                        _ => {
                            cut.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    // Kill while uploads are in flight: once a few have been answered.
    harness::wait_until(Duration::from_secs(60), Duration::from_millis(5), || {
        (acknowledged.lock().expect("list").len() >= 12).then_some(())
    })
    .expect("uploads answered");
    server.0.kill().expect("SIGKILL");
    let _ = server.0.wait();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    let acknowledged = acknowledged.lock().expect("list").clone();
    // The clients loop without pause, so the kill finds uploads in flight.
    assert!(
        cut.load(Ordering::SeqCst) >= 1,
        "no upload was in flight at the kill"
    );

    let addr = SocketAddr::from(([127, 0, 0, 1], harness::free_port()));
    let _server = start(&d, addr, "second");
    for (k, data) in &acknowledged {
        let r = harness::http::get(addr, &format!("/{k}/a.jpg")).expect("get");
        assert_eq!(r.status, 200, "acknowledged upload {k} lost");
        assert!(r.body == *data, "acknowledged upload {k} changed");
        for fs in ["fs1", "fs2"] {
            let on_disk = std::fs::read(d.join(fs).join("uploads").join(k));
            assert!(on_disk.is_ok_and(|b| b == *data), "{k} not whole on {fs}");
        }
    }
    // Whatever the kill cut short was not published half-written.
    for fs in ["fs1", "fs2"] {
        let bucket = d.join(fs).join("uploads");
        for entry in std::fs::read_dir(&bucket).expect("bucket").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(entry.path()).expect("object");
            assert_eq!(
                UploadDigests::of(&bytes).upload_key(),
                name,
                "{fs}/{name} is torn"
            );
        }
    }
}
