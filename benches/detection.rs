//! Automatic watermark detection on `../shared/eval` (or `--eval DIR`), in one run:
//!
//! - per case, kind and size: precision, recall, F1 and IoU of the built-in detector's mask
//!   against the true mask (`alpha > 0`);
//! - end to end: masked PSNR and SSIM of removal (`restore`) with the detected mask (grown by
//!   `auto::GROWTH` as the service grows it) against removal with the exact true mask, and the
//!   input's;
//! - the share of pixels flagged on the clean photos (no watermark at all);
//! - time: detection against removal itself, per image, measured here.
//!
//! ```text
//! cargo bench --bench detection -- [--eval DIR] [--threshold 0.5] [--growth 2] [--threads 2]
//! ```

mod eval_files;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use eval_files::read;
use unmark_schemas::params::WatermarkOptions;
use unmark_stages::decode::binarize;
use unmark_stages::detect::auto;
use unmark_stages::inpaint::MaskOrigin;
use unmark_stages::quality::{MaskScores, psnr, ssim};
use unmark_stages::{Mask, Raster, remove_watermark_pixels};

#[derive(Default)]
struct Sum {
    n: f64,
    /// P, R, F1, IoU, PSNR detected, PSNR true, PSNR input, SSIM detected, SSIM true.
    v: [f64; 9],
}

impl Sum {
    fn add(&mut self, v: [f64; 9]) {
        self.n += 1.0;
        for (s, x) in self.v.iter_mut().zip(v) {
            *s += x;
        }
    }

    fn print(&self, label: &str) {
        let m: Vec<f64> = self.v.iter().map(|s| s / self.n).collect();
        println!(
            "{label:<14} {:>3} {:>5.3} {:>5.3} {:>5.3} {:>5.3} {:>8.2} {:>8.2} {:>8.2} {:>7.3} {:>7.3} {:>6.1}%",
            self.n,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            m[6],
            m[7],
            m[8],
            100.0 * m[4] / m[5]
        );
    }
}

fn main() {
    let mut eval = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/eval");
    let (mut threshold, mut threads, mut growth) = (0.5f32, 2usize, auto::GROWTH);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--eval" => eval = PathBuf::from(it.next().expect("--eval DIR")),
            "--threshold" => threshold = it.next().and_then(|v| v.parse().ok()).expect("number"),
            "--threads" => threads = it.next().and_then(|v| v.parse().ok()).expect("number"),
            "--growth" => growth = it.next().and_then(|v| v.parse().ok()).expect("number"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    let net = auto::Network::builtin();
    let options = WatermarkOptions::default();
    // A detected mask is grown as the service grows it; the true mask is used as it is (the
    // eval's exact `alpha > 0`, where growing only loses).
    let remove = |image: &Raster, mask: &Mask, origin: MaskOrigin, grow: u32| {
        let mut o = options.clone();
        o.detect.mask_dilate = grow;
        remove_watermark_pixels(image, mask, origin, &o).expect("remove")
    };
    let (mut by_kind, mut by_size) = (BTreeMap::<String, Sum>::new(), BTreeMap::new());
    let mut all = Sum::default();
    let mut times: BTreeMap<u64, (f64, f64, f64)> = BTreeMap::new();
    println!(
        "{:<44} {:>5} {:>5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8}",
        "case", "P", "R", "F1", "IoU", "det dB", "true dB", "input dB", "det ms"
    );
    for case in manifest["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().expect("id");
        let path = |k: &str| eval.join(case["paths"][k].as_str().expect("path"));
        let (image, truth, clean) = (
            read(&path("watermarked")),
            binarize(&read(&path("mask"))),
            read(&path("clean")),
        );
        // Median of 3 timed runs after a warm-up.
        let mut found = auto::detect(net, &image, threshold).expect("detect");
        let mut det = Vec::new();
        let mut rem = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            found = pool.install(|| auto::detect(net, &image, threshold).expect("detect"));
            det.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            pool.install(|| remove(&image, &found, MaskOrigin::Detected, growth));
            rem.push(t.elapsed().as_secs_f64());
        }
        det.sort_by(f64::total_cmp);
        rem.sort_by(f64::total_cmp);
        let s = MaskScores::of(&found, &truth);
        let with_found = remove(&image, &found, MaskOrigin::Detected, growth);
        let with_truth = remove(&image, &truth, MaskOrigin::Drawn, 0);
        let row = [
            s.precision,
            s.recall,
            s.f1,
            s.iou,
            psnr(&with_found, &clean, Some(&truth)),
            psnr(&with_truth, &clean, Some(&truth)),
            psnr(&image, &clean, Some(&truth)),
            ssim(&with_found, &clean, Some(&truth)),
            ssim(&with_truth, &clean, Some(&truth)),
        ];
        println!(
            "{id:<44} {:>5.2} {:>5.2} {:>5.2} {:>5.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            det[1] * 1e3
        );
        let side = case["long_side"].as_u64().expect("long side");
        let t = times.entry(side).or_default();
        *t = (t.0 + 1.0, t.1 + det[1], t.2 + rem[1]);
        by_kind
            .entry(case["kind"].as_str().expect("kind").to_owned())
            .or_default()
            .add(row);
        by_size.entry(side).or_insert_with(Sum::default).add(row);
        all.add(row);
    }
    println!();
    println!(
        "{:<14} {:>3} {:>5} {:>5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
        "group",
        "n",
        "P",
        "R",
        "F1",
        "IoU",
        "det dB",
        "true dB",
        "input dB",
        "det SSIM",
        "true SSIM",
        "det/true"
    );
    for (kind, s) in &by_kind {
        s.print(kind);
    }
    for (side, s) in &by_size {
        s.print(&format!("{side} px"));
    }
    all.print("all");
    println!();
    let mut flagged = Vec::new();
    for entry in std::fs::read_dir(eval.join("clean/512")).expect("clean photos") {
        let image = read(&entry.expect("entry").path());
        let found = auto::detect(net, &image, threshold).expect("detect");
        flagged.push(found.count() as f64 / (image.width * image.height) as f64);
    }
    flagged.sort_by(f64::total_cmp);
    println!(
        "clean photos (512 px, {}): flagged share mean {:.4}, max {:.4}",
        flagged.len(),
        flagged.iter().sum::<f64>() / flagged.len() as f64,
        flagged.last().copied().unwrap_or(0.0)
    );
    for (side, (n, det, rem)) in &times {
        println!(
            "time at {side} px ({threads} threads): detection {:.1} ms, removal with its mask {:.1} ms \
             (detection is {:.1}x removal)",
            det / n * 1e3,
            rem / n * 1e3,
            det / rem
        );
    }
}
