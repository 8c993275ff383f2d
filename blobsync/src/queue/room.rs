//! Room left on the queue's disk. sled does not recover from a write that finds the disk full
//! (it refuses every write after until restarted), so new work is refused before that happens:
//! below `queue.min_free_bytes` free, change events get a 503 (the sender retries) and an
//! anti-entropy pass stops enqueueing; takedowns, small and urgent, may still use the reserve.
//! Nothing already queued is touched.

use std::path::Path;

/// Bytes free for an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `Err(free)` when fewer than `min` bytes are free under `path`; a filesystem that cannot be
/// asked counts as having room (the writes themselves will say otherwise).
pub fn check(path: &Path, min: u64) -> Result<(), u64> {
    match free_bytes(path) {
        Ok(free) if free < min => Err(free),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_compared() {
        let dir = tempfile::tempdir().expect("dir");
        let free = free_bytes(dir.path()).expect("statvfs");
        assert!(free > 0);
        assert_eq!(check(dir.path(), 0), Ok(()));
        assert!(check(dir.path(), u64::MAX).is_err());
        assert_eq!(check(Path::new("/nonexistent/queue"), u64::MAX), Ok(()));
    }
}
