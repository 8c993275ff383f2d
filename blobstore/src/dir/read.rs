//! A get's files in one blocking call: the body opened, its size and sidecar read, and a small
//! body (or a cache body to be verified) read whole. Each step on its own would be a trip to the
//! blocking pool and back; a scrub or a burst of reads pays those trips per object.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::SystemTime;

use super::{cache, sidecar_of, Found};

/// Bodies up to this size are read whole by the call that opens them (no range asked): one
/// trip instead of one per chunk, and most images are under it.
pub const SMALL_WHOLE: u64 = 256 << 10;

/// What opening an object for reading found.
pub enum Opened {
    /// The name is not a regular file.
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

/// Where opening failed: at the body's open (the object may be absent), or after.
pub enum Failed {
    Open(io::Error),
    Later(io::Error),
}

/// Opens `paths[0]` (the body; then its cache sidecar and its sidecar file, as [`sidecar_of`]
/// takes them) and reads it whole when it is small and wanted whole, or a cache body to verify.
pub fn open(paths: [PathBuf; 3], whole_wanted: bool) -> Result<Opened, Failed> {
    let mut file = File::open(&paths[0]).map_err(Failed::Open)?;
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
