//! The HTTP path end to end on real eval photos: quality above a floor, and every pixel
//! outside the (dilated) mask bit-identical to the input.

use unmark_stages::{detect, quality};

use crate::common::*;

/// Masked PSNR floors per engine, each 1 dB under what the engine measured on the case with
/// the default settings (docs/benchmarks.md), so a regression in either engine fails here.
const CASES: [(&str, f64, f64); 5] = [
    // (case, telea floor, restore floor)
    ("dev_002_chelsea_512_text_tiled", 28.3, 31.9),
    ("dev_005_coffee_512_cjk_text", 33.0, 37.2),
    ("dev_004_coffee_512_logo_center", 16.9, 25.9),
    ("dev_029_chelsea_1024_cjk_text", 22.8, 35.7),
    ("dev_037_coffee_2048_cjk_text", 24.4, 37.7),
];

/// Runs one case through the HTTP API; returns the masked PSNR of the result.
async fn masked_psnr_over_http(server: &Server, id: &str, engine: &str) -> f64 {
    let (wm, mask_path, clean_path) = case(id);
    let input = std::fs::read(&wm).expect("input");
    let mask_bytes = std::fs::read(&mask_path).expect("mask");
    // PNG output even for the JPEG case: lossless, so untouched pixels can be compared.
    let fields = [("format", "png"), ("engine", engine)];
    let response = remove(server, form(input.clone(), Some(mask_bytes), &fields)).await;
    assert_eq!(response.status().as_u16(), 200, "{id}");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png", "{id}");
    assert!(headers.contains_key("x-job-id") && headers.contains_key("x-processing-ms"));
    let out = decode_bytes(&response.bytes().await.expect("body"));
    let original = decode_bytes(&input);
    let truth = read_mask(&mask_path);
    let clean = read_raster(&clean_path);
    assert_eq!(out.size(), original.size(), "{id}");

    let dilated = detect::dilate(&truth, unmark_schemas::params::DEFAULT_MASK_DILATE);
    let mut changed_outside = 0;
    for y in 0..out.height {
        for x in 0..out.width {
            if !dilated.get(x, y) && out.pixel(x, y) != original.pixel(x, y) {
                changed_outside += 1;
            }
        }
    }
    assert_eq!(
        changed_outside, 0,
        "{id} {engine}: pixels outside the mask changed"
    );
    let psnr = quality::psnr(&out, &clean, Some(&truth));
    let before = quality::psnr(&original, &clean, Some(&truth));
    assert!(
        psnr > before,
        "{id} {engine}: {psnr:.2} dB is no better than the input's {before:.2}"
    );
    psnr
}

#[tokio::test]
async fn removes_watermarks_over_http() {
    let server = Server::start(&[]);
    for (id, telea_floor, restore_floor) in CASES {
        let telea = masked_psnr_over_http(&server, id, "telea").await;
        assert!(
            telea >= telea_floor,
            "{id}: telea {telea:.2} dB under its floor {telea_floor}"
        );
        let restore = masked_psnr_over_http(&server, id, "restore").await;
        eprintln!("{id}: telea {telea:.2} dB, restore {restore:.2} dB");
        assert!(
            restore >= restore_floor,
            "{id}: restore {restore:.2} dB under {restore_floor}"
        );
        assert!(
            restore >= telea - 0.5,
            "{id}: restore {restore:.2} dB vs telea {telea:.2}"
        );
    }
}

#[tokio::test]
async fn output_format_follows_input_and_request() {
    let server = Server::start(&[]);
    let (wm, mask, _) = case("dev_004_coffee_512_logo_center");
    let input = std::fs::read(&wm).expect("input");
    let mask = std::fs::read(&mask).expect("mask");
    let jpeg = remove(&server, form(input.clone(), Some(mask.clone()), &[])).await;
    assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
    assert!(jpeg.bytes().await.expect("body").starts_with(&[0xFF, 0xD8]));
    let webp = remove(
        &server,
        form(input, Some(mask), &[("format", "webp"), ("radius", "3")]),
    )
    .await;
    assert_eq!(webp.headers()["content-type"], "image/webp");
    assert_eq!(&webp.bytes().await.expect("body")[8..12], b"WEBP");
}

#[tokio::test]
async fn health_needs_no_key_and_names_the_engine() {
    let server = Server::start(&[]);
    let health: serde_json::Value = reqwest::get(server.url("/api/v1/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model"], "restore");
    assert_eq!(health["engines"], serde_json::json!(["telea", "restore"]));
    assert!(health["version"].is_string());
}

#[tokio::test]
async fn bearer_tokens_work_like_api_keys() {
    let server = Server::start(&[]);
    let png = png_of(32, 32, |x, _| [x as u8 * 8, 0, 0]);
    let mask = png_of(32, 32, |x, y| {
        if (10..20).contains(&x) && y < 5 {
            [255; 3]
        } else {
            [0; 3]
        }
    });
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/remove-watermark"))
        .header("Authorization", format!("Bearer {KEY}"))
        .multipart(form(png, Some(mask), &[]))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
}
