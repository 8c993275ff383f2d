//! An object's sidecar (a durable put's or a cache put's) kept in an extended attribute of its
//! body file (`user.hive.meta`) instead of a file of its own: a put then creates, syncs (if
//! durable) and renames one file, not two (on ext4, creating a file was a tenth of an upload's
//! CPU), and a read takes the metadata from the inode it already has. The attribute lives and
//! dies with the body's inode, so a body and its metadata can never come from two different
//! writes.
//!
//! Filesystems without user attributes (some network or older in-memory ones) are found when the
//! store opens ([`probe`]); puts there keep the sidecar file. Reads always look here first,
//! then for a sidecar file. Copying a store elsewhere must keep attributes (`rsync -X`,
//! `cp --preserve=xattr`): without them its objects read as those of an earlier store (size and
//! date only, no content type or digest).

use std::fs::File;
use std::io;
use std::path::Path;

const NAME: &str = "user.hive.meta";
/// Larger than any sidecar we write (content type, digest, a few metadata pairs); a larger
/// value is not ours.
const MAX: usize = 4096;

/// Records `value` on `file`. An error means it was not recorded (`E2BIG`, `ENOSPC`, `ENOTSUP`):
/// the caller writes a sidecar file instead.
pub fn set(file: &File, value: &[u8]) -> io::Result<()> {
    if value.len() > MAX {
        return Err(io::Error::other("metadata larger than an attribute takes"));
    }
    rustix::fs::fsetxattr(file, NAME, value, rustix::fs::XattrFlags::empty()).map_err(io::Error::from)
}

/// The value recorded on `path`, if any (`None` also where attributes are not supported).
pub fn get(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; MAX];
    match rustix::fs::getxattr(path, NAME, &mut buf[..]) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP | rustix::io::Errno::RANGE) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether files made in `dir` take user attributes, and if so what one the size of an upload's
/// sidecar costs there beyond the file's inode, in bytes: `None` where attributes are refused;
/// `Some(0)` where it lives in the inode (ext4 formatted with 512-byte inodes, XFS) or in shared
/// metadata (btrfs, tmpfs); a block's worth on ext4's default 256-byte inodes, which keep at most
/// 60 bytes of it. One temporary file is tried.
pub fn probe(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join(format!("xattr-probe-{}", rand::random::<u64>()));
    let measured = (|| {
        let file = File::create(&probe).ok()?;
        // Whether attributes work is the probe's question: a failed stat only leaves the cost at 0.
        let before = file.metadata().map_or(0, |m| m.blocks());
        // Random digits, as every object's are: equal attribute blocks would be shared.
        let value = format!(
            r#"{{"size":123456,"sha256":"{:032x}{:032x}","sha256_prefix":"ImageSigningChallenge","md5":"","content_type":"image/jpeg"}}"#,
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        set(&file, value.as_bytes()).ok()?;
        let after = file.metadata().ok().map_or(before, |m| m.blocks());
        Some(after.saturating_sub(before) * 512)
    })();
    let _ = std::fs::remove_file(&probe);
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_read_back_and_its_absence_is_none() {
        let dir = tempfile::tempdir().unwrap();
        if probe(dir.path()).is_none() {
            eprintln!("no user attributes on {}: nothing to test", dir.path().display());
            return;
        }
        let path = dir.path().join("body");
        let file = File::create(&path).unwrap();
        assert_eq!(get(&path).unwrap(), None);
        set(&file, br#"{"size":3}"#).unwrap();
        assert_eq!(get(&path).unwrap().as_deref(), Some(&br#"{"size":3}"#[..]));
        assert!(set(&file, &vec![b' '; MAX + 1]).is_err());
        assert!(get(&dir.path().join("none")).is_err(), "no such file is an error");
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let Some(cost) = probe(dir.path()) else {
            return;
        };
        // Nothing, or whole blocks of this file system's.
        assert_eq!(cost % 512, 0, "{cost}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe is removed"
        );
    }
}
