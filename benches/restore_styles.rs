//! `restore` against `telea` and OpenCV's Telea per kind of mark, with each kind's worst case
//! and how often the self-check fell back to the fill: the dev set's kinds
//! (`../shared/eval`, or `--eval DIR`, with the exact masks) and the synthetic styles the
//! tests draw (`tests/synth_cases.rs`: every `unmark_stages::synth` style over a crop of each
//! dev photo at 1024 px). Quality only, plus the seconds each engine took in all.
//!
//! ```text
//! cargo bench --bench restore_styles -- [--eval DIR] [--set dev|synth|all] [--no-opencv]
//! ```
//!
//! Masked PSNR (the mask's pixels against the clean photo), per kind: the means of `telea`,
//! OpenCV and `restore`, restore's mean gain over `telea` (and over opacity <= 0.6 alone), its
//! worst gain and case, and the regions that fell back. OpenCV needs python3 with
//! `opencv-python-headless` (`scripts/setup.sh --bench`).

mod eval_files;
mod opencv;

#[path = "../tests/synth_cases.rs"]
mod synth_cases;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use eval_files::read;
use unmark_schemas::params::{Engine, InpaintParams};
use unmark_stages::decode::binarize;
use unmark_stages::inpaint::{MaskOrigin, inpaint_reported};
use unmark_stages::quality::psnr;
use unmark_stages::{Mask, Raster};

struct Args {
    eval: PathBuf,
    set: String,
    opencv: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        eval: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/eval"),
        set: "all".to_owned(),
        opencv: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--eval" => args.eval = PathBuf::from(value()),
            "--set" => args.set = value(),
            "--no-opencv" => args.opencv = false,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        ["dev", "synth", "all"].contains(&args.set.as_str()),
        "--set: dev, synth or all"
    );
    args
}

/// One case: where it comes from, its kind, the input, the mask, the clean photo.
struct Case {
    id: String,
    set: &'static str,
    kind: String,
    opacity: f64,
    image: Raster,
    mask: Mask,
    clean: Raster,
}

fn dev_cases(args: &Args) -> Vec<Case> {
    eval_files::manifest_cases(&args.eval)
        .iter()
        .map(|case| {
            let path = |k: &str| args.eval.join(case["paths"][k].as_str().expect("path"));
            Case {
                id: case["id"].as_str().expect("id").to_owned(),
                set: "dev",
                kind: case["kind"].as_str().expect("kind").to_owned(),
                opacity: case["opacity"].as_f64().expect("opacity"),
                image: read(&path("watermarked")),
                mask: binarize(&read(&path("mask"))),
                clean: read(&path("clean")),
            }
        })
        .collect()
}

fn synthetic_cases(args: &Args) -> Vec<Case> {
    synth_cases::synth_cases(&args.eval)
        .into_iter()
        .map(|(id, case)| Case {
            id,
            set: "synth",
            kind: case.style.name().to_owned(),
            opacity: f64::from(case.opacity),
            image: case.marked,
            mask: case.mask,
            clean: case.clean,
        })
        .collect()
}

/// One case's results.
struct Row {
    telea: f64,
    opencv: Option<f64>,
    restore: f64,
    regions: usize,
    fell_back: usize,
}

