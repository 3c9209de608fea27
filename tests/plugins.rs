//! WASM plugins: the examples build from source and match native Rust versions of the same
//! filters; hostile modules end in the right error and leave the sandbox serving; plugin
//! steps run in HTTP jobs (embedded) and on JetStream workers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use unmark_plugins::{Input, Kind, Limits, PluginError, Sandbox};
use unmark_stages::Raster;

use serde_json::json;

use crate::common::*;
use crate::reference_filters::*;

/// The example plugins, built once per test run by the script users run.
fn examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/examples/build.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .status()
            .expect("run plugins/examples/build.sh");
        assert!(status.success(), "building the example plugins failed");
        dir
    })
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(examples().join(format!("{name}.wasm"))).expect("example module")
}

/// A module from `tests/hostile/<name>.c`, compiled like the C examples.
fn hostile(name: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir()
        .expect("tempdir")
        .keep()
        .join(format!("{name}.wasm"));
    let status = Command::new("clang")
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-nostartfiles",
            "-Wl,--no-entry",
            "-Wl,--strip-all",
        ])
        .arg("-I")
        .arg(root.join("plugins/include"))
        .arg("-o")
        .arg(&out)
        .arg(root.join(format!("tests/hostile/{name}.c")))
        .status()
        .expect("run clang");
    assert!(status.success(), "compiling tests/hostile/{name}.c failed");
    std::fs::read(out).expect("module")
}

