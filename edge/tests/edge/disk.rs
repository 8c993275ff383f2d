//! The disk tier across a crash: an edge killed while it writes comes back serving at once,
//! indexes what it finds in the background, and loses nothing but what was torn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::origin::Reply;

use crate::support::{body, count, origin, Edge};

const HOST: (&str, &str) = ("Host", "images.example.test");
const OBJECTS: usize = 600;

fn seed(path: &str) -> u8 {
    path.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b))
}

fn path(i: usize) -> String {
    format!("/DQmDisk{i}/photo.jpg")
}

/// Every object file under the tier's directory (not its temporaries).
fn object_files(disk: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(disk)
        .unwrap()
        .flatten()
        .filter(|d| d.file_type().unwrap().is_dir() && d.file_name() != "tmp")
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten().map(|f| f.path()))
        .collect()
}

#[test]
fn an_edge_killed_while_writing_serves_at_once_after_restart_and_loses_only_the_torn() {
    let (o, fetches) =
        origin(|req| Reply::ok(body(3000, seed(&req.path))).header("Cache-Control", "max-age=3600"));
    let node = o.addr();
    let dir = harness::tempdir();
    let disk = dir.path().join("disk");
    let settings = vec![format!("cache.disk_dir={}", disk.display())];
    let edge = Arc::new(Edge::start(&[node], &settings));
    std::thread::scope(|s| {
        for t in 0..4 {
            let edge = edge.clone();
            s.spawn(move || {
                for i in (t..OBJECTS).step_by(4) {
                    let r = edge.request("GET", &path(i), &[HOST]);
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    // Every object written to disk (writes follow the answers), then a crash in the middle
    // of more writes.
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (edge.stats()["cache_disk_objects"] == OBJECTS).then_some(())
    })
    .expect("every object reaches the disk tier");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (edge.addr, stop.clone());
        std::thread::spawn(move || {
            let mut i = OBJECTS;
            while !stop.load(Ordering::Relaxed) && i < OBJECTS + 5000 {
                // Cut off by the crash, the last ones fail: what matters is what stays on disk.
                let _ = harness::http::request(addr, "GET", &path(i), &[HOST], &[]);
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let Ok(edge) = Arc::try_unwrap(edge) else {
        panic!("the writer holds no edge")
    };
    let _dir = edge.crash();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();

    // A file a power loss cut short: the one of an object of the first run (its file holds its
    // URL).
    let marker = path(5);
    let (torn, whole) = object_files(&disk)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(f).unwrap()))
        .find(|(_, b)| b.windows(marker.len()).any(|w| w == marker.as_bytes()))
        .expect("the file of an object of the first run");
    std::fs::write(&torn, &whole[..whole.len() / 2]).unwrap();
    let before = count(&fetches);

    let edge = Edge::start(&[node], &settings);
    // Answers at once, whatever the load has reached: a hit from disk or memory, or a miss.
    let r = edge.request("GET", &path(0), &[HOST]);
    assert_eq!((r.status, r.body == body(3000, seed(&path(0)))), (200, true));
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (edge.stats()["cache_disk_loading"] == false).then_some(())
    })
    .expect("the index loads");
    assert!(
        std::fs::read_dir(disk.join("tmp")).unwrap().next().is_none(),
        "no temporary survives the restart"
    );
    assert!(!torn.exists(), "the torn file is removed");
    // Every object of the first run but the torn one is a hit, byte for byte.
    let mut misses = Vec::new();
    for i in 0..OBJECTS {
        let r = edge.request("GET", &path(i), &[HOST]);
        assert_eq!(r.status, 200);
        assert!(r.body == body(3000, seed(&path(i))), "{} served whole", path(i));
        if r.header("x-cache") != Some("HIT") {
            misses.push(i);
        }
    }
    assert_eq!(misses, vec![5], "only the torn object is fetched again");
    assert_eq!(count(&fetches), before + 1, "{}", edge.log());
    let objects = edge.stats()["cache_disk_objects"].as_u64().unwrap() as usize;
    assert!(objects >= OBJECTS, "{objects} objects indexed");
    assert!(edge.log().contains("disk cache tier indexed"));
}
