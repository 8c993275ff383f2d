//! Where a process's CPU goes during one phase of a bench: `perf record` samples one core (the
//! process is pinned to it, the load is elsewhere), and each sampled function is put in a stage
//! of the image service's work ([`stage`]). The bench prints the shares; a finer look (call
//! graphs) is `perf record -g` by hand. Without `perf` (Debian's `linux-perf`) or the rights to
//! sample a CPU, nothing is printed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The stages, in the order they are printed.
pub const STAGES: [&str; 12] = [
    "JPEG decode",
    "resize",
    "encode",
    "hashing (SHA-256, MD5)",
    "signature key recovery",
    "kernel: creating files (ext4 inode search)",
    "kernel: copying bytes (socket, page cache)",
    "kernel: fresh pages (faults, zeroing, freeing)",
    "kernel: scheduling and wakeups",
    "kernel: the rest (TCP, files, sync)",
    "memory copies and allocation",
    "the rest (HTTP, runtime, stores)",
];

/// The stage a sampled function belongs to, from its object (`dso`) and its name.
pub fn stage(dso: &str, sym: &str) -> &'static str {
    let has = |parts: &[&str]| parts.iter().any(|p| sym.contains(p));
    if dso.contains("kernel") {
        let kernel: [(&[&str], &'static str); 4] = [
            (
                &[
                    "recently_deleted",
                    "find_inode_bit",
                    "find_get_block",
                    "ext4_get_group_desc",
                    "ext4_new_inode",
                    "__brelse",
                    "_find_next_zero_bit",
                ],
                STAGES[5],
            ),
            (
                &[
                    "copy_user",
                    "rep_movs",
                    "_copy_to_iter",
                    "_copy_from_iter",
                    "copy_folio",
                    "memcpy",
                    "copy_page",
                ],
                STAGES[6],
            ),
            (
                &[
                    "clear_page",
                    "page_fault",
                    "handle_mm_fault",
                    "do_anonymous_page",
                    "unmap_page_range",
                    "zap_",
                    "release_pages",
                    "free_unref",
                    "get_page_from_freelist",
                    "rmqueue",
                ],
                STAGES[7],
            ),
            (
                &[
                    "finish_task_switch",
                    "schedule",
                    "switch_to",
                    "futex",
                    "wake_up",
                    "_raw_spin_unlock_irq",
                    "pick_next",
                    "enqueue_",
                    "dequeue_",
                ],
                STAGES[8],
            ),
        ];
        return kernel
            .iter()
            .find(|(parts, _)| has(parts))
            .map_or(STAGES[9], |(_, stage)| stage);
    }
    // Encoding first: its Huffman and colour-conversion routines share prefixes with decoding's.
    if has(&[
        "encode_mcu",
        "jsimd_fdct",
        "jsimd_huff_encode",
        "jsimd_quantize",
        "_ycc_convert", // RGB → YCbCr, before the forward DCT
        "forward_DCT",
        "compress_data",
        "webp",
        "aom_",
        "av1_",
        "png::encoder",
    ]) {
        return STAGES[2];
    }
    if has(&[
        "decode_mcu",
        "jsimd_idct",
        "ycc_extrgb",
        "ycc_rgb",
        "upsample",
        "decompress_",
        "pipeline::shrink",
        "jpeg_",
        "zune_",
        "png::decoder",
        "inflate",
    ]) {
        return STAGES[0];
    }
    if has(&["fast_image_resize", "__sin", "__cos", "resize"]) {
        return STAGES[1];
    }
    if has(&["sha2::", "sha256", "md5"]) {
        return STAGES[3];
    }
    if has(&["k256", "secp256k1", "ecdsa", "elliptic", "crypto_bigint"]) {
        return STAGES[4];
    }
    if has(&["memmove", "memcpy", "memset", "_mi_", "mi_", "malloc", "free"]) {
        return STAGES[10];
    }
    STAGES[11]
}

/// A running `perf record` of one CPU.
pub struct Sampler {
    perf: Child,
    data: PathBuf,
}

