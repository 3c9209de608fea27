//! Background removal speed and memory: unmark's ISNet on burn (CPU, flex) against
//! onnxruntime running the same weights with rembg's pre- and post-processing, with the same
//! number of threads, in the same run.
//!
//! `cargo bench --bench background [-- --threads N --repeat R --sizes 512,1024,2048]`
//!
//! Per photo size: seconds per whole run (preprocessing, forward pass, mask back to size) and
//! per forward pass, both sides; then one batch of 2 against two single passes; then peak
//! resident memory of this process (weights, network, activations) and of onnxruntime's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use unmark_models::{Backend, Segmenter, import, preprocess};

#[path = "eval_files.rs"]
mod eval_files;

#[path = "isnet_resources.rs"]
mod isnet_resources;
use isnet_resources::resources;

const PHOTOS: [&str; 3] = ["chelsea", "astronaut", "rocket"];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// onnxruntime's timings for `photos` (reference.py), as (total, forward) medians per photo
/// and its peak RSS in MiB.
fn onnxruntime(photos: &[PathBuf], threads: usize, repeat: usize) -> (Vec<(f64, f64)>, f64) {
    let out = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/isnet/reference.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(resources())
        .arg(out.path())
        .args(photos)
        .args([
            "--threads",
            &threads.to_string(),
            "--repeat",
            &repeat.to_string(),
        ])
        .status()
        .expect("python3");
    assert!(status.success(), "reference.py failed");
    let timing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("timing.json")).expect("timing"))
            .expect("json");
    let per_photo = photos
        .iter()
        .map(|p| {
            let stem = p.file_stem().expect("a photo file").to_string_lossy();
            let list = |k: &str| -> Vec<f64> {
                timing["photos"][stem.as_ref()][k]
                    .as_array()
                    .expect("times")
                    .iter()
                    .filter_map(|v| v.as_f64())
                    .collect()
            };
            (median(list("total")), median(list("forward")))
        })
        .collect();
    let peak = timing["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0;
    (per_photo, peak)
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (mut threads, mut repeat) = (cores, 2usize);
    let mut sizes = vec![512u32, 1024, 2048];
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--threads" => threads = it.next().and_then(|v| v.parse().ok()).expect("number"),
            "--repeat" => repeat = it.next().and_then(|v| v.parse().ok()).expect("number"),
            "--sizes" => {
                sizes = it
                    .next()
                    .expect("sizes")
                    .split(',')
                    .map(|s| s.parse().expect("size"))
                    .collect()
            }
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("pool");
    let eval = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/eval");
    let (bytes, source) = import::read_source(&resources()).expect("weights");
    let weights = import::isnet_from_onnx(&bytes, &source).expect("import");
    let net = Segmenter::from_weights(&weights, Backend::Cpu).expect("isnet");
    drop(weights);
    net.warm_up().expect("warm-up");
    println!("ISNet at 1024x1024, {threads} threads, median of {repeat} runs per photo");
    println!();
    println!(
        "| photo size | unmark total s | unmark forward s | onnxruntime total s | onnxruntime forward s | total ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut ort_peak: f64 = 0.0;
    for size in &sizes {
        let photos: Vec<PathBuf> = PHOTOS
            .iter()
            .map(|n| eval.join(format!("photos/{size}/{n}.jpg")))
            .collect();
        let (ours_total, ours_forward): (Vec<f64>, Vec<f64>) = photos
            .iter()
            .map(|p| {
                let r = eval_files::read(p);
                let rgb: Vec<u8> = r.data.clone();
                assert_eq!(r.channels, 3, "{}", p.display());
                let mut total = Vec::new();
                let mut forward = Vec::new();
                for _ in 0..repeat {
                    let start = Instant::now();
                    let input = preprocess::normalize(&rgb, r.size(), 1024).expect("input");
                    let began = Instant::now();
                    let pred = net.predict(&[input]).expect("forward").remove(0);
                    forward.push(began.elapsed().as_secs_f64());
                    let mask =
                        preprocess::mask_from_prediction(&pred, 1024, r.size()).expect("mask");
                    assert_eq!(mask.len(), r.data.len() / 3);
                    total.push(start.elapsed().as_secs_f64());
                }
                (median(total), median(forward))
            })
            .unzip();
        let (ort, peak) = onnxruntime(&photos, threads, repeat);
        ort_peak = ort_peak.max(peak);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let ort_total: Vec<f64> = ort.iter().map(|t| t.0).collect();
        let ort_forward: Vec<f64> = ort.iter().map(|t| t.1).collect();
        println!(
            "| {size} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x |",
            mean(&ours_total),
            mean(&ours_forward),
            mean(&ort_total),
            mean(&ort_forward),
            mean(&ours_total) / mean(&ort_total)
        );
    }
    // Dynamic batching: one pass over two inputs against two single passes.
    let input = vec![0.1f32; 3 * 1024 * 1024];
    let start = Instant::now();
    for _ in 0..2 {
        net.predict(std::slice::from_ref(&input)).expect("forward");
    }
    let single = start.elapsed().as_secs_f64();
    let start = Instant::now();
    net.predict(&[input.clone(), input]).expect("forward");
    let batched = start.elapsed().as_secs_f64();
    println!();
    println!(
        "two images: two passes {single:.2} s, one batch of 2 {batched:.2} s ({:.2}x)",
        single / batched
    );
    println!(
        "peak resident memory: unmark {:.0} MiB (this bench process), onnxruntime {:.0} MiB (reference.py)",
        peak_mib(),
        ort_peak
    );
    composite_at_2048(&eval, &net, repeat);
    drop(net);
    burn_modules_on_the_cpu(&bytes, &source);
}

/// One pass of the burn modules with burn's own CPU convolutions (im2col and GEMM), the path
/// the CPU kernels replace: where the time went before.
fn burn_modules_on_the_cpu(bytes: &[u8], source: &str) {
    let weights = import::isnet_from_onnx(bytes, source).expect("import");
    let net =
        Segmenter::burn_modules(&weights, Backend::Cpu.device().expect("cpu")).expect("isnet");
    net.warm_up().expect("warm-up");
    let input = vec![0.1f32; 3 * 1024 * 1024];
    let start = Instant::now();
    net.predict(&[input]).expect("forward");
    println!();
    println!(
        "burn's own CPU kernels (conv2d by im2col), one forward pass at 1024: {:.2} s",
        start.elapsed().as_secs_f64()
    );
}

/// The composite stage and the PNG encoder on a 2048 px photo: rembg's slow parts (closed-form
/// alpha matting, Pillow's RGBA PNG writer) are ours to beat there.
fn composite_at_2048(eval: &Path, net: &Segmenter, repeat: usize) {
    use unmark_schemas::background::CompositeParams;
    use unmark_schemas::params::{EncodeParams, OutputFormat};
    use unmark_stages::artifact::{DecodedImage, SourceFormat};
    use unmark_stages::{Raster, composite, encode};

    let photo = eval_files::read(&eval.join("photos/2048/chelsea.jpg"));
    let mask = net
        .masks(&[(&photo.data[..], photo.size())])
        .expect("mask")
        .remove(0);
    let alpha = Raster::from_data(photo.width, photo.height, 1, mask).expect("alpha");
    let image = DecodedImage {
        raster: photo,
        format: SourceFormat::Png,
        icc: None,
        exif: None,
    };
    println!();
    println!(
        "composite at {}x{} (median of {repeat}):",
        image.raster.width, image.raster.height
    );
    let cases = [
        ("cut-out (rgba)", CompositeParams::default()),
        (
            "alpha matting (af 240, ab 10, ae 10)",
            CompositeParams {
                alpha_matting: true,
                ..Default::default()
            },
        ),
        (
            "decontaminate only",
            CompositeParams {
                decontaminate: true,
                ..Default::default()
            },
        ),
    ];
    let mut cut = None;
    for (label, params) in cases {
        let mut times = Vec::new();
        for _ in 0..repeat {
            let start = Instant::now();
            let out = composite::composite(&image, &alpha, None, &params).expect("composite");
            times.push(start.elapsed().as_secs_f64());
            cut.get_or_insert(out);
        }
        println!("  {label}: {:.3} s", median(times));
    }
    let cut = DecodedImage {
        raster: cut.expect("a cut-out"),
        format: SourceFormat::Png,
        icc: None,
        exif: None,
    };
    let png = EncodeParams {
        format: Some(OutputFormat::Png),
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..repeat {
        let start = Instant::now();
        size = encode::encode(&cut, &png).expect("png").0.len();
        times.push(start.elapsed().as_secs_f64());
    }
    println!(
        "  RGBA PNG encode: {:.3} s ({:.1} MB)",
        median(times),
        size as f64 / 1e6
    );
}
