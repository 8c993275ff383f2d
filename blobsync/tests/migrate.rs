//! `blobsync migrate` on a generated store of the reference imagehoster (10k uploads plus
//! originals and variants, flat and partitioned), with corrupt and truncated uploads and one taken
//! down, into a Garage instance and a directory fileserver: killed midway and run again, it
//! resumes from its checkpoint, copies every good object to both, verified, writes no corrupt
//! one anywhere, brings back nothing taken down, and ends with the report and exit 3.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blobstore::{collect_body, BlobStore, Key, Layout, ListRequest};
use harness::process::{kill, spawn_tied};
use harness::Garage;

const BIN: &str = env!("CARGO_BIN_EXE_blobsync");
const UPLOADS: u64 = 10_000;

/// What the generated store holds, by kind.
struct Store {
    good: Vec<(String, Vec<u8>)>,
    bad: Vec<String>,
    unverifiable: Vec<String>,
    taken_down: String,
}

/// Writes the store as the reference imagehoster does: one plain file per key, no metadata.
fn generate(dir: &Path, layout: Layout) -> Store {
    let write = |key: &str, data: &[u8]| {
        let name = layout.stored_name(&Key::new(key).expect("key")).expect("name");
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    };
    let mut store = Store {
        good: Vec::new(),
        bad: Vec::new(),
        unverifiable: Vec::new(),
        taken_down: String::new(),
    };
    for i in 0..UPLOADS {
        let (key, mut data) = harness::content::upload(i, 1_000 + (i as usize * 7919) % 3_000);
        match i % 1000 {
            // A flipped byte, and a copy cut short: both hash to something else.
            7 => {
                data[100] ^= 0x55;
                store.bad.push(key.clone());
            }
            8 => {
                data.truncate(data.len() / 2);
                store.bad.push(key.clone());
            }
            9 if store.taken_down.is_empty() => store.taken_down = key.clone(),
            _ => store.good.push((key.clone(), data.clone())),
        }
        write(&key, &data);
        if i % 500 == 0 {
            // A variant of the upload, and a fetched original with its variant.
            let variant = format!("{key}_Fit_JPEG_64");
            write(&variant, b"variant bytes");
            let original = format!("U{}", &key[3..30]);
            write(&original, b"fetched original");
            write(&format!("{original}_Cover_WEBP_320"), b"variant of an original");
            store
                .unverifiable
                .extend([variant, original.clone(), format!("{original}_Cover_WEBP_320")]);
        }
    }
    store
}

async fn keys(store: &dyn BlobStore) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut req = ListRequest::default();
    loop {
        let page = store.list(&req).await.expect("list");
        out.extend(page.entries.into_iter().map(|e| e.key.to_string()));
        match page.next {
            Some(next) => req.start_after = Some(next),
            None => return out,
        }
    }
}