impl Sampler {
    /// Starts sampling `cpu` into `data`, or `None` where perf cannot.
    pub fn start(cpu: &str, data: &Path) -> Option<Sampler> {
        let mut perf = Command::new("perf")
            .args(["record", "-C", cpu, "-F", "999", "-o"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf opens its events before the first sample: give it that moment, and see it live.
        std::thread::sleep(Duration::from_millis(300));
        match perf.try_wait() {
            Ok(None) => Some(Sampler {
                perf,
                data: data.to_path_buf(),
            }),
            _ => None,
        }
    }

    /// Stops sampling and returns each stage's share (percent) of `pid`'s samples, in
    /// [`STAGES`]' order; `None` if there were none.
    pub fn finish(mut self, pid: u32) -> Option<Vec<(&'static str, f64)>> {
        // SIGINT makes perf write its file out and exit.
        let _ = Command::new("kill")
            .args(["-INT", &self.perf.id().to_string()])
            .status();
        let _ = self.perf.wait();
        let out = Command::new("perf")
            .args(["report", "--no-children", "--sort", "dso,sym", "--stdio"])
            .args(["--field-separator", ";", "--pid", &pid.to_string(), "-i"])
            .arg(&self.data)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let _ = std::fs::remove_file(&self.data);
        shares(&String::from_utf8_lossy(&out.stdout))
    }
}

/// Each stage's share of the functions listed in a `perf report --field-separator ';'` (lines
/// `12.34%;dso;[.] symbol`), normalised to what was listed.
pub fn shares(report: &str) -> Option<Vec<(&'static str, f64)>> {
    let mut sums = [0f64; STAGES.len()];
    for line in report.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.split(';').map(str::trim);
        let (Some(pct), Some(dso), Some(sym)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(pct) = pct.trim_end_matches('%').parse::<f64>() else {
            continue;
        };
        let sym = sym.split_once("] ").map_or(sym, |(_, s)| s);
        if let Some(i) = STAGES.iter().position(|s| *s == stage(dso, sym)) {
            sums[i] += pct;
        }
    }
    let total: f64 = sums.iter().sum();
    (total > 0.0).then(|| {
        STAGES
            .iter()
            .zip(sums)
            .map(|(s, v)| (*s, v * 100.0 / total))
            .collect()
    })
}

/// Prints a phase's shares.
pub fn print(title: &str, shares: &[(&'static str, f64)]) {
    println!("\n{title}");
    for (stage, share) in shares.iter().filter(|(_, v)| *v >= 0.05) {
        println!("  {share:5.1} %  {stage}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_fall_in_their_stages() {
        let k = "[kernel.kallsyms]";
        let table = [
            ("imagehost", "decode_mcu", "JPEG decode"),
            (
                "imagehost",
                "imagehost::pipeline::shrink::idct::Idct::block",
                "JPEG decode",
            ),
            (
                "imagehost",
                "jsimd_ycc_extrgb_convert_avx2.columnloop",
                "JPEG decode",
            ),
            ("imagehost", "jsimd_extrgb_ycc_convert_avx2.rgb_ycc_cnv", "encode"),
            ("imagehost", "encode_mcu_gather", "encode"),
            ("imagehost", "jsimd_huff_encode_one_block_sse2.ERLOOP", "encode"),
            (
                "imagehost",
                "fast_image_resize::convolution::u8x3::avx2::horiz",
                "resize",
            ),
            ("libm.so.6", "__sin_fma", "resize"),
            (
                "imagehost",
                "sha2::sha256::x86::digest_blocks",
                "hashing (SHA-256, MD5)",
            ),
            (
                "imagehost",
                "k256::arithmetic::field::FieldElement::mul",
                "signature key recovery",
            ),
            (
                k,
                "recently_deleted",
                "kernel: creating files (ext4 inode search)",
            ),
            (k, "copy_user_enhanced_fast_string", STAGES[6]),
            (k, "clear_page_erms", STAGES[7]),
            (k, "finish_task_switch.isra.0", STAGES[8]),
            (k, "tcp_v4_rcv", STAGES[9]),
            (
                "libc.so.6",
                "__memmove_avx512_unaligned_erms",
                "memory copies and allocation",
            ),
            ("imagehost", "hyper::proto::h1::role::parse_headers", STAGES[11]),
        ];
        for (dso, sym, want) in table {
            assert_eq!(stage(dso, sym), want, "{sym}");
        }
    }

    #[test]
    fn a_report_is_summed_by_stage() {
        let report = "# comment\n 30.00%  ;imagehost ;[.] decode_mcu\n 10.00%  ;[kernel.kallsyms] ;[k] recently_deleted\n 10.00%  ;imagehost ;[.] sha2::sha256::x86::digest_blocks\nnot a line\n";
        let got = shares(report).unwrap();
        let of = |s: &str| got.iter().find(|(n, _)| *n == s).unwrap().1;
        assert!((of("JPEG decode") - 60.0).abs() < 1e-9);
        assert!((of(STAGES[5]) - 20.0).abs() < 1e-9);
        assert!((of(STAGES[3]) - 20.0).abs() < 1e-9);
        assert_eq!(shares("# nothing\n"), None);
    }
}
