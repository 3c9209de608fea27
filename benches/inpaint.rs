//! Quality and speed of the `telea` engine against OpenCV's Telea, measured in the same run on
//! `../shared/eval` (or `--eval DIR`).
//!
//! ```text
//! cargo bench --bench inpaint -- [--engine telea|restore] [--radius 5] [--dilate 2] [--work-max-side 4096]
//!                                [--repeat 3] [--threads 1] [--only SUBSTRING]
//! ```
//!
//! Both engines get the same input and the same (dilated) mask; metrics are taken on the
//! undilated ground-truth mask against the clean image. Prints one row per size and kind:
//! masked PSNR and SSIM of each, and how many times faster unmark's whole pixel path
//! (dilate + crops + inpaint + compose) is than `cv2.inpaint` alone. Needs python3 with
//! `opencv-python-headless` (installed by `scripts/setup.sh --bench`).

mod eval_files;
mod opencv;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use eval_files::read;
use unmark_schemas::params::WatermarkOptions;
use unmark_stages::decode::binarize;
use unmark_stages::inpaint::MaskOrigin;
use unmark_stages::{detect, quality, remove_watermark_pixels};

struct Args {
    eval: PathBuf,
    options: WatermarkOptions,
    repeat: usize,
    threads: usize,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        eval: Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval"),
        options: WatermarkOptions::default(),
        repeat: 3,
        threads: 1,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        let number = |v: String| {
            v.parse::<u32>()
                .unwrap_or_else(|_| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--eval" => args.eval = PathBuf::from(value()),
            "--radius" => args.options.inpaint.radius = number(value()),
            "--engine" => {
                args.options.inpaint.engine =
                    unmark_schemas::params::Engine::parse(&value()).expect("engine")
            }
            "--dilate" => args.options.detect.mask_dilate = number(value()),
            "--work-max-side" => args.options.prescale.work_max_side = number(value()),
            "--repeat" => args.repeat = number(value()) as usize,
            "--threads" => args.threads = number(value()) as usize,
            "--only" => args.only = Some(value()),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Default)]
struct Row {
    n: usize,
    psnr: [f64; 2],
    ssim: [f64; 2],
    secs: [f64; 2],
}

fn main() {
    let args = parse_args();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(args.eval.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .expect("pool");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cases = Vec::new();
    let mut references = Vec::new();
    for case in manifest["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().unwrap_or_default().to_owned();
        if args.only.as_ref().is_some_and(|s| !id.contains(s.as_str())) {
            continue;
        }
        let path = |k: &str| {
            args.eval
                .join(case["paths"][k].as_str().unwrap_or_default())
        };
        let image = read(&path("watermarked"));
        let truth_mask = binarize(&read(&path("mask")));
        let clean = read(&path("clean"));
        let mut ours = Vec::new();
        let mut out = image.clone();
        for _ in 0..args.repeat.max(1) {
            let started = Instant::now();
            out = pool
                .install(|| {
                    remove_watermark_pixels(&image, &truth_mask, MaskOrigin::Drawn, &args.options)
                })
                .expect("inpaint");
            ours.push(started.elapsed().as_secs_f64());
        }
        let dilated = detect::dilate(&truth_mask, args.options.detect.mask_dilate);
        references.push((path("watermarked"), dilated));
        let key = (
            case["long_side"].as_u64().unwrap_or(0),
            case["kind"].as_str().unwrap_or("").to_owned(),
        );
        cases.push((id, key, clean, truth_mask, out, median(ours)));
    }
    let jobs: Vec<opencv::Case> = cases
        .iter()
        .zip(&references)
        .map(|((id, ..), (image, mask))| opencv::Case {
            id,
            image: image.clone(),
            mask,
        })
        .collect();
    let cv = opencv::telea(&jobs, args.options.inpaint.radius, args.repeat, tmp.path());

    let mut rows: BTreeMap<(u64, String), Row> = BTreeMap::new();
    println!(
        "{:<44} {:>8} {:>8} {:>7} {:>7} {:>9}",
        "case", "psnr", "cv", "ssim", "cv", "speedup"
    );
    for ((id, key, clean, mask, ours, our_secs), (cv_path, cv_secs)) in cases.into_iter().zip(cv) {
        let cv = read(&cv_path);
        let p = [
            quality::psnr(&ours, &clean, Some(&mask)),
            quality::psnr(&cv, &clean, Some(&mask)),
        ];
        let s = [
            quality::ssim(&ours, &clean, Some(&mask)),
            quality::ssim(&cv, &clean, Some(&mask)),
        ];
        println!(
            "{id:<44} {:>8.2} {:>8.2} {:>7.4} {:>7.4} {:>8.2}x",
            p[0],
            p[1],
            s[0],
            s[1],
            cv_secs / our_secs
        );
        for k in [
            key.clone(),
            (key.0, "all".to_owned()),
            (0, "all".to_owned()),
        ] {
            let row = rows.entry(k).or_default();
            row.n += 1;
            for i in 0..2 {
                row.psnr[i] += p[i];
                row.ssim[i] += s[i];
            }
            row.secs[0] += our_secs;
            row.secs[1] += cv_secs;
        }
    }
    println!(
        "\nengine {} radius {} dilate {} work_max_side {} threads {} repeat {}",
        args.options.inpaint.engine.as_str(),
        args.options.inpaint.radius,
        args.options.detect.mask_dilate,
        args.options.prescale.work_max_side,
        args.threads,
        args.repeat
    );
    println!(
        "{:<6} {:<12} {:>3} {:>9} {:>9} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "size", "kind", "n", "psnr", "cv psnr", "ssim", "cv ssim", "ms", "cv ms", "speedup"
    );
    for ((size, kind), r) in &rows {
        let n = r.n as f64;
        let size = if *size == 0 {
            "all".to_owned()
        } else {
            size.to_string()
        };
        println!(
            "{size:<6} {kind:<12} {:>3} {:>9.2} {:>9.2} {:>8.4} {:>8.4} {:>10.2} {:>10.2} {:>7.2}x",
            r.n,
            r.psnr[0] / n,
            r.psnr[1] / n,
            r.ssim[0] / n,
            r.ssim[1] / n,
            r.secs[0] / n * 1e3,
            r.secs[1] / n * 1e3,
            r.secs[1] / r.secs[0]
        );
    }
}
