//! Automatic watermark detection (no mask, no profile) on `../shared/eval`: the built-in
//! detector's masks against the true masks, removal with the detected mask against removal with
//! the true one, clean photos left alone, and `return=mask` over HTTP and the CLI.

use unmark_schemas::params::Engine;
use unmark_stages::detect::{auto, dilate};
use unmark_stages::inpaint::MaskOrigin::{Detected, Drawn};
use unmark_stages::quality::{MaskScores, psnr};
use unmark_stages::{Mask, Raster};

use crate::common::*;

/// Every dev case: (id, kind, long side).
fn cases() -> Vec<(String, String, u64)> {
    manifest()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_owned(),
                c["kind"].as_str().expect("kind").to_owned(),
                c["long_side"].as_u64().expect("long side"),
            )
        })
        .collect()
}

pub(crate) fn detect(image: &Raster) -> Mask {
    auto::detect(auto::Network::builtin(), image, 0.5).expect("detect")
}

#[test]
fn detector_finds_the_dev_marks() {
    let mut by_kind: std::collections::BTreeMap<String, Vec<MaskScores>> = Default::default();
    let (mut detected_psnr, mut true_psnr) = (Vec::new(), Vec::new());
    for (id, kind, _) in cases() {
        let (wm, mask, clean) = case(&id);
        let (image, truth, clean) = (read_raster(&wm), read_mask(&mask), read_raster(&clean));
        let found = detect(&image);
        let s = MaskScores::of(&found, &truth);
        println!(
            "{id}: P {:.2} R {:.2} F1 {:.2} IoU {:.2}",
            s.precision, s.recall, s.f1, s.iou
        );
        by_kind.entry(kind).or_default().push(s);
        // The detected mask grown as the service grows it; the exact true mask as it is.
        let engine = Engine::default();
        detected_psnr.push(removal_psnr(
            &image,
            (&found, Detected),
            auto::GROWTH,
            engine,
            &clean,
            &truth,
        ));
        true_psnr.push(removal_psnr(
            &image,
            (&truth, Drawn),
            0,
            engine,
            &clean,
            &truth,
        ));
    }
    let mut all = Vec::new();
    for (kind, scores) in &by_kind {
        let f1: Vec<f64> = scores.iter().map(|s| s.f1).collect();
        println!("{kind}: mean F1 {:.3} over {}", mean(&f1), f1.len());
        // Every kind of mark is found for the most part.
        assert!(
            mean(&f1) >= KIND_F1_FLOOR,
            "{kind}: mean F1 {:.3}",
            mean(&f1)
        );
        // Tiled marks are completed over their lattice from the copies the network found.
        if kind.ends_with("_tiled") {
            assert!(
                mean(&f1) >= TILED_F1_FLOOR,
                "{kind}: mean F1 {:.3}",
                mean(&f1)
            );
        }
        all.extend(f1);
    }
    let (d, t) = (mean(&detected_psnr), mean(&true_psnr));
    println!(
        "all: mean F1 {:.3}; removal PSNR {d:.2} dB detected vs {t:.2} dB true",
        mean(&all)
    );
    assert!(mean(&all) >= F1_FLOOR, "mean F1 {:.3}", mean(&all));
    assert!(d >= t * PSNR_SHARE_FLOOR, "{d:.2} dB vs {t:.2} dB");
}

/// Floors a little under what the built-in weights measure on the dev set (see docs/benchmarks.md).
/// Measured with the committed weights (the third round of training), the tiled marks'
/// completion and the network at three working sizes (512, 768 and 1024 px): mean F1 0.574
/// (0.537 at 512 px alone; the second round 0.516, the first 0.468, the three-level network
/// 0.347), the weakest kinds text_center 0.483 and text_corner 0.524, the tiled kinds 0.546
/// (text) and 0.763 (logo); removal 23.87 dB with the detected mask (grown by 1 px) against
/// 32.97 dB with the true one (72.4%; 22.04 dB, 66.8%, at 512 px alone, grown by 2 px); 33.03
/// dB with the true one since loosely drawn masks are restored as one mark (72.3%). The
/// removal follows the recall; the floor follows the measurement, not the goal (95%).
const F1_FLOOR: f64 = 0.54;
const KIND_F1_FLOOR: f64 = 0.45;
const TILED_F1_FLOOR: f64 = 0.50;
const PSNR_SHARE_FLOOR: f64 = 0.70;

#[test]
fn clean_photos_are_left_alone() {
    let dir = eval_dir().join("clean/512");
    let mut flagged = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("clean photos") {
        let path = entry.expect("entry").path();
        let image = read_raster(&path);
        let found = detect(&image);
        let share = found.count() as f64 / (image.width * image.height) as f64;
        println!("{}: {:.4} flagged", path.display(), share);
        flagged.push(share);
    }
    assert!(flagged.len() >= 10);
    assert!(mean(&flagged) <= CLEAN_FLAGGED_CEILING, "{flagged:?}");
}

/// Measured: 0.85% of the pixels of the 14 clean photos, on average (0.78% at 512 px alone,
/// 1.1% with the first round of training, 2.7% with the three-level network before).
const CLEAN_FLAGGED_CEILING: f64 = 0.02;

