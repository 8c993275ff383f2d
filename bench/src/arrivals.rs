//! Waiting for named files to arrive in a directory, told by the kernel (inotify) rather than
//! found by looking: a bench that polls a directory a store is renaming files into makes lookups
//! there, which compete with the very renames it times.

use std::collections::HashSet;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// A watch on one directory for files renamed into it, as a directory store publishes each
/// object it has written. Made before the files can arrive: one renamed in earlier is not seen
/// (only a lost event makes [`Arrivals::wait_for`] look the names up).
pub struct Arrivals {
    fd: OwnedFd,
    dir: PathBuf,
}

impl Arrivals {
    pub fn watch(dir: &Path) -> io::Result<Self> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        inotify::add_watch(&fd, dir, WatchFlags::MOVED_TO)?;
        Ok(Self {
            fd,
            dir: dir.to_path_buf(),
        })
    }

    /// Returns once every one of `names` has been renamed into the directory, or `TimedOut`
    /// after `limit`. If the kernel's event queue overflowed, the names still missing are
    /// looked up once instead.
    pub fn wait_for(&self, names: &[String], limit: Duration) -> io::Result<()> {
        let mut missing: HashSet<&str> = names.iter().map(String::as_str).collect();
        let deadline = Instant::now() + limit;
        let mut buf = [MaybeUninit::<u8>::uninit(); 64 * 1024];
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} files never arrived in {}", missing.len(), self.dir.display()),
                ));
            }
            let timeout = Timespec::try_from(left).map_err(io::Error::other)?;
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            poll(&mut fds, Some(&timeout))?;
            let mut reader = inotify::Reader::new(self.fd.as_fd(), &mut buf);
            loop {
                let event = match reader.next() {
                    Ok(event) => event,
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(e) => return Err(e.into()),
                };
                if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                    missing.retain(|name| !self.dir.join(name).exists());
                } else if let Some(name) = event.file_name().and_then(|n| n.to_str().ok()) {
                    missing.remove(name);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_files_are_seen_and_missing_ones_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let watch = Arrivals::watch(dir.path()).unwrap();
        let names: Vec<String> = (0..50).map(|i| format!("object-{i}")).collect();
        for name in &names {
            let tmp = dir.path().join(format!("{name}.tmp"));
            std::fs::write(&tmp, name).unwrap();
            std::fs::rename(&tmp, dir.path().join(name)).unwrap();
        }
        watch.wait_for(&names, Duration::from_secs(10)).unwrap();
        // Written in place, not renamed in: not an arrival.
        std::fs::write(dir.path().join("written"), "x").unwrap();
        let e = watch
            .wait_for(&["written".to_string()], Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
