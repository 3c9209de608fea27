//! Watermark removal's quality on `../shared/eval` (or `--eval DIR`), every measure in one run,
//! and each goal it is held to, met or not:
//!
//! - **removal with the exact masks** (grown by `--dilate`, as a brush draws wider): masked
//!   PSNR and SSIM of `restore`, `telea` and OpenCV's Telea (`benches/opencv_telea.py`, the
//!   same masks), per size and kind;
//! - **detection with no mask**: precision, recall, F1 and IoU of the built-in detector's mask
//!   against the true mask (`alpha > 0`), and removal with the detected mask (grown as the
//!   service grows it) against removal with the exact one, per size and kind;
//! - **watermark profiles** on `group/` (one mark on 8 photos): the alpha learned from all 8
//!   against the truth; leave one out (learn from 7, find and remove in the 8th) against
//!   single-image removal with the detector's mask and with the exact mask;
//! - **the goals**: each measured value beside its bound.
//!
//! Quality only: speed lives in the `inpaint`, `detection` and `profiles` benches.
//!
//! ```text
//! cargo bench --bench quality -- [--eval DIR] [--dilate 0] [--threads 2] [--only SUBSTRING]
//! ```

mod eval_files;
mod opencv;

#[path = "../tests/group.rs"]
#[allow(dead_code)]
mod group;

use std::collections::BTreeMap;
use std::path::PathBuf;

use eval_files::read;
use unmark_schemas::params::{Engine, WatermarkOptions};
use unmark_stages::decode::binarize;
use unmark_stages::detect::{self, auto};
use unmark_stages::inpaint::MaskOrigin;
use unmark_stages::quality::{MaskScores, psnr, ssim};
use unmark_stages::{Mask, Raster, profile, remove_watermark_pixels};

/// The opacity at or below which `restore` must lead `telea` by [`LOW_OPACITY_GAIN`] dB.
const LOW_OPACITY: f64 = 0.6;
const LOW_OPACITY_GAIN: f64 = 8.0;
/// The most any kind of mark (per size, and over all sizes) may fall below `telea`, in dB.
const KIND_LOSS: f64 = 0.5;
const F1_GOAL: f64 = 0.9;
/// Removal with the detected mask, as a share of removal with the exact mask.
const DETECTED_SHARE: f64 = 0.95;
const ALPHA_ERROR: f64 = 0.05;
/// "Far above single-image removal": this many dB above removal with the detector's mask,
/// which is what a single image reaches when no mask is sent.
const PROFILE_LEAD: f64 = 10.0;

struct Args {
    eval: PathBuf,
    dilate: u32,
    threads: usize,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        eval: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/eval"),
        dilate: 0,
        threads: 2,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--eval" => args.eval = PathBuf::from(value()),
            "--dilate" => args.dilate = value().parse().expect("--dilate: a number"),
            "--threads" => args.threads = value().parse().expect("--threads: a number"),
            "--only" => args.only = Some(value()),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Means of a row of measures per size and kind, with every size's and every kind's rows and
/// the whole set's (size 0 stands for all sizes).
#[derive(Default)]
struct Groups(BTreeMap<(u64, String), (f64, Vec<f64>)>);

impl Groups {
    fn add(&mut self, size: u64, kind: &str, values: &[f64]) {
        for (s, k) in [(size, kind), (size, "all"), (0, kind), (0, "all")] {
            let (n, sums) = self
                .0
                .entry((s, k.to_owned()))
                .or_insert_with(|| (0.0, vec![0.0; values.len()]));
            *n += 1.0;
            for (sum, v) in sums.iter_mut().zip(values) {
                *sum += v;
            }
        }
    }

    /// The means of the group's measures.
    fn mean(&self, size: u64, kind: &str) -> Vec<f64> {
        let (n, sums) = &self.0[&(size, kind.to_owned())];
        sums.iter().map(|s| s / n).collect()
    }

    /// Every size's and every kind's groups of one kind of mark (not the "all" rows).
    fn of_kinds(&self) -> impl Iterator<Item = (u64, &str)> {
        self.0
            .keys()
            .filter(|(_, kind)| kind != "all")
            .map(|(size, kind)| (*size, kind.as_str()))
    }

