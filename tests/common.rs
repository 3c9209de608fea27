//! Shared helpers: a real `unmark serve` child process, the eval set, image helpers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use unmark_schemas::params::{Engine, WatermarkOptions};
use unmark_stages::decode::{Limits, decode};
use unmark_stages::inpaint::MaskOrigin;
use unmark_stages::quality::psnr;
use unmark_stages::{Mask, Raster};

pub(crate) const KEY: &str = "test-key-0123456789";

/// The dev evaluation set beside the repository.
pub(crate) fn eval_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval")
}

/// The eval set's `manifest.json`.
pub(crate) fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(eval_dir().join("manifest.json")).expect("manifest"))
        .expect("manifest json")
}

/// Masked PSNR of removal by `engine` with `mask` (drawn by `origin`) grown by `grow` pixels,
/// on the true mask's pixels.
pub(crate) fn removal_psnr(
    image: &Raster,
    (mask, origin): (&Mask, MaskOrigin),
    grow: u32,
    engine: Engine,
    clean: &Raster,
    truth: &Mask,
) -> f64 {
    let mut options = WatermarkOptions::default();
    options.detect.mask_dilate = grow;
    options.inpaint.engine = engine;
    let out =
        unmark_stages::remove_watermark_pixels(image, mask, origin, &options).expect("remove");
    psnr(&out, clean, Some(truth))
}

/// The mean of `v` (0 when empty).
pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Paths of one eval case: (watermarked, mask, clean).
pub(crate) fn case(id: &str) -> (PathBuf, PathBuf, PathBuf) {
    let manifest = manifest();
    let case = manifest["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"));
    let path = |k: &str| eval_dir().join(case["paths"][k].as_str().expect("path"));
    (path("watermarked"), path("mask"), path("clean"))
}

pub(crate) fn decode_bytes(bytes: &[u8]) -> Raster {
    let limits = Limits {
        max_pixels: 100_000_000,
        max_input_bytes: 1 << 30,
    };
    decode(bytes, &limits, "image").expect("decodable").raster
}

pub(crate) fn read_raster(path: &Path) -> Raster {
    decode_bytes(&std::fs::read(path).expect("read"))
}

pub(crate) fn read_mask(path: &Path) -> Mask {
    unmark_stages::decode::binarize(&read_raster(path))
}

/// A PNG of `w` x `h` from a function of the pixel.
pub(crate) fn png_of(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

/// The `unmark` binary under test.
pub(crate) fn unmark() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unmark"));
    cmd.env("UNMARK_LOG", "warn");
    cmd
}

/// Runs a command to its end and checks that it succeeded; returns its output.
pub(crate) fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `unmark serve` on a free loopback port, killed on drop.
pub(crate) struct Server {
    child: Option<Proc>,
    pub(crate) base: String,
}

impl Server {
    /// Starts a server with the test key and extra `UNMARK_*` settings.
    pub(crate) fn start(env: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("tempdir").keep();
        Self::start_in(&data, env)
    }

    /// Starts a server on the data folder `data`.
    pub(crate) fn start_in(data: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = unmark();
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("UNMARK_API_KEY", KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start unmark serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self {
            child: Some(Proc(child)),
            base,
        }
    }

    /// A server whose process the caller started.
    pub(crate) fn own(proc: Proc, base: String) -> Self {
        Self {
            child: Some(proc),
            base,
        }
    }

    /// A server started elsewhere (its process is not owned).
    pub(crate) fn attach(base: String) -> Self {
        Self { child: None, base }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The OpenAPI document the server serves.
    pub(crate) async fn openapi(&self) -> serde_json::Value {
        reqwest::get(self.url("/api/v1/openapi.json"))
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// Kills the server with SIGKILL: no shutdown of any kind.
    pub(crate) fn kill(&mut self) {
        self.child = None;
    }
}

/// An embedded server that runs only decode and prescale: every job it accepts stays in
/// flight, whatever the machine's speed.
pub(crate) fn stuck_server(data: &Path, env: &[(&str, &str)]) -> Server {
    let data = data.display().to_string();
    let args = [
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--stages",
        "decode,prescale",
        "--data-dir",
        &data,
    ];
    let (proc, line) = spawn_unmark(&args, env, "listening on ");
    Server::own(proc, line.trim_start_matches("listening on ").to_owned())
}

/// A child process, killed on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `unmark args...` with the test key and `env`, and waits for its first stdout line,
/// which must start with `ready`; returns the process and that line.
pub(crate) fn spawn_unmark(args: &[&str], env: &[(&str, &str)], ready: &str) -> (Proc, String) {
    let mut cmd = unmark();
    cmd.args(args)
        .env("UNMARK_API_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn unmark");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert!(line.starts_with(ready), "unexpected first line {line:?}");
    (Proc(child), line.trim().to_owned())
}

/// A multipart form with an image, an optional mask and text fields.
pub(crate) fn form(
    image: Vec<u8>,
    mask: Option<Vec<u8>>,
    fields: &[(&str, &str)],
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(image).file_name("image"),
    );
    if let Some(mask) = mask {
        form = form.part(
            "mask",
            reqwest::multipart::Part::bytes(mask).file_name("mask.png"),
        );
    }
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

/// POSTs a form to the watermark endpoint with the test key.
pub(crate) async fn remove(server: &Server, form: reqwest::multipart::Form) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/api/v1/remove-watermark"))
        .header("X-API-Key", KEY)
        .multipart(form)
        .send()
        .await
        .expect("request")
}

/// Reads a problem+json error and checks its shape.
pub(crate) async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let ct = response.headers()["content-type"]
        .to_str()
        .expect("ct")
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("json body");
    assert_eq!(body["status"], status);
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem without {field}: {body}");
    }
    body
}
