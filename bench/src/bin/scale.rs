//! How each per-object cost of the cluster grows with the number of objects: built at 10,000,
//! 100,000 and `SCALE_MAX` (1,000,000) objects, measured at each, projected to the seeds' 40
//! million on the power law fitted to them (the table says so), and drawn
//! as a log-log plot (SVG) of cost against N per component, written to
//! `target/bench/scale.svg`.
//!
//! Components: the edge's disk tier (its index load at start, which it serves during, and the
//! index's bytes per object), imagehost's hot cache (its index load, likewise), and a whole
//! listing of a flat directory bucket in 1,000-key pages (what anti-entropy and `migrate` walk).
//! blobsync's daemon at scale is `blobsync_scale`; the tiers' hit ratios on a Zipf trace are in
//! `edge_disk`, `hotcache` and `peers`.
//!
//! Sizes are log-normal: thumbnails in the two caches (median 12 KB, 5–30 KB), originals in the
//! bucket (median 60 KB, 4 KB–2 MB; sparse files, since only their sizes are listed). At the
//! default a million files of each kind are made: about 30 GB of disk for the three.
//!
//!   target/release/scale

use std::path::Path;
use std::time::{Duration, Instant};

use blobstore::{BlobStore, DirStore, Layout, ListRequest};
use bytes::Bytes;
use edge::cache::disk::Disk;
use imagehost::hotcache::HotCache;
use service::admission::Frequency;

const SEEDS: f64 = 40e6;

/// Thumbnail sizes (the caches' objects): log-normal, median 12 KB, within 5–30 KB.
const THUMB: (usize, usize) = (5_000, 30_000);

fn thumb_size(i: u64) -> usize {
    bench::log_normal_size(i, 12_000.0, 0.5, THUMB.0, THUMB.1)
}

/// Originals' sizes (the bucket's objects): log-normal, median 60 KB, within 4 KB–2 MB.
fn original_size(i: u64) -> usize {
    bench::log_normal_size(i ^ 0x5EED, 60_000.0, 0.8, 4_000, 2_000_000)
}

struct Series {
    name: &'static str,
    unit: &'static str,
    /// A cost per object that the design bounds (projected as its largest measure, not a law).
    bounded: bool,
    points: Vec<(f64, f64)>,
}

