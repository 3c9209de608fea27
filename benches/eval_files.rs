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