fn main() {
    let args = parse_args();
    let mut cases = Vec::new();
    if args.set != "synth" {
        cases.extend(dev_cases(&args));
    }
    if args.set != "dev" {
        cases.extend(synthetic_cases(&args));
    }
    let dir = std::env::temp_dir().join(format!("unmark-restore-styles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let radius = InpaintParams::default().radius;
    let opencv: Vec<Option<f64>> = if args.opencv {
        let inputs: Vec<PathBuf> = cases
            .iter()
            .map(|c| {
                let path = dir.join(format!("{}.png", c.id.replace(':', "-")));
                save(&c.image, &path);
                path
            })
            .collect();
        let refs: Vec<opencv::Case> = cases
            .iter()
            .zip(&inputs)
            .map(|(c, image)| opencv::Case {
                id: &c.id,
                image: image.clone(),
                mask: &c.mask,
            })
            .collect();
        opencv::telea(&refs, radius, 1, &dir)
            .into_iter()
            .zip(&cases)
            .map(|((out, _), c)| Some(psnr(&read(&out), &c.clean, Some(&c.mask))))
            .collect()
    } else {
        vec![None; cases.len()]
    };
    let mut seconds = [0f64; 2];
    let rows: Vec<Row> = cases
        .iter()
        .zip(opencv)
        .map(|(c, opencv)| {
            let mut run = |engine, slot: usize| {
                let mut out = c.image.clone();
                let params = InpaintParams { engine, radius };
                let started = Instant::now();
                let report = inpaint_reported(&mut out, &c.mask, MaskOrigin::Drawn, &params);
                seconds[slot] += started.elapsed().as_secs_f64();
                (psnr(&out, &c.clean, Some(&c.mask)), report)
            };
            let (telea, _) = run(Engine::Telea, 0);
            let (restore, report) = run(Engine::Restore, 1);
            let report = report.unwrap_or_default();
            println!(
                "{}: opacity {:.2}, telea {telea:.2}, opencv {}, restore {restore:.2} dB, regions {} fell back {}",
                c.id,
                c.opacity,
                opencv.map_or("-".to_owned(), |v| format!("{v:.2}")),
                report.regions,
                report.fell_back
            );
            Row {
                telea,
                opencv,
                restore,
                regions: report.regions,
                fell_back: report.fell_back,
            }
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    println!(
        "| set | kind | n | telea dB | OpenCV dB | restore dB | gain | gain at opacity <= 0.6 (n) | worst gain (case) | fell back |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut kinds: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (n, c) in cases.iter().enumerate() {
        kinds.entry((c.set, &c.kind)).or_default().push(n);
        kinds.entry((c.set, "all")).or_default().push(n);
    }
    for ((set, kind), members) in &kinds {
        let mean = |f: &dyn Fn(usize) -> f64| {
            members.iter().map(|&n| f(n)).sum::<f64>() / members.len() as f64
        };
        let gain = |n: usize| rows[n].restore - rows[n].telea;
        let low: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&n| cases[n].opacity <= 0.6)
            .collect();
        let low_gain = low.iter().map(|&n| gain(n)).sum::<f64>() / low.len().max(1) as f64;
        let worst = members
            .iter()
            .copied()
            .min_by(|&a, &b| gain(a).total_cmp(&gain(b)))
            .expect("a case");
        let opencv = if rows[members[0]].opencv.is_some() {
            format!("{:.2}", mean(&|n| rows[n].opencv.unwrap_or(0.0)))
        } else {
            "-".to_owned()
        };
        let (regions, back) = members.iter().fold((0, 0), |(r, b), &n| {
            (r + rows[n].regions, b + rows[n].fell_back)
        });
        println!(
            "| {set} | {kind} | {} | {:.2} | {opencv} | {:.2} | {:+.2} | {:+.2} ({}) | {:+.2} ({}) | {back} of {regions} regions |",
            members.len(),
            mean(&|n| rows[n].telea),
            mean(&|n| rows[n].restore),
            mean(&gain),
            low_gain,
            low.len(),
            gain(worst),
            cases[worst].id,
        );
    }
    println!();
    println!(
        "seconds in all: telea {:.2}, restore {:.2} (its telea prior included)",
        seconds[0], seconds[1]
    );
}

fn save(image: &Raster, path: &std::path::Path) {
    let rgb: Vec<u8> = image
        .data
        .chunks(image.channels as usize)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    image::RgbImage::from_raw(image.width, image.height, rgb)
        .expect("image buffer")
        .save(path)
        .expect("save image");
}