#[tokio::test]
async fn http_detects_returns_the_mask_and_removes_the_mark() {
    let server = Server::start(&[]);
    let id = "dev_002_chelsea_512_text_tiled";
    let (wm, mask, clean) = case(id);
    let input = std::fs::read(&wm).expect("image");
    let (image, truth, clean) = (decode_bytes(&input), read_mask(&mask), read_raster(&clean));

    // The detected mask, for review: the library's, grown by the detector's own growth only.
    let review = remove(
        &server,
        form(
            input.clone(),
            None,
            &[("return", "mask"), ("mask_dilate", "0")],
        ),
    )
    .await;
    assert_eq!(review.status().as_u16(), 200);
    assert_eq!(review.headers()["content-type"], "image/png");
    let returned =
        unmark_stages::decode::binarize(&decode_bytes(&review.bytes().await.expect("body")));
    let found = detect(&image);
    assert_eq!(returned, dilate(&found, auto::GROWTH));
    assert!(MaskScores::of(&found, &truth).f1 >= 0.75);

    // The removal itself, with no mask sent.
    let done = remove(&server, form(input.clone(), None, &[])).await;
    assert_eq!(done.status().as_u16(), 200);
    let out = decode_bytes(&done.bytes().await.expect("body"));
    let (before, after) = (
        psnr(&image, &clean, Some(&truth)),
        psnr(&out, &clean, Some(&truth)),
    );
    println!("{id}: {before:.2} dB -> {after:.2} dB with no mask sent");
    assert!(after >= before + 8.0, "{before:.2} dB -> {after:.2} dB");

    // Bad values are named.
    let bad = remove(&server, form(input.clone(), None, &[("return", "alpha")])).await;
    let body = problem(bad, 400).await;
    assert_eq!(
        body["detail"],
        "return must be image or mask, got \"alpha\""
    );
    let bad = remove(&server, form(input, None, &[("threshold", "1.5")])).await;
    let body = problem(bad, 400).await;
    assert_eq!(
        body["detail"],
        "threshold must be from 0.01 to 0.99, got 1.5"
    );
}

#[test]
fn cli_writes_the_detected_mask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wm, mask, _) = case("dev_025_brick_512_text_center");
    let out = dir.path().join("mask.png");
    succeed(
        unmark()
            .arg("remove-watermark")
            .arg(&wm)
            .arg("-o")
            .arg(&out)
            .args(["--return", "mask", "--mask-dilate", "0"]),
    );
    let found = detect(&read_raster(&wm));
    assert_eq!(read_mask(&out), dilate(&found, auto::GROWTH));
    // Measured 0.81 (0.74 with the first round of training).
    assert!(MaskScores::of(&found, &read_mask(&mask)).f1 >= 0.70);
}

/// The detector on the wgpu backend (Mesa's lavapipe in CI, a software rasteriser, so the
/// image is a crop) against the CPU path, on the built-in weights: the logits and the mask.
#[cfg(feature = "wgpu")]
#[test]
fn the_detector_on_wgpu_agrees_with_the_cpu() {
    let gpu = auto::Network::builtin_on(unmark_models::Backend::Wgpu)
        .expect("a Vulkan device (Debian: mesa-vulkan-drivers gives lavapipe)");
    let (wm, mask, _) = case("dev_023_coins_512_text_corner");
    let (image, truth) = (read_raster(&wm), read_mask(&mask));
    // A 192x128 crop with the mark's first pixel (in reading order) inside it.
    let first = truth.data.iter().position(|&v| v != 0).expect("a mark");
    let (w, h) = (192u32, 128u32);
    let x0 = (first as u32 % image.width)
        .saturating_sub(40)
        .min(image.width - w);
    let y0 = (first as u32 / image.width)
        .saturating_sub(20)
        .min(image.height - h);
    let c = image.channels as usize;
    let mut data = Vec::with_capacity((w * h) as usize * c);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            data.extend_from_slice(image.pixel(x, y));
        }
    }
    let crop = Raster::from_data(w, h, image.channels, data).expect("crop");
    let cpu = auto::Network::builtin();
    let (on_cpu, on_gpu) = (
        cpu.logits(&crop).expect("cpu"),
        gpu.logits(&crop).expect("wgpu"),
    );
    let max_diff = on_cpu
        .iter()
        .zip(&on_gpu)
        .map(|(a, b)| (a - b).abs() / (1.0 + a.abs()))
        .fold(0.0f32, f32::max);
    println!("detector, wgpu vs cpu at {w}x{h}: max relative difference {max_diff:.2e}");
    assert!(max_diff <= 1e-3, "max relative difference {max_diff}");
    let (found_cpu, found_gpu) = (
        auto::detect(cpu, &crop, 0.5).expect("cpu mask"),
        auto::detect(&gpu, &crop, 0.5).expect("wgpu mask"),
    );
    assert!(found_cpu.count() > 100, "the crop holds a detected mark");
    let scores = MaskScores::of(&found_gpu, &found_cpu);
    assert!(scores.iou >= 0.99, "masks differ: IoU {:.4}", scores.iou);
}