fn migrate_killed_midway_and_resumed(layout: Layout, layout_name: &str, run_again: bool) {
    let garage = Garage::start("fs0", &["uploads", "proxy"]);
    let dir = harness::tempdir();
    let source = dir.path().join("old").join("uploads");
    let store = generate(&source, layout);
    let a = garage.access();
    let config = dir.path().join("blobsync.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[queue]\npath = \"{}\"\n\
             [[fileservers]]\nname = \"fs0\"\ns3 = {{ endpoint = \"{}\", access_key_id = \"{}\", secret_access_key = \"{}\" }}\n\
             [[fileservers]]\nname = \"fs1\"\ndirectory = {{ path = \"{}\" }}\n",
            harness::free_port(),
            dir.path().join("queue").display(),
            a.endpoint,
            a.access_key,
            a.secret_key,
            dir.path().join("fs1").display(),
        ),
    )
    .expect("write config");
    let cfg: blobsync::Config = service::ConfigLoader::new("blobsync")
        .file(Some(config.clone()))
        .load()
        .expect("config parses");
    // The takedown list, as the daemon would hold it (no daemon runs: migrate reads the queue).
    {
        let queue = blobsync::queue::Queue::open(&cfg.queue.path).expect("queue");
        queue.add_takedown(&store.taken_down).expect("takedown");
    }
    let state = dir.path().join("migrate.json");
    let run = || {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--config",
            config.to_str().expect("utf-8"),
            "migrate",
            "--from-dir",
        ])
        .arg(&source)
        .args(["--layout", layout_name, "--concurrency", "32", "--state"])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd
    };

    // Killed once a few pages are checkpointed.
    let mut child = spawn_tied(&mut run()).expect("start migrate");
    let deadline = Instant::now() + Duration::from_secs(300);
    let listed = || -> u64 {
        std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["counts"]["listed"].as_u64())
            .unwrap_or(0)
    };
    while listed() < 3_000 {
        assert!(Instant::now() < deadline, "no progress before the deadline");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "migrate ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(&mut child);
    let at_kill = listed();
    assert!(at_kill < UPLOADS, "killed midway ({at_kill} listed)");

    // Run again: it resumes, and ends with the report and exit 3 (corrupt objects).
    let child = spawn_tied(&mut run()).expect("start migrate again");
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit 3 for corrupt objects\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("resuming the migration"), "{stderr}");
    let cp: blobsync::migrate::Checkpoint =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("state json");
    let c = &cp.counts;
    let total = UPLOADS + store.unverifiable.len() as u64;
    assert!(cp.finished);
    assert_eq!(
        (cp.total, c.listed),
        (Some(total), total),
        "every object counted once"
    );
    let copyable = (store.good.len() + store.unverifiable.len()) as u64;
    assert_eq!(c.copied + c.unverifiable + c.present, copyable, "{c:?}");
    assert!(
        c.present <= 1_000,
        "at most the page cut by the kill is found present: {c:?}"
    );
    assert_eq!(
        (c.corrupt, c.taken_down, c.failed, c.skipped),
        (store.bad.len() as u64, 1, 0, 0),
        "{c:?}"
    );
    let named: BTreeSet<&str> = cp.corrupt.iter().map(String::as_str).collect();
    assert_eq!(
        named,
        store.bad.iter().map(String::as_str).collect(),
        "the report names them"
    );
    for bad in &store.bad {
        assert!(stdout.contains(bad.as_str()), "{bad} in the report:\n{stdout}");
    }

    // Both fileservers hold exactly the good uploads and the unverifiable keys, with their bytes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let want: BTreeSet<String> = store
        .good
        .iter()
        .map(|(k, _)| k.clone())
        .chain(store.unverifiable.iter().cloned())
        .collect();
    for fs in &cfg.fileservers {
        let target = blobstore::open_bucket(fs, "uploads").expect("target");
        rt.block_on(async {
            assert_eq!(keys(target.as_ref()).await, want, "{}", fs.name);
            for (key, data) in store.good.iter().step_by(97) {
                let got = target
                    .get(&Key::new(key.as_str()).expect("key"), None)
                    .await
                    .expect("get");
                assert_eq!(
                    &collect_body(got.body, u64::MAX).await.expect("body")[..],
                    &data[..],
                    "{key}"
                );
            }
        });
    }

    if !run_again {
        return;
    }
    // Once finished, a new run starts over and finds everything present.
    let again = run().output().expect("third run");
    assert_eq!(again.status.code(), Some(3));
    let cp: blobsync::migrate::Checkpoint =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("state json");
    assert_eq!(cp.counts.copied + cp.counts.unverifiable, 0, "{:?}", cp.counts);
    assert_eq!(cp.counts.present, want.len() as u64);
}

#[test]
fn a_flat_store_migrates_verified_and_resumes_after_a_kill() {
    migrate_killed_midway_and_resumed(Layout::Flat, "flat", true);
}

