//! The cost of running a filter as a WASM plugin, against the same filter in native Rust, in
//! one run:
//!
//! 1. Compilation: `blur.wasm` compiled by Cranelift, then loaded from the on-disk cache by a
//!    new sandbox (what a restarted worker does).
//! 2. Per-call overhead: `grayscale` on a 1x1 and a 64x64 image. Each call instantiates the
//!    module in a fresh store, copies the image and parameters in, runs, and copies the
//!    output back; at these sizes that is nearly all of it.
//! 3. Per-megapixel time: `blur` (sigma 2) and `grayscale` at 1 and 4 megapixels, plugin vs
//!    the native versions in `tests/reference_filters.rs`, both on one thread.
//!
//! ```text
//! cargo bench --bench plugins -- [--rounds 7]
//! ```

#[path = "../tests/reference_filters.rs"]
#[allow(dead_code)]
mod reference_filters;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use unmark_plugins::{Input, Limits, Sandbox, sha256_hex};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(rounds: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..rounds)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn image(w: u32, h: u32) -> Vec<u8> {
    (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [(x * 7) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8, 255]
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(7usize);
    let out = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new("bash")
        .arg(root.join("plugins/examples/build.sh"))
        .arg(out.path())
        .status()
        .expect("build the example plugins");
    assert!(built.success());
    let module =
        |name: &str| std::fs::read(out.path().join(format!("{name}.wasm"))).expect("module");
    let (blur, gray) = (module("blur"), module("grayscale"));
    let limits = Limits {
        cpu_base: Duration::from_secs(600),
        ..Limits::default()
    };

    println!("compilation of blur.wasm ({} bytes):", blur.len());
    let cache = tempfile::tempdir().expect("cache dir");
    let cold = Sandbox::new(limits.clone(), Some(cache.path().to_owned())).expect("sandbox");
    let start = Instant::now();
    cold.load(&sha256_hex(&blur), &blur).expect("compile");
    let compiled = start.elapsed();
    let warm = Sandbox::new(limits.clone(), Some(cache.path().to_owned())).expect("sandbox");
    let start = Instant::now();
    warm.load(&sha256_hex(&blur), &blur)
        .expect("from the disk cache");
    let cached = start.elapsed();
    println!(
        "  Cranelift {:.1} ms, from the disk cache {:.2} ms ({:.0}x faster)",
        ms(compiled),
        ms(cached),
        compiled.as_secs_f64() / cached.as_secs_f64()
    );

    let sandbox = Sandbox::new(limits, None).expect("sandbox");
    let gray_plugin = sandbox.load(&sha256_hex(&gray), &gray).expect("grayscale");
    let blur_plugin = sandbox.load(&sha256_hex(&blur), &blur).expect("blur");
    let params = serde_json::json!({ "sigma": 2 });
    let call = |plugin, rgba: &[u8], w, h| {
        sandbox
            .run(
                plugin,
                &Input {
                    rgba,
                    width: w,
                    height: h,
                    mask: None,
                    params: &params,
                },
            )
            .expect("plugin call")
    };

    println!(
        "per-call overhead (grayscale, median of {} calls):",
        rounds * 20
    );
    for side in [1u32, 64] {
        let rgba = image(side, side);
        let plugin = time(rounds * 20, || drop(call(&gray_plugin, &rgba, side, side)));
        let native = time(rounds * 20, || {
            drop(reference_filters::native_grayscale(&rgba))
        });
        println!(
            "  {side}x{side}: plugin {:.3} ms, native {:.4} ms, overhead {:.3} ms per call",
            ms(plugin),
            ms(native),
            ms(plugin.saturating_sub(native))
        );
    }

    println!("per megapixel (median of {rounds} runs, one thread each):");
    println!(
        "  {:<10} {:>5} {:>12} {:>12} {:>7}",
        "filter", "MP", "plugin ms", "native ms", "ratio"
    );
    for (w, h) in [(1000u32, 1000u32), (2000, 2000)] {
        let rgba = image(w, h);
        let mp = f64::from(w) * f64::from(h) / 1e6;
        let rows = [
            (
                "blur",
                time(rounds, || drop(call(&blur_plugin, &rgba, w, h))),
                time(rounds, || {
                    drop(reference_filters::native_blur(
                        &rgba, w as usize, h as usize, 2.0,
                    ))
                }),
            ),
            (
                "grayscale",
                time(rounds, || drop(call(&gray_plugin, &rgba, w, h))),
                time(rounds, || drop(reference_filters::native_grayscale(&rgba))),
            ),
        ];
        for (name, plugin, native) in rows {
            println!(
                "  {name:<10} {mp:>5.1} {:>12.1} {:>12.1} {:>7.2}",
                ms(plugin),
                ms(native),
                plugin.as_secs_f64() / native.as_secs_f64()
            );
        }
    }
}