    /// Prints a Markdown table: size, kind, n, then each column's mean with its precision,
    /// then each `derived` column, computed from the means.
    fn print(&self, columns: &[(&str, usize)], derived: &[Derived]) {
        let header: Vec<&str> = columns
            .iter()
            .map(|(name, _)| *name)
            .chain(derived.iter().map(|(name, ..)| *name))
            .collect();
        println!("| size | kind | n | {} |", header.join(" | "));
        println!("|{}", " --- |".repeat(header.len() + 3));
        for ((size, kind), (n, _)) in &self.0 {
            let means = self.mean(*size, kind);
            let size = if *size == 0 {
                "all".to_owned()
            } else {
                size.to_string()
            };
            let cells: Vec<String> = means
                .iter()
                .zip(columns)
                .map(|(v, (_, digits))| format!("{v:.digits$}"))
                .chain(
                    derived
                        .iter()
                        .map(|(_, f, digits)| format!("{:.digits$}", f(&means))),
                )
                .collect();
            println!("| {size} | {kind} | {n} | {} |", cells.join(" | "));
        }
    }
}

/// A column computed from a group's means: its name, how, and its precision.
type Derived = (&'static str, fn(&[f64]) -> f64, usize);

/// One goal of the issue: what was measured, its bound, and whether it is met.
struct Goal {
    what: &'static str,
    measured: String,
    bound: String,
    met: bool,
}

/// A case of the eval set, read.
struct Case {
    id: String,
    size: u64,
    kind: String,
    opacity: f64,
    watermarked: PathBuf,
    image: Raster,
    truth: Mask,
    clean: Raster,
}

fn cases(args: &Args) -> Vec<Case> {
    eval_files::manifest_cases(&args.eval)
        .iter()
        .filter(|case| {
            let id = case["id"].as_str().unwrap_or_default();
            args.only.as_ref().is_none_or(|s| id.contains(s.as_str()))
        })
        .map(|case| {
            let path = |k: &str| args.eval.join(case["paths"][k].as_str().expect("path"));
            Case {
                id: case["id"].as_str().expect("id").to_owned(),
                size: case["long_side"].as_u64().expect("long side"),
                kind: case["kind"].as_str().expect("kind").to_owned(),
                opacity: case["opacity"].as_f64().expect("opacity"),
                watermarked: path("watermarked"),
                image: read(&path("watermarked")),
                truth: binarize(&read(&path("mask"))),
                clean: read(&path("clean")),
            }
        })
        .collect()
}

/// Removes the mark with `engine` through `mask` grown by `grow` px.
fn remove(image: &Raster, mask: &Mask, origin: MaskOrigin, engine: Engine, grow: u32) -> Raster {
    let mut options = WatermarkOptions::default();
    options.inpaint.engine = engine;
    options.detect.mask_dilate = grow;
    remove_watermark_pixels(image, mask, origin, &options).expect("remove")
}

/// Masked PSNR and SSIM of `out` against the case's clean photo over its true mask.
fn scores(out: &Raster, case: &Case) -> (f64, f64) {
    let m = Some(&case.truth);
    (psnr(out, &case.clean, m), ssim(out, &case.clean, m))
}

/// Removal with the exact masks: `restore`, `telea` and OpenCV. Returns the goals on it and
/// each case's `restore` PSNR with the exact mask (when not grown), for the detection part.
fn removal(cases: &[Case], args: &Args) -> (Vec<Goal>, Vec<f64>) {
    println!(
        "## Removal with the exact masks (grown by {} px)\n",
        args.dilate
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let grown: Vec<Mask> = cases
        .iter()
        .map(|c| detect::dilate(&c.truth, args.dilate))
        .collect();
    let jobs: Vec<opencv::Case> = cases
        .iter()
        .zip(&grown)
        .map(|(c, mask)| opencv::Case {
            id: &c.id,
            image: c.watermarked.clone(),
            mask,
        })
        .collect();
    let radius = WatermarkOptions::default().inpaint.radius;
    let reference = opencv::telea(&jobs, radius, 1, tmp.path());
    let mut groups = Groups::default();
    let (mut exact, mut low, mut behind) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "| case | restore dB | telea dB | OpenCV dB | restore SSIM | telea SSIM | OpenCV SSIM |"
    );
    println!("|{}", " --- |".repeat(7));
    for (case, (cv_path, _)) in cases.iter().zip(reference) {
        let run = |engine| {
            remove(
                &case.image,
                &case.truth,
                MaskOrigin::Drawn,
                engine,
                args.dilate,
            )
        };
        let restored = run(Engine::Restore);
        let (r, t, o) = (
            scores(&restored, case),
            scores(&run(Engine::Telea), case),
            scores(&read(&cv_path), case),
        );
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.4} | {:.4} | {:.4} |",
            case.id, r.0, t.0, o.0, r.1, t.1, o.1
        );
        groups.add(case.size, &case.kind, &[r.0, t.0, o.0, r.1, t.1, o.1]);
        if case.opacity <= LOW_OPACITY {
            low.push(r.0 - t.0);
        }
        if r.0 < t.0 - KIND_LOSS {
            behind.push(format!("{} {:+.2} dB", case.id, r.0 - t.0));
        }
        exact.push(r.0);
    }
    println!();
    groups.print(
        &[
            ("restore dB", 2),
            ("telea dB", 2),
            ("OpenCV dB", 2),
            ("restore SSIM", 4),
            ("telea SSIM", 4),
            ("OpenCV SSIM", 4),
        ],
        &[("restore - telea dB", |m| m[0] - m[1], 2)],
    );
    println!();
    let gain = low.iter().sum::<f64>() / low.len().max(1) as f64;
    let (worst_group, worst) = groups
        .of_kinds()
        .map(|(size, kind)| {
            let m = groups.mean(size, kind);
            let size = if size == 0 {
                "all sizes".to_owned()
            } else {
                format!("{size} px")
            };
            (format!("{kind}, {size}"), m[0] - m[1])
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    let goals = vec![
        Goal {
            what: "restore over telea, opacity <= 0.6",
            measured: format!("{gain:+.2} dB ({} cases)", low.len()),
            bound: format!(">= +{LOW_OPACITY_GAIN} dB"),
            met: gain >= LOW_OPACITY_GAIN,
        },
        Goal {
            what: "restore over telea, the worst kind (per size and over all sizes)",
            measured: format!(
                "{worst:+.2} dB ({worst_group}); cases below by more: {}",
                if behind.is_empty() {
                    "none".to_owned()
                } else {
                    behind.join(", ")
                }
            ),
            bound: format!(">= -{KIND_LOSS} dB"),
            met: worst >= -KIND_LOSS,
        },
    ];
    (goals, if args.dilate == 0 { exact } else { Vec::new() })
}

/// Detection with no mask, and removal with what it found against the exact mask.
fn detection(cases: &[Case], exact: &[f64]) -> Vec<Goal> {
    println!("## Detection with no mask\n");
    let net = auto::Network::builtin();
    let mut groups = Groups::default();
    println!("| case | P | R | F1 | IoU | detected dB | exact dB | detected SSIM |");
    println!("|{}", " --- |".repeat(8));
    for (k, case) in cases.iter().enumerate() {
        let found = auto::detect(net, &case.image, 0.5).expect("detect");
        let s = MaskScores::of(&found, &case.truth);
        let detected = remove(
            &case.image,
            &found,
            MaskOrigin::Detected,
            Engine::Restore,
            auto::GROWTH,
        );
        let (db, ssim) = scores(&detected, case);
        let true_db = exact.get(k).copied().unwrap_or_else(|| {
            let out = remove(
                &case.image,
                &case.truth,
                MaskOrigin::Drawn,
                Engine::Restore,
                0,
            );
            scores(&out, case).0
        });
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {db:.2} | {true_db:.2} | {ssim:.4} |",
            case.id, s.precision, s.recall, s.f1, s.iou
        );
        groups.add(
            case.size,
            &case.kind,
            &[s.precision, s.recall, s.f1, s.iou, db, true_db],
        );
    }
    println!();
    groups.print(
        &[
            ("P", 3),
            ("R", 3),
            ("F1", 3),
            ("IoU", 3),
            ("detected dB", 2),
            ("exact dB", 2),
        ],
        &[("detected / exact %", |m| 100.0 * m[4] / m[5], 1)],
    );
    println!();
    let all = groups.mean(0, "all");
    let share = all[4] / all[5];
    vec![
        Goal {
            what: "detection F1 (mean over cases)",
            measured: format!("{:.3}", all[2]),
            bound: format!(">= {F1_GOAL}"),
            met: all[2] >= F1_GOAL,
        },
        Goal {
            what: "removal with the detected mask / with the exact mask",
            measured: format!("{:.1}% ({:.2} / {:.2} dB)", 100.0 * share, all[4], all[5]),
            bound: format!(">= {:.0}%", 100.0 * DETECTED_SHARE),
            met: share >= DETECTED_SHARE,
        },
    ]
}

/// Watermark profiles on the group of photos that share one mark.
fn profiles(args: &Args) -> Vec<Goal> {
    println!("## Watermark profiles (group/)\n");
    let g = group::load(&args.eval);
    let all: Vec<Raster> = g.items.iter().map(|it| it.watermarked.clone()).collect();
    let learned = profile::learn(&all).expect("learn");
    let alpha_error = group::alpha_error(&learned, &g);
    println!(
        "Learned from all {}: alpha mean absolute error {alpha_error:.4}.\n",
        all.len()
    );
    println!(
        "| photo (left out) | profile dB | restore, detected mask dB | restore, exact mask dB | telea, exact mask dB | input dB |"
    );
    println!("|{}", " --- |".repeat(6));
    let net = auto::Network::builtin();
    let mut sums = [0f64; 5];
    for (k, it) in g.items.iter().enumerate() {
        let p = profile::learn(&group::leave_out(&all, k)).expect("learn");
        let mut out = it.watermarked.clone();
        let at = profile::locate(&p, &out).expect("the mark is found");
        profile::unblend(&mut out, &p, at);
        let found = auto::detect(net, &it.watermarked, 0.5).expect("detect");
        let rows = [
            out,
            remove(
                &it.watermarked,
                &found,
                MaskOrigin::Detected,
                Engine::Restore,
                auto::GROWTH,
            ),
            remove(
                &it.watermarked,
                &g.mask,
                MaskOrigin::Drawn,
                Engine::Restore,
                0,
            ),
            remove(
                &it.watermarked,
                &g.mask,
                MaskOrigin::Drawn,
                Engine::Telea,
                0,
            ),
            it.watermarked.clone(),
        ]
        .map(|r| psnr(&r, &it.clean, Some(&g.mask)));
        for (s, v) in sums.iter_mut().zip(rows) {
            *s += v;
        }
        let cells: Vec<String> = rows.iter().map(|v| format!("{v:.2}")).collect();
        println!("| {} | {} |", it.name, cells.join(" | "));
    }
    let mean = sums.map(|s| s / g.items.len() as f64);
    let cells: Vec<String> = mean.iter().map(|v| format!("{v:.2}")).collect();
    println!("| mean | {} |\n", cells.join(" | "));
    vec![
        Goal {
            what: "profile: alpha learned, mean absolute error",
            measured: format!("{alpha_error:.4}"),
            bound: format!("<= {ALPHA_ERROR}"),
            met: alpha_error <= ALPHA_ERROR,
        },
        Goal {
            what: "profile: removal over single-image removal (no mask sent)",
            measured: format!(
                "{:+.2} dB ({:.2} / {:.2}; exact mask {:.2})",
                mean[0] - mean[1],
                mean[0],
                mean[1],
                mean[2]
            ),
            bound: format!(">= +{PROFILE_LEAD} dB"),
            met: mean[0] - mean[1] >= PROFILE_LEAD,
        },
    ]
}

fn main() {
    let args = parse_args();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .expect("pool");
    let goals = pool.install(|| {
        let cases = cases(&args);
        let (mut goals, exact) = removal(&cases, &args);
        goals.extend(detection(&cases, &exact));
        goals.extend(profiles(&args));
        goals
    });
    println!("## Goals\n");
    println!("| goal | measured | bound | met |");
    println!("| --- | --- | --- | --- |");
    for g in &goals {
        let met = if g.met { "yes" } else { "**no**" };
        println!("| {} | {} | {} | {met} |", g.what, g.measured, g.bound);
    }
}