#[test]
fn a_partitioned_store_migrates_verified_and_resumes_after_a_kill() {
    migrate_killed_midway_and_resumed(Layout::Partitioned, "partitioned", false);
}

#[test]
fn a_missing_source_or_a_foreign_state_file_is_refused_clearly() {
    let dir = harness::tempdir();
    let config = dir.path().join("blobsync.toml");
    std::fs::write(
        &config,
        format!(
            "[queue]\npath = \"{}\"\n[[fileservers]]\nname = \"a\"\ndirectory = {{ path = \"{}\" }}\n\
             [[fileservers]]\nname = \"b\"\ndirectory = {{ path = \"{}\" }}\n",
            dir.path().join("queue").display(),
            dir.path().join("a").display(),
            dir.path().join("b").display(),
        ),
    )
    .expect("write config");
    let migrate = |from: &Path, state: &Path| {
        Command::new(BIN)
            .args([
                "--config",
                config.to_str().expect("utf-8"),
                "migrate",
                "--from-dir",
            ])
            .arg(from)
            .arg("--state")
            .arg(state)
            .output()
            .expect("run")
    };
    let state = dir.path().join("state.json");
    let out = migrate(&dir.path().join("nowhere").join("uploads"), &state);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("does not exist"), "{err}");

    let old = dir.path().join("old").join("uploads");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(&state, br#"{"source":"elsewhere/uploads","bucket":"uploads","counts":{"listed":5,"copied":0,"present":0,"corrupt":0,"unverifiable":0,"skipped":0,"taken_down":0,"failed":0,"gone":0},"corrupt":[],"failed":[],"started_ms":0,"finished":false,"total":null,"after":null}"#).expect("state");
    let out = migrate(&old, &state);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("belongs to the migration of elsewhere/uploads"),
        "{err}"
    );
    let out = migrate(&old, &dir.path().join("fresh.json"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated source/uploads"));
}

/// An S3 bucket as the source (credentials from the AWS environment variables): every object
/// copied to both directory fileservers, verified, and the report says so.
#[test]
fn an_s3_bucket_migrates_too() {
    let old = Garage::start("old", &["imagehoster"]);
    let a = old.access().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let source = blobstore::open_bucket(&old.fileserver(), "imagehoster").expect("source");
    let objects: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| harness::content::upload(50_000 + i, 3_000))
        .collect();
    rt.block_on(async {
        for (k, d) in &objects {
            source
                .put(
                    &Key::new(k.as_str()).expect("key"),
                    blobstore::body_from_bytes(d.clone()),
                    &blobstore::PutOptions::default(),
                )
                .await
                .expect("seed");
        }
    });
    let dir = harness::tempdir();
    let config = dir.path().join("blobsync.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[queue]\npath = \"{}\"\n\
             [[fileservers]]\nname = \"a\"\ndirectory = {{ path = \"{}\" }}\n\
             [[fileservers]]\nname = \"b\"\ndirectory = {{ path = \"{}\" }}\n",
            harness::free_port(),
            dir.path().join("queue").display(),
            dir.path().join("a").display(),
            dir.path().join("b").display(),
        ),
    )
    .expect("write config");
    let out = Command::new(BIN)
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "migrate",
            "--from-s3",
            &a.endpoint,
        ])
        .args(["--from-bucket", "imagehoster", "--state"])
        .arg(dir.path().join("state.json"))
        .env("AWS_ACCESS_KEY_ID", &a.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &a.secret_key)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("200 copied and verified"), "{stdout}");
    let cfg: blobsync::Config = service::ConfigLoader::new("blobsync")
        .file(Some(config))
        .load()
        .expect("config parses");
    let want: BTreeSet<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    for fs in &cfg.fileservers {
        let target = blobstore::open_bucket(fs, "uploads").expect("target");
        assert_eq!(rt.block_on(keys(target.as_ref())), want, "{}", fs.name);
    }
}
