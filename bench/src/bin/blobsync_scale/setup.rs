//! `blobsync_scale`'s fileservers and daemon: the pairs of directory fileservers each size is
//! measured on, and the daemon's configuration and queue.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blobstore::{BlobStore, DirStore, Layout};

use super::WORKERS;

/// Writes the daemon's configuration for a run in `dir` over the fileservers `fs`: its path.
pub fn config(dir: &Path, port: u16, fs: &[PathBuf]) -> PathBuf {
    let server = |n: &str, p: &Path| {
        format!(
            "[[fileservers]]\nname = \"{n}\"\ndirectory = {{ path = \"{}\" }}\n",
            p.display()
        )
    };
    let path = dir.join("blobsync.toml");
    std::fs::write(
        &path,
        format!(
            "buckets = [\"uploads\"]\n[server]\nlisten = \"127.0.0.1:{port}\"\n[queue]\npath = \"{}\"\n[copy]\nworkers = {WORKERS}\n[anti_entropy]\ninterval = \"0s\"\n[scrub]\ninterval = \"0s\"\n[log]\nlevel = \"warn\"\n{}",
            queue_dir(dir).display(),
            fs.iter()
                .enumerate()
                .map(|(i, p)| server(&format!("fs{i}"), p))
                .collect::<String>(),
        ),
    )
    .expect("config");
    path
}

/// Where the daemon of the run in `run` keeps its queue: in the run's directory, or with
/// `BLOBSYNC_SCALE_QUEUE_DIR` on another file system than the fileservers' (to see what its syncs
/// cost when they share a device with the copies'), under this bench's own temporary directory's
/// name so that no run opens an earlier one's queue.
pub fn queue_dir(run: &Path) -> PathBuf {
    match std::env::var_os("BLOBSYNC_SCALE_QUEUE_DIR") {
        None => run.join("queue"),
        Some(q) => {
            let root = run.parent().and_then(Path::file_name).unwrap_or_default();
            PathBuf::from(q)
                .join(root)
                .join(run.file_name().unwrap_or_default())
        }
    }
}

/// Removes the queue of the run in `run` when it is outside the temporary directory (which takes
/// everything else with it).
pub fn remove_outside_queue(run: &Path) {
    if std::env::var_os("BLOBSYNC_SCALE_QUEUE_DIR").is_some() {
        let queue = queue_dir(run);
        let _ = std::fs::remove_dir_all(&queue);
        // And this bench's directory there, once its last run's queue is gone.
        if let Some(root) = queue.parent() {
            let _ = std::fs::remove_dir(root);
        }
    }
}

/// The sizes measured (`BLOBSYNC_SCALE_SIZES`, or 2,000, 200,000 and `max`), each with the
/// number of the fileserver pair it is measured on ([`pairs`]).
pub fn sizes(max: u64) -> Vec<(u64, usize)> {
    let mut sizes: Vec<u64> = match std::env::var("BLOBSYNC_SCALE_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("BLOBSYNC_SCALE_SIZES: a list of numbers"))
            .collect(),
        Err(_) => vec![2_000, 200_000, max],
    };
    sizes.retain(|n| *n <= max);
    sizes.dedup();
    pairs(&sizes)
}

/// Each size with the fileserver pair it is measured on: a size below the one before it gets a
/// new pair, so that a small bucket can be measured again on a file system holding a large one.
pub fn pairs(sizes: &[u64]) -> Vec<(u64, usize)> {
    let mut pair = 0;
    let mut last = 0;
    sizes
        .iter()
        .map(|&n| {
            if n < last {
                pair += 1;
            }
            last = n;
            (n, pair)
        })
        .collect()
}

/// Two directory fileservers of one bucket, `uploads`.
pub struct Stores {
    pub fs: [PathBuf; 2],
    pub buckets: [PathBuf; 2],
    pub fs0: Arc<dyn BlobStore>,
    pub fs1: Arc<dyn BlobStore>,
}

impl Stores {
    pub fn new(dir: &Path) -> Self {
        let fs = [dir.join("fs0"), dir.join("fs1")];
        let buckets = [fs[0].join("uploads"), fs[1].join("uploads")];
        for b in &buckets {
            std::fs::create_dir_all(b).expect("bucket");
        }
        let open = |i: usize| -> Arc<dyn BlobStore> {
            Arc::new(DirStore::open("fs", &fs[i], "uploads", Layout::Flat, true).expect("open"))
        };
        let (fs0, fs1) = (open(0), open(1));
        Self {
            fs,
            buckets,
            fs0,
            fs1,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_smaller_size_gets_a_new_pair() {
        type Case<'a> = (&'a [u64], &'a [(u64, usize)]);
        let cases: [Case; 4] = [
            (
                &[2_000, 200_000, 1_000_000],
                &[(2_000, 0), (200_000, 0), (1_000_000, 0)],
            ),
            (
                &[2_000, 1_000_000, 2_000],
                &[(2_000, 0), (1_000_000, 0), (2_000, 1)],
            ),
            (
                &[2_000, 1_000_000, 2_000, 1_000_000],
                &[(2_000, 0), (1_000_000, 0), (2_000, 1), (1_000_000, 1)],
            ),
            (&[], &[]),
        ];
        for (sizes, want) in cases {
            assert_eq!(super::pairs(sizes), want, "{sizes:?}");
        }
    }
}