fn main() {
    let max: u64 = std::env::var("SCALE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut sizes = vec![10_000u64, 100_000, max];
    sizes.retain(|n| *n <= max);
    sizes.dedup();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let root = tempfile::tempdir_in(".").expect("a temp dir on this disk");
    let (edge_dir, hot_dir, fs_root) = (
        root.path().join("edge"),
        root.path().join("hot"),
        root.path().join("fs"),
    );
    let bucket = fs_root.join("uploads");
    std::fs::create_dir_all(&bucket).expect("bucket");
    let mut series = vec![
        Series {
            name: "edge disk tier: index load (serving meanwhile)",
            unit: "s",
            bounded: false,
            points: vec![],
        },
        Series {
            name: "edge disk tier: index bytes per object",
            unit: "B",
            bounded: true,
            points: vec![],
        },
        Series {
            name: "imagehost hot cache: index load (serving meanwhile)",
            unit: "s",
            bounded: false,
            points: vec![],
        },
        Series {
            name: "directory bucket: listing pass, 1,000-key pages",
            unit: "s",
            bounded: false,
            points: vec![],
        },
    ];
    let everyone = Frequency::new(1024);
    let mut have = 0u64;
    for &n in &sizes {
        let t = Instant::now();
        {
            let disk = Disk::open(&edge_dir, u64::MAX / 2).expect("edge disk");
            disk.load(&|_, _| {});
            let hot = HotCache::open(&hot_dir, u64::MAX / 2).expect("hot cache");
            let bodies = Bytes::from(vec![7u8; THUMB.1]);
            while have < n {
                // Thumbnails in the two caches, at their log-normal sizes.
                let thumb = bodies.slice(..thumb_size(have));
                let (slot, mut rec) = bench::edge_object(have);
                rec.body = thumb.clone();
                disk.write(&slot, &rec, &everyone).expect("edge write");
                rt.block_on(hot.put(
                    &format!("U{:044x}_640x0_WEBP", have.wrapping_mul(0x9E37_79B9)),
                    &thumb,
                ));
                // An original: its size is what the listing reports, its bytes a sparse file
                // (nothing here reads them, and a million would not fit beside the build).
                let original = std::fs::File::create(bucket.join(format!("DQmScale{have:09}")))
                    .and_then(|f| f.set_len(original_size(have) as u64));
                original.expect("object");
                have += 1;
            }
            while hot.loading() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        eprintln!(
            "{n} objects of each kind in place ({:.1} s)",
            t.elapsed().as_secs_f64()
        );

        let t = Instant::now();
        let disk = Disk::open(&edge_dir, u64::MAX / 2).expect("edge disk");
        disk.load(&|_, _| {});
        series[0].points.push((n as f64, t.elapsed().as_secs_f64()));
        assert_eq!(disk.usage().0 as u64, n);
        series[1]
            .points
            .push((n as f64, disk.index_bytes() as f64 / n as f64));
        drop(disk);

        let t = Instant::now();
        let hot = HotCache::open(&hot_dir, u64::MAX / 2).expect("hot cache");
        while hot.loading() {
            std::thread::sleep(Duration::from_millis(2));
        }
        series[2].points.push((n as f64, t.elapsed().as_secs_f64()));
        assert_eq!(hot.entries() as u64, n);
        drop(hot);

        let store = DirStore::open("fs", &fs_root, "uploads", Layout::Flat, false).expect("store");
        let t = Instant::now();
        let mut req = ListRequest {
            max_keys: 1000,
            ..Default::default()
        };
        let mut listed = 0;
        loop {
            let page = rt.block_on(store.list(&req)).expect("list");
            listed += page.entries.len();
            match page.next {
                Some(next) => req.start_after = Some(next),
                None => break,
            }
        }
        assert_eq!(listed as u64, n);
        series[3].points.push((n as f64, t.elapsed().as_secs_f64()));
    }

    println!("\ncost against the number of objects, projected to {SEEDS:.0} on the power law fitted to the points (least squares in log-log; a bounded per-object cost is projected as its largest measure)");
    print!("{:<55}", "component");
    for n in &sizes {
        print!("{:>12}", format!("N={n}"));
    }
    println!("{:>14}{:>8}", "N=40M (proj.)", "slope");
    for s in &series {
        print!("{:<55}", format!("{} ({})", s.name, s.unit));
        for (_, v) in &s.points {
            print!("{v:>12.3}");
        }
        let (projected, slope) = project(s);
        println!("{projected:>14.1}{slope:>8.2}");
    }
    let out = Path::new("target/bench");
    std::fs::create_dir_all(out).expect("target/bench");
    let svg = out.join("scale.svg");
    std::fs::write(&svg, plot(&series)).expect("write the plot");
    println!("\nplot: {}", svg.display());
}

/// The value at [`SEEDS`] objects on the power law fitted to the points (least squares of
/// log value on log N), and its slope (1: grows like N; 0: flat). A bounded series: its largest
/// measure, slope 0.
fn project(s: &Series) -> (f64, f64) {
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|(n, v)| (n.ln(), v.ln()))
        .collect();
    if s.bounded || pts.len() < 2 {
        return (s.points.iter().map(|p| p.1).fold(0.0, f64::max), 0.0);
    }
    let k = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / k,
        pts.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
        / pts.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
    ((my + slope * (SEEDS.ln() - mx)).exp(), slope)
}

/// A log-log plot of every series, one line each, with decade grid lines.
fn plot(series: &[Series]) -> String {
    let (w, h, m) = (900.0, 520.0, 70.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.1 > 0.0)
        .collect();
    let (x0, x1) = (4.0, 7.7); // log10 N: 10^4 .. 4·10^7
    let y0 = all
        .iter()
        .map(|p| p.1.log10())
        .fold(f64::INFINITY, f64::min)
        .floor();
    let y1 = series
        .iter()
        .map(|s| project(s).0.max(1e-9).log10())
        .chain(all.iter().map(|p| p.1.log10()))
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil();
    let px = |n: f64| m + (n.log10() - x0) / (x1 - x0) * (w - 2.0 * m);
    let py = |v: f64| h - m - (v.max(1e-9).log10() - y0) / (y1 - y0).max(1.0) * (h - 2.0 * m);
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{m}\" y=\"24\" font-size=\"15\">Cost against objects held (log-log; dashed: projected to 40 M)</text>\n"
    );
    for d in (x0.ceil() as i32)..=(x1.floor() as i32) {
        let x = px(10f64.powi(d));
        svg += &format!("<line x1=\"{x}\" y1=\"{m}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">10^{d}</text>\n", h - m, h - m + 18.0);
    }
    for d in (y0 as i32)..=(y1 as i32) {
        let y = py(10f64.powi(d));
        svg += &format!("<line x1=\"{m}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">10^{d}</text>\n", w - m, m - 6.0, y + 4.0);
    }
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">objects (N)</text>\n",
        w / 2.0,
        h - 20.0
    );
    for (i, s) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(n, v)| format!("{:.1},{:.1}", px(*n), py(*v)))
            .collect();
        svg += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        );
        if let Some((n, v)) = s.points.last() {
            let (p, _) = project(s);
            svg += &format!(
                "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-dasharray=\"5,4\"/>\n",
                px(*n), py(*v), px(SEEDS), py(p)
            );
        }
        for (n, v) in &s.points {
            svg += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>\n",
                px(*n),
                py(*v)
            );
        }
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{} ({})</text>\n",
            m + 10.0,
            m + 16.0 * (i as f64 + 1.0),
            s.name,
            s.unit
        );
    }
    svg + "</svg>\n"
}