/// A dev photo as RGBA, with a few transparent pixels so alpha handling shows.
fn photo() -> (Vec<u8>, u32, u32) {
    let (wm, _, _) = case("dev_002_chelsea_512_text_tiled");
    let r = read_raster(&wm);
    let mut rgba = rgba_of(&r);
    for px in rgba.chunks_exact_mut(4).step_by(97) {
        px[3] = 128;
    }
    (rgba, r.width, r.height)
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn run(
    sandbox: &Sandbox,
    module: &[u8],
    rgba: &[u8],
    w: u32,
    h: u32,
    mask: Option<&[u8]>,
    params: serde_json::Value,
) -> Result<Vec<u8>, PluginError> {
    let plugin = sandbox.load(&unmark_plugins::sha256_hex(module), module)?;
    sandbox.run(
        &plugin,
        &Input {
            rgba,
            width: w,
            height: h,
            mask,
            params: &params,
        },
    )
}

#[test]
fn example_plugins_match_native_filters() {
    let sandbox = Sandbox::new(Limits::default(), None).expect("sandbox");
    let (rgba, w, h) = photo();
    // One call of an example on the photo (or on `image`), without a mask.
    let apply_to = |image: &[u8], name: &str, params: serde_json::Value| {
        run(&sandbox, &example(name), image, w, h, None, params)
    };
    let apply = |name: &str, params| apply_to(&rgba, name, params);

    let kinds: Vec<(&str, Kind)> = ["grayscale", "blur", "autolevels", "invert", "threshold"]
        .into_iter()
        .map(|name| (name, sandbox.inspect(&example(name)).expect(name).kind))
        .collect();
    assert!(
        kinds
            .iter()
            .all(|(n, k)| (*k == Kind::Mask) == (*n == "threshold")),
        "{kinds:?}"
    );

    let gray = apply("grayscale", json!({})).expect("grayscale");
    assert_eq!(gray, native_grayscale(&rgba));
    assert!(gray.chunks_exact(4).all(|p| p[0] == p[1] && p[1] == p[2]));

    for sigma in [0.8, 2.0, 5.0] {
        let blurred = apply("blur", json!({ "sigma": sigma })).expect("blur");
        let native = native_blur(&rgba, w as usize, h as usize, sigma);
        // The same arithmetic; only expf (wasi-libc) and f32::exp (Rust) may differ by an ulp.
        let off = max_diff(&blurred, &native);
        assert!(off <= 1, "sigma {sigma}: off by {off}");
        assert!(
            max_diff(&blurred, &rgba) > 40,
            "sigma {sigma} must visibly blur"
        );
    }

    // only_mask: pixels outside the mask stay as they were.
    let mask: Vec<u8> = (0..(w * h))
        .map(|i| if (i % w) < w / 2 { 255 } else { 0 })
        .collect();
    let params = json!({ "sigma": 3, "only_mask": true });
    let half = run(&sandbox, &example("blur"), &rgba, w, h, Some(&mask), params).expect("blur");
    for (i, (a, b)) in half.chunks_exact(4).zip(rgba.chunks_exact(4)).enumerate() {
        if mask[i] == 0 {
            assert_eq!(a, b, "pixel {i} is outside the mask");
        }
    }

    for clip in [0.0, 0.5, 5.0] {
        let levelled = apply("autolevels", json!({ "clip": clip })).expect("autolevels");
        assert_eq!(levelled, native_autolevels(&rgba, clip), "clip {clip}");
        let reds: Vec<u8> = levelled.chunks_exact(4).map(|p| p[0]).collect();
        if clip == 5.0 {
            assert_eq!(
                (reds.iter().min(), reds.iter().max()),
                (Some(&0), Some(&255))
            );
        }
    }

    for amount in [1.0, 0.25] {
        let inverted = apply("invert", json!({ "amount": amount })).expect("invert");
        assert_eq!(inverted, native_invert(&rgba, amount), "amount {amount}");
    }

    let found = apply("threshold", json!({ "tolerance": 30 })).expect("threshold");
    assert_eq!(found.len(), (w * h) as usize);
    assert_eq!(found, native_threshold(&rgba, [255, 255, 255], 30));
    // A white block painted in is found, every pixel of it.
    let mut marked = rgba.clone();
    let block =
        |i: usize| (10..30).contains(&(i % w as usize)) && (10..30).contains(&(i / w as usize));
    for (i, p) in marked.chunks_exact_mut(4).enumerate() {
        if block(i) {
            p.copy_from_slice(&[250, 252, 255, 255]);
        }
    }
    let found = apply_to(&marked, "threshold", json!({ "tolerance": 10 })).expect("threshold");
    assert!(
        (0..found.len())
            .filter(|&i| block(i))
            .all(|i| found[i] == 255)
    );

    // A plugin's own refusal carries its log; a parameter of the wrong type is named.
    let refused = apply("blur", json!({ "sigma": -1 })).expect_err("negative sigma");
    assert_eq!(
        refused.to_string(),
        "reported error code 1: sigma must be above 0 and at most 64"
    );
    let typed = apply("blur", json!({ "sigma": "wide" })).expect_err("string sigma");
    assert_eq!(
        typed.to_string(),
        "parameter sigma must be a number, got \"wide\""
    );
}

#[test]
fn hostile_modules_fail_cleanly_and_the_sandbox_keeps_serving() {
    let limits = Limits {
        memory_bytes: 64 << 20,
        cpu_base: Duration::from_millis(400),
        cpu_per_megapixel: Duration::ZERO,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits, None).expect("sandbox");
    let (rgba, w, h) = photo();
    let params = serde_json::json!({});
    let gray = example("grayscale");
    let expected = native_grayscale(&rgba);

    // Refused at upload.
    let wasi = sandbox
        .inspect(&hostile("wasi_fs"))
        .expect_err("WASI import");
    assert!(
        matches!(&wasi, PluginError::ForbiddenImport(what) if what.starts_with("wasi_snapshot_preview1.")),
        "{wasi}"
    );
    let big = sandbox.inspect(&hostile("oversize")).expect_err("oversize");
    assert!(
        matches!(big, PluginError::TooLarge { limit, .. } if limit == 8 << 20),
        "{big}"
    );
    let junk = sandbox
        .inspect(b"\0asm\x01\0\0\0garbage")
        .expect_err("junk");
    assert!(matches!(junk, PluginError::Invalid(_)), "{junk}");
    let not_wasm = sandbox
        .inspect(b"#!/bin/sh\nrm -rf /\n")
        .expect_err("not wasm");
    assert!(matches!(not_wasm, PluginError::Invalid(_)), "{not_wasm}");

    // Fail at run time, each with its own error; after each, a normal call still works.
    type Check = fn(&PluginError) -> bool;
    let cases: [(&str, Check); 5] = [
        (
            "loop",
            |e| matches!(e, PluginError::CpuBudget(b) if b == "400 ms"),
        ),
        ("grow", |e| {
            matches!(e, PluginError::Memory { limit_mib: 64 })
        }),
        ("recurse", |e| matches!(e, PluginError::StackOverflow)),
        (
            "wrong_size",
            |e| matches!(e, PluginError::OutputSize { got, expected } if *got + 1 == *expected),
        ),
        (
            "oob",
            |e| matches!(e, PluginError::OutOfBounds { call, ptr: 0xFFFF_F000, .. } if call == "unmark.output"),
        ),
    ];
    for (name, expected_error) in cases {
        let module = hostile(name);
        sandbox
            .inspect(&module)
            .unwrap_or_else(|e| panic!("{name} passes upload checks: {e}"));
        let err = run(&sandbox, &module, &rgba, w, h, None, params.clone()).expect_err(name);
        assert!(expected_error(&err), "{name}: unexpected error {err:?}");
        let ok = run(&sandbox, &gray, &rgba, w, h, None, params.clone())
            .expect("a normal call after a hostile one");
        assert_eq!(ok, expected, "after {name}");
    }
}

/// Uploads a module as multipart with the admin test key.
async fn upload(
    server: &Server,
    key: &str,
    name: &str,
    version: Option<&str>,
    module: Vec<u8>,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new()
        .text("name", name.to_owned())
        .part(
            "module",
            reqwest::multipart::Part::bytes(module).file_name("plugin.wasm"),
        );
    if let Some(v) = version {
        form = form.text("version", v.to_owned());
    }
    reqwest::Client::new()
        .post(server.url("/api/v1/plugins"))
        .header("X-API-Key", key)
        .multipart(form)
        .send()
        .await
        .expect("upload")
}

/// What a job with `pre=grayscale` and `post=blur(sigma)` must produce, computed natively.
fn expected_pre_post(input: &Raster, mask: &unmark_stages::Mask, sigma: f64) -> Vec<u8> {
    let gray = Raster {
        data: native_grayscale(&rgba_of(input))
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        ..input.clone()
    };
    let options = unmark_schemas::params::WatermarkOptions::default();
    let cleaned = unmark_stages::remove_watermark_pixels(
        &gray,
        mask,
        unmark_stages::inpaint::MaskOrigin::Drawn,
        &options,
    )
    .expect("pipeline");
    native_blur(
        &rgba_of(&cleaned),
        input.width as usize,
        input.height as usize,
        sigma,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_jobs_run_plugin_steps_and_survive_hostile_plugins() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start_in(
        data.path(),
        &[
            ("UNMARK_PLUGINS__CPU_BASE_MS", "300"),
            ("UNMARK_PLUGINS__CPU_MS_PER_MEGAPIXEL", "0"),
        ],
    );
    let http = reqwest::Client::new();

    // Install: 201, the same again 200, other bytes under the same version 409.
    let made = upload(&server, KEY, "grayscale", Some("1"), example("grayscale")).await;
    assert_eq!(made.status().as_u16(), 201);
    assert_eq!(made.headers()["location"], "/api/v1/plugins/grayscale/1");
    let body: serde_json::Value = made.json().await.expect("json");
    assert_eq!(
        (body["kind"].as_str(), body["reference"].as_str()),
        (Some("filter"), Some("grayscale@1"))
    );
    assert_eq!(
        upload(&server, KEY, "grayscale", Some("1"), example("grayscale"))
            .await
            .status()
            .as_u16(),
        200
    );
    let clash = upload(&server, KEY, "grayscale", Some("1"), example("invert")).await;
    problem(clash, 409).await;
    let blur = upload(&server, KEY, "blur", None, example("blur")).await;
    assert_eq!(blur.status().as_u16(), 201);
    assert_eq!(
        blur.json::<serde_json::Value>().await.expect("json")["version"],
        "1"
    );
    assert_eq!(
        upload(&server, KEY, "threshold", Some("1"), example("threshold"))
            .await
            .status()
            .as_u16(),
        201
    );
    // A raw module body works too.
    let raw = http
        .post(server.url("/api/v1/plugins?name=loop&version=1"))
        .header("X-API-Key", KEY)
        .header("content-type", "application/wasm")
        .body(hostile("loop"))
        .send()
        .await
        .expect("raw upload");
    assert_eq!(raw.status().as_u16(), 201);

    // Refused at upload, with what is wrong.
    let wasi = problem(
        upload(&server, KEY, "reader", Some("1"), hostile("wasi_fs")).await,
        422,
    )
    .await;
    assert!(
        wasi["detail"]
            .as_str()
            .expect("detail")
            .contains("wasi_snapshot_preview1."),
        "{wasi}"
    );
    problem(
        upload(&server, KEY, "big", Some("1"), hostile("oversize")).await,
        413,
    )
    .await;
    problem(
        upload(&server, KEY, "Bad Name", Some("1"), example("blur")).await,
        400,
    )
    .await;

    // Only admin keys install; any key lists.
    let data_dir = data.path().display().to_string();
    let user_key =
        crate::api_keys::create_key(&[("UNMARK_DATA_DIR", &data_dir)], "user", "free", false);
    problem(
        upload(&server, &user_key, "mine", Some("1"), example("blur")).await,
        403,
    )
    .await;
    let listed: serde_json::Value = http
        .get(server.url("/api/v1/plugins"))
        .header("X-API-Key", &user_key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = listed["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["reference"].as_str().expect("reference"))
        .collect();
    assert_eq!(names, ["blur@1", "grayscale@1", "loop@1", "threshold@1"]);

    // A job with a pre-filter and a post-filter gives what the native filters give.
    let (wm, mask, _) = case("dev_001_astronaut_512_text_center");
    let (input, mask_bytes) = (
        std::fs::read(&wm).expect("image"),
        std::fs::read(&mask).expect("mask"),
    );
    // A watermark removal with the mask and these fields.
    let job = async |fields: &[(&str, &str)]| {
        remove(
            &server,
            form(input.clone(), Some(mask_bytes.clone()), fields),
        )
        .await
    };
    let post = r#"{"plugin": "blur@1", "params": {"sigma": 2}}"#;
    let response = job(&[("pre", "grayscale"), ("post", post), ("format", "png")]).await;
    assert_eq!(response.status().as_u16(), 200);
    let out = decode_bytes(&response.bytes().await.expect("body"));
    let expected = expected_pre_post(&decode_bytes(&input), &read_mask(&mask), 2.0);
    let off = max_diff(&rgba_of(&out), &expected);
    assert!(off <= 1, "off by {off}");

    // A mask detector stands in for the mask.
    let detected = remove(
        &server,
        form(input.clone(), None, &[("detector", "threshold")]),
    )
    .await;
    assert_eq!(detected.status().as_u16(), 200);
    // Without one, the built-in detector decides: a different mask from the plugin's.
    let review = |fields: &'static [(&'static str, &'static str)]| {
        let (server, input) = (&server, input.clone());
        async move {
            let r = remove(server, form(input, None, fields)).await;
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().await.expect("body")
        }
    };
    let plugin_mask = review(&[("detector", "threshold"), ("return", "mask")]).await;
    let builtin_mask = review(&[("return", "mask")]).await;
    assert_ne!(plugin_mask, builtin_mask);

    // A hostile plugin fails its own job with the reason; the server goes on serving.
    let stuck = problem(job(&[("pre", "loop")]).await, 422).await;
    assert_eq!(
        stuck["detail"],
        "plugin loop@1 exceeded its 300 ms CPU budget"
    );
    assert_eq!(job(&[("pre", "grayscale")]).await.status().as_u16(), 200);

    // Wrong kind, unknown plugin: refused before the job starts.
    let kind = problem(job(&[("pre", "threshold")]).await, 400).await;
    let detail = kind["detail"].as_str().expect("detail");
    assert!(detail.contains("needs a filter plugin"), "{kind}");
    problem(job(&[("post", "nope@2")]).await, 400).await;

    // Removal: the plugin is gone for new jobs.
    let gone = http
        .delete(server.url("/api/v1/plugins/loop"))
        .header("X-API-Key", KEY)
        .send()
        .await
        .expect("delete");
    assert_eq!(gone.status().as_u16(), 200);
    problem(job(&[("pre", "loop")]).await, 400).await;
    let missing = http
        .delete(server.url("/api/v1/plugins/loop/1"))
        .header("X-API-Key", KEY)
        .send()
        .await
        .expect("delete");
    problem(missing, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_workers_run_plugin_steps() {
    let nats = crate::nats::NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let data_arg = data.path().display().to_string();
    let env = [
        ("UNMARK_NATS_URL", nats.url.as_str()),
        ("UNMARK_PLUGINS__CPU_BASE_MS", "300"),
        ("UNMARK_PLUGINS__CPU_MS_PER_MEGAPIXEL", "0"),
    ];
    let start = |args: &[&str], ready: &str| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data_arg]);
        spawn_unmark(&all, &env, ready)
    };
    // Plugins installed from the command line before any worker runs.
    let dir = examples();
    for (name, file) in [
        ("grayscale", dir.join("grayscale.wasm")),
        ("blur", dir.join("blur.wasm")),
    ] {
        succeed(
            unmark()
                .args(["plugins", "add", name])
                .arg(&file)
                .args(["--version", "1"])
                .env("UNMARK_DATA_DIR", data.path()),
        );
    }
    let (_gateway, line) = start(
        &["serve", "--bind", "127.0.0.1:0", "--stages", "none"],
        "listening on ",
    );
    let server = Server::attach(line.trim_start_matches("listening on ").to_owned());
    let mut workers: Vec<Proc> = [
        "decode",
        "prescale",
        "detect",
        "inpaint",
        "encode",
        "plugin:grayscale",
        "plugin",
    ]
    .iter()
    .map(|s| start(&["worker", "--stage", s], &format!("worker {s} ready")).0)
    .collect();

    let (wm, mask, _) = case("dev_001_astronaut_512_text_center");
    let (input, mask_bytes) = (
        std::fs::read(&wm).expect("image"),
        std::fs::read(&mask).expect("mask"),
    );
    let post = r#"[{"plugin": "blur", "params": {"sigma": 1.5}}]"#;
    let fields = [("pre", "grayscale@1"), ("post", post), ("format", "png")];
    let response = remove(
        &server,
        form(input.clone(), Some(mask_bytes.clone()), &fields),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let out = decode_bytes(&response.bytes().await.expect("body"));
    let expected = expected_pre_post(&decode_bytes(&input), &read_mask(&mask), 1.5);
    assert!(max_diff(&rgba_of(&out), &expected) <= 1);

    // A plugin installed over HTTP while the generic plugin worker runs is picked up by it;
    // when it hangs, only its job fails, and the same worker serves the next job.
    let made = upload(&server, KEY, "loop", Some("1"), hostile("loop")).await;
    assert_eq!(made.status().as_u16(), 201);
    let stuck = problem(
        remove(
            &server,
            form(input.clone(), Some(mask_bytes.clone()), &[("post", "loop")]),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        stuck["detail"],
        "plugin loop@1 exceeded its 300 ms CPU budget"
    );
    let fine = remove(&server, form(input, Some(mask_bytes), &[("post", "blur")])).await;
    assert_eq!(fine.status().as_u16(), 200);
    workers.clear();
}
