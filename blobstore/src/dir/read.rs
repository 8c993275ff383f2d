//! A get's files in one blocking call: the body opened, its size and sidecar read, and a small
//! body (or a cache body to be verified) read whole. Each step on its own would be a trip to the
//! blocking pool and back; a scrub or a burst of reads pays those trips per object.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{cache, sidecar_of, Found};

/// Bodies up to this size are read whole by the call that opens them (no range asked): one
/// trip instead of one per chunk, and most images are under it.
pub const SMALL_WHOLE: u64 = 256 << 10;

/// What opening an object for reading found.
pub enum Opened {
    /// The name is not a regular file, or nothing: no such object.
    NotFile,
    File {
        file: File,
        size: u64,
        modified: Option<SystemTime>,
        found: Found,
        /// The whole body, when it was read here.
        whole: Option<Vec<u8>>,
    },
}

/// Where opening failed: the bucket is not there, at the body's open, or after.
pub enum Failed {
    NoBucket,
    Open(io::Error),
    Later(io::Error),
}

/// Opens `paths[0]` (the body; then its cache sidecar and its sidecar file, as [`sidecar_of`]
/// takes them) and reads it whole when it is small and wanted whole, or a cache body to verify.
/// An absent body is told from an absent `bucket` in the same call.
pub fn open(paths: [PathBuf; 3], bucket: &Path, whole_wanted: bool) -> Result<Opened, Failed> {
    let mut file = match File::open(&paths[0]) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match std::fs::metadata(bucket) {
                Ok(m) if m.is_dir() => Ok(Opened::NotFile),
                _ => Err(Failed::NoBucket),
            };
        }
        Err(e) => return Err(Failed::Open(e)),
    };
    let md = file.metadata().map_err(Failed::Later)?;
    if !md.is_file() {
        return Ok(Opened::NotFile);
    }
    let size = md.len();
    let found = sidecar_of(&paths, size).map_err(Failed::Later)?;
    let read_whole = match found {
        Found::Cache(_) => size <= cache::VERIFY_WHOLE,
        Found::Torn => false,
        Found::Durable(_) => whole_wanted && size <= SMALL_WHOLE,
    };
    let whole = if read_whole {
        let mut buf = Vec::with_capacity(size as usize);
        // No more than the size just read: a body growing under us is not read past it.
        (&mut file)
            .take(size)
            .read_to_end(&mut buf)
            .map_err(Failed::Later)?;
        Some(buf)
    } else {
        None
    };
    Ok(Opened::File {
        file,
        size,
        modified: md.modified().ok(),
        found,
        whole,
    })
}
