//! Reading the eval set's files, shared by the benches.

use std::path::Path;

use unmark_stages::Raster;
use unmark_stages::decode::{Limits, decode};

/// The decoded image (or mask) at `path`; panics with the path when it cannot be read.
pub(crate) fn read(path: &Path) -> Raster {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let limits = Limits {
        max_pixels: 100_000_000,
        max_input_bytes: 1 << 30,
    };
    decode(&bytes, &limits, "image").expect("decode").raster
}

/// The cases of the eval set at `eval` (its `manifest.json`), as the manifest lists them.
#[allow(dead_code)]
pub(crate) fn manifest_cases(eval: &Path) -> Vec<serde_json::Value> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval.join("manifest.json")).expect("manifest.json"))
            .expect("manifest");
    manifest["cases"].as_array().expect("cases").clone()
}
