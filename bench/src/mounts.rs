//! What filesystem a path is on, as a bench prints it beside figures that depend on it: creating
//! files on an ext4 without a journal walks the inodes freed in the last minutes
//! (`find_inode_bit` → `recently_deleted`, which a journaled ext4 skips), so the same work costs
//! more CPU there the more files were deleted lately, by this run or the one before.

use std::path::Path;

/// `fstype on source`, with ", no journal" for an ext4 mounted without one; `None` if unknown.
pub fn describe(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (fstype, source) = mount_of(&mountinfo, &path.to_string_lossy())?;
    let journal = if fstype == "ext4" {
        let dev = source.rsplit('/').next().unwrap_or(source);
        let options = std::fs::read_to_string(format!("/proc/fs/ext4/{dev}/options")).unwrap_or_default();
        // A journaled ext4 lists its data mode (data=ordered, writeback or journal).
        if options.lines().any(|l| l.starts_with("data=")) || options.is_empty() {
            ""
        } else {
            ", no journal"
        }
    } else {
        ""
    };
    Some(format!("{fstype} on {source}{journal}"))
}

/// The filesystem type and source of the mount holding `path` (the longest mount point that is a
/// prefix of it), from `/proc/self/mountinfo`'s text.
fn mount_of<'a>(mountinfo: &'a str, path: &str) -> Option<(&'a str, &'a str)> {
    let mut best: Option<(usize, &str, &str)> = None;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = before.split(' ').nth(4) else {
            continue;
        };
        let mut after = after.split(' ');
        let (Some(fstype), Some(source)) = (after.next(), after.next()) else {
            continue;
        };
        let under = path == point
            || point == "/"
            || path.strip_prefix(point).is_some_and(|rest| rest.starts_with('/'));
        if under && best.is_none_or(|(len, _, _)| point.len() >= len) {
            best = Some((point.len(), fstype, source));
        }
    }
    best.map(|(_, fstype, source)| (fstype, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_point_above_a_path_is_its_mount() {
        let info = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    30 22 7:0 / /mnt/j rw,relatime - ext4 /dev/loop0 rw\n\
                    31 22 0:5 / /mnt/jx rw - tmpfs tmpfs rw\n";
        let table = [
            ("/tmp/x", Some(("ext4", "/dev/vda"))),
            ("/mnt/j", Some(("ext4", "/dev/loop0"))),
            ("/mnt/j/a/b", Some(("ext4", "/dev/loop0"))),
            ("/mnt/jx/a", Some(("tmpfs", "tmpfs"))),
            ("/mnt/jy", Some(("ext4", "/dev/vda"))),
        ];
        for (path, want) in table {
            assert_eq!(mount_of(info, path), want, "{path}");
        }
        assert_eq!(mount_of("garbage\n", "/"), None);
    }
}
