//! The `restore` engine against `telea` on every dev case of `../shared/eval`, with the exact
//! masks: issue 6's goals for unblending, asserted on the whole dev set.

use unmark_schemas::params::Engine;
use unmark_stages::inpaint::MaskOrigin::Drawn;

use crate::common::*;

/// The least mean gain over `telea` on marks of opacity 0.6 or less. The issue asks for 8 dB;
/// this commit measured 10.08 (docs/benchmarks.md, the bench with `--engine restore`), and the floor is
/// 1 dB under it so that a regression fails here.
const LOW_OPACITY_GAIN_FLOOR: f64 = 9.0;
/// No kind of mark may be worse than `telea` by more than this on average (the bound).
const KIND_LOSS_CEILING: f64 = 0.5;

#[test]
fn restore_unblends_the_dev_marks() {
    let mut low = Vec::new();
    let mut by_kind: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for c in manifest()["cases"].as_array().expect("cases") {
        let id = c["id"].as_str().expect("id");
        let kind = c["kind"].as_str().expect("kind");
        let opacity = c["opacity"].as_f64().expect("opacity");
        let (wm, mask, clean) = case(id);
        let (image, truth, clean) = (read_raster(&wm), read_mask(&mask), read_raster(&clean));
        let psnr = |engine| removal_psnr(&image, (&truth, Drawn), 0, engine, &clean, &truth);
        let (telea, restore) = (psnr(Engine::Telea), psnr(Engine::Restore));
        println!("{id}: opacity {opacity:.2}, telea {telea:.2} dB, restore {restore:.2} dB");
        if opacity <= 0.6 {
            low.push(restore - telea);
        }
        by_kind
            .entry(kind.to_owned())
            .or_default()
            .push(restore - telea);
    }
    assert!(!low.is_empty(), "no dev case of opacity 0.6 or less");
    assert!(
        mean(&low) >= LOW_OPACITY_GAIN_FLOOR,
        "opacity <= 0.6: restore leads telea by {:.2} dB on average",
        mean(&low)
    );
    for (kind, gains) in &by_kind {
        assert!(
            mean(gains) >= -KIND_LOSS_CEILING,
            "{kind}: restore {:.2} dB against telea",
            mean(gains)
        );
    }
}

/// The least mean gain over `telea` when the exact masks are grown by 2 and by 4 px, as a
/// brush draws them: measured 5.93 and 5.37 dB since the seam test confirms a loose mask's
/// covered pixels (5.24 and 4.53 without it; pixel by pixel 4.63 and 3.67; with the core
/// always at the mask's second ring, 2.60 and -0.79), so 5 dB.
const LOOSE_GAIN_FLOOR: f64 = 5.0;

#[test]
fn restore_unblends_through_a_loose_mask() {
    let cases: Vec<_> = manifest()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let (wm, mask, clean) = case(c["id"].as_str().expect("id"));
            (read_raster(&wm), read_mask(&mask), read_raster(&clean))
        })
        .collect();
    for grow in [2, 4] {
        let gains: Vec<f64> = cases
            .iter()
            .map(|(image, truth, clean)| {
                let psnr = |engine| removal_psnr(image, (truth, Drawn), grow, engine, clean, truth);
                psnr(Engine::Restore) - psnr(Engine::Telea)
            })
            .collect();
        println!(
            "masks grown by {grow} px: restore leads telea by {:.2} dB",
            mean(&gains)
        );
        assert!(
            mean(&gains) >= LOOSE_GAIN_FLOOR,
            "masks grown by {grow} px: restore leads telea by only {:.2} dB",
            mean(&gains)
        );
    }
}
