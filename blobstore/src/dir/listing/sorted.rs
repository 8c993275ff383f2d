//! The sorted names of a directory too large to hold in memory: sorted in runs of [`RUN`] names,
//! each written to a temporary file, then merged into one file of length-prefixed names; a
//! sparse index (every [`STRIDE`]th name and where it starts) finds where a page begins. Memory
//! is that of one run and the index, whatever the directory holds. The file goes with the value.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Names sorted in memory at once (about 6 MB of 47-character keys).
pub const RUN: usize = 65_536;
/// One name in this many is kept in memory with its offset.
const STRIDE: usize = 1024;

#[derive(Debug)]
pub struct SortedNames {
    path: PathBuf,
    /// Every `STRIDE`th name, with the offset of its record.
    index: Vec<(String, u64)>,
}

fn temp(dir: &Path, what: &str) -> PathBuf {
    dir.join(format!("list-{what}-{:016x}", rand::random::<u64>()))
}

fn write_record(out: &mut impl Write, name: &str) -> io::Result<()> {
    let len = u16::try_from(name.len()).map_err(|_| io::Error::other("name longer than 64 KiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(name.as_bytes())
}

/// The next record of `r`, `None` at its end.
fn read_record(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut len = [0u8; 2];
    if r.fill_buf()?.is_empty() {
        return Ok(None);
    }
    r.read_exact(&mut len)?;
    let mut name = vec![0u8; u16::from_le_bytes(len) as usize];
    r.read_exact(&mut name)?;
    String::from_utf8(name).map(Some).map_err(io::Error::other)
}

/// Removes a file when dropped (runs, and a sort that failed half way).
struct Doomed(PathBuf);

impl Drop for Doomed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_run(dir: &Path, run: &mut Vec<String>) -> io::Result<Doomed> {
    run.sort_unstable();
    let file = Doomed(temp(dir, "run"));
    let mut out = BufWriter::new(File::create(&file.0)?);
    for name in run.drain(..) {
        write_record(&mut out, &name)?;
    }
    out.flush()?;
    Ok(file)
}

impl SortedNames {
    /// Sorts `first` (a full run already read) and the rest of `names` into a file in `dir`,
    /// `run` names in memory at once.
    pub fn build(
        dir: &Path,
        mut first: Vec<String>,
        names: impl Iterator<Item = io::Result<String>>,
        run: usize,
    ) -> io::Result<Self> {
        let mut runs = vec![write_run(dir, &mut first)?];
        for name in names {
            first.push(name?);
            if first.len() >= run {
                runs.push(write_run(dir, &mut first)?);
            }
        }
        if !first.is_empty() {
            runs.push(write_run(dir, &mut first)?);
        }
        let merged = Doomed(temp(dir, "sorted"));
        let mut out = BufWriter::new(File::create(&merged.0)?);
        let mut readers = runs
            .iter()
            .map(|r| File::open(&r.0).map(|f| BufReader::with_capacity(16 << 10, f)))
            .collect::<io::Result<Vec<_>>>()?;
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(name) = read_record(r)? {
                heap.push(Reverse((name, i)));
            }
        }
        let (mut index, mut offset, mut count) = (Vec::new(), 0u64, 0usize);
        while let Some(Reverse((name, i))) = heap.pop() {
            if count % STRIDE == 0 {
                index.push((name.clone(), offset));
            }
            write_record(&mut out, &name)?;
            offset += 2 + name.len() as u64;
            count += 1;
            if let Some(next) = read_record(&mut readers[i])? {
                heap.push(Reverse((next, i)));
            }
        }
        out.flush()?;
        let path = merged.0.clone();
        std::mem::forget(merged);
        Ok(Self { path, index })
    }

    /// The names from the first one at or past `after` (all of them without it), and the name
    /// just before that one, if any.
    pub fn from(&self, after: Option<&str>) -> io::Result<(Option<String>, Names)> {
        let mut reader = BufReader::with_capacity(64 << 10, File::open(&self.path)?);
        let Some(after) = after else {
            return Ok((None, Names { reader, first: None }));
        };
        // The last indexed name before `after`: the scan starts there.
        let at = self.index.partition_point(|(n, _)| n.as_str() < after);
        let Some((_, offset)) = at.checked_sub(1).map(|i| &self.index[i]) else {
            return Ok((None, Names { reader, first: None }));
        };
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(*offset))?;
        let mut before = None;
        while let Some(name) = read_record(&mut reader)? {
            if name.as_str() >= after {
                return Ok((
                    before,
                    Names {
                        reader,
                        first: Some(name),
                    },
                ));
            }
            before = Some(name);
        }
        Ok((before, Names { reader, first: None }))
    }
}

impl Drop for SortedNames {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Names read in order from a [`SortedNames`] file.
pub struct Names {
    reader: BufReader<File>,
    first: Option<String>,
}

impl Iterator for Names {
    type Item = io::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        read_record(&mut self.reader).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name comes back once, in order, from any starting point, and no file is left
    /// behind but the sorted one, which goes with its value.
    #[test]
    fn names_sorted_in_runs_come_back_in_order_from_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let n = RUN * 2 + 777;
        // Scrambled, with names of several lengths (a directory entry ends in `/`).
        let names: Vec<String> = (0..n)
            .map(|i| {
                let j = (i * 7919) % n;
                if j % 10 == 0 {
                    format!("d{j}/")
                } else {
                    format!("k{j:06}")
                }
            })
            .collect();
        let mut rest = names.clone().into_iter();
        let first: Vec<String> = rest.by_ref().take(RUN).collect();
        let sorted = SortedNames::build(dir.path(), first, rest.map(Ok), RUN).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "runs removed");
        let mut want = names.clone();
        want.sort();
        let (before, all) = sorted.from(None).unwrap();
        assert_eq!(before, None);
        assert_eq!(all.collect::<io::Result<Vec<_>>>().unwrap(), want);
        for probe in [0, 1, STRIDE - 1, STRIDE, STRIDE + 1, RUN + 5, n - 1] {
            let after = want[probe].clone();
            let (before, rest) = sorted.from(Some(&after)).unwrap();
            assert_eq!(before, probe.checked_sub(1).map(|i| want[i].clone()), "{probe}");
            let rest: Vec<String> = rest.take(3).collect::<io::Result<_>>().unwrap();
            assert_eq!(rest, want[probe..(probe + 3).min(n)], "{probe}");
        }
        let (before, mut rest) = sorted.from(Some("zzz")).unwrap();
        assert_eq!(before.as_ref(), want.last());
        assert!(rest.next().is_none());
        let (before, _) = sorted.from(Some("")).unwrap();
        assert_eq!(before, None);
        drop(sorted);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the file goes with it"
        );
    }
}
