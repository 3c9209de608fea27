//! Watermark profiles on `../shared/eval/group` (one mark on 8 photos), in one run:
//!
//! - the alpha learned from all 8 against the truth (mean absolute error over the true mask),
//!   and the time learning takes;
//! - leave one out: learn from 7, find the mark in the 8th (position and scale search) and
//!   unblend it; masked PSNR and SSIM against the clean photo, beside single-image removal
//!   (`restore` and `telea` with the true mask), with the time each takes.
//!
//! ```text
//! cargo bench --bench profiles -- [--eval DIR]
//! ```

#[path = "../tests/group.rs"]
#[allow(dead_code)]
mod group;

use std::path::PathBuf;
use std::time::Instant;

use unmark_schemas::params::{Engine, WatermarkOptions};
use unmark_stages::inpaint::MaskOrigin;
use unmark_stages::quality::{psnr, ssim};
use unmark_stages::{Raster, profile, remove_watermark_pixels};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let eval = args
        .iter()
        .position(|a| a == "--eval")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/eval"));
    let g = group::load(&eval);
    let all: Vec<Raster> = g.items.iter().map(|it| it.watermarked.clone()).collect();
    let start = Instant::now();
    let learned = profile::learn(&all).expect("learn");
    let learn_ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "learned from {} images of {}x{} in {learn_ms:.0} ms: a {}x{} mark at {:?}, alpha MAE {:.4}",
        all.len(),
        all[0].width,
        all[0].height,
        learned.width,
        learned.height,
        learned.origin,
        group::alpha_error(&learned, &g)
    );
    println!();
    println!(
        "{:<18} {:>16} {:>16} {:>16} {:>16} {:>10} {:>10}",
        "photo (left out)",
        "profile dB/SSIM",
        "restore dB/SSIM",
        "telea dB/SSIM",
        "input dB/SSIM",
        "profile ms",
        "restore ms"
    );
    let mut sums = [0f64; 8];
    for (k, it) in g.items.iter().enumerate() {
        let p = profile::learn(&group::leave_out(&all, k)).expect("learn");
        let start = Instant::now();
        let mut out = it.watermarked.clone();
        let at = profile::locate(&p, &out).expect("found");
        profile::unblend(&mut out, &p, at);
        let profile_ms = start.elapsed().as_secs_f64() * 1e3;
        let run = |engine| {
            let mut options = WatermarkOptions::default();
            options.inpaint.engine = engine;
            let start = Instant::now();
            let out =
                remove_watermark_pixels(&it.watermarked, &g.mask, MaskOrigin::Drawn, &options)
                    .expect("remove");
            (out, start.elapsed().as_secs_f64() * 1e3)
        };
        let (restore, restore_ms) = run(Engine::Restore);
        let (telea, _) = run(Engine::Telea);
        let m = Some(&g.mask);
        let rows = [&out, &restore, &telea, &it.watermarked]
            .map(|r| (psnr(r, &it.clean, m), ssim(r, &it.clean, m)));
        for (i, (db, s)) in rows.iter().enumerate() {
            sums[2 * i] += db;
            sums[2 * i + 1] += s;
        }
        let cell = |(db, s): (f64, f64)| format!("{db:.2} / {s:.3}");
        println!(
            "{:<18} {:>16} {:>16} {:>16} {:>16} {profile_ms:>10.1} {restore_ms:>10.1}",
            it.name,
            cell(rows[0]),
            cell(rows[1]),
            cell(rows[2]),
            cell(rows[3])
        );
    }
    let n = g.items.len() as f64;
    let mean = |i: usize| format!("{:.2} / {:.3}", sums[2 * i] / n, sums[2 * i + 1] / n);
    println!(
        "{:<18} {:>16} {:>16} {:>16} {:>16}",
        "mean",
        mean(0),
        mean(1),
        mean(2),
        mean(3)
    );
}
