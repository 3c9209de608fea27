//! The synthetic cases `restore` is held to beside the dev set, shared by the tests and the
//! `restore_styles` bench: every [`Style`] drawn over a crop of each dev photo at 1024 px (other
//! parts of them than the dev cases show, at another scale), one seed per photo.

use std::path::Path;

use unmark_stages::decode::{Limits, decode};
use unmark_stages::synth::{self, Case, Style};

/// The size of the crops.
pub(crate) const CROP: (u32, u32) = (448, 336);

/// `(id, case)` for every style over every photo in `eval`'s `photos/1024`, the photos in name
/// order; the id is `style:photo`.
pub(crate) fn synth_cases(eval: &Path) -> Vec<(String, Case)> {
    let dir = eval.join("photos/1024");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    paths.sort();
    let limits = Limits {
        max_pixels: 100_000_000,
        max_input_bytes: 1 << 30,
    };
    let mut cases = Vec::new();
    for (n, path) in paths.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let photo = decode(&bytes, &limits, "photo")
            .expect("a dev photo")
            .raster;
        let photo = synth::crop(&photo, CROP.0, CROP.1, n as u64);
        let name = path.file_stem().expect("a file name").to_string_lossy();
        for style in Style::ALL {
            let id = format!("{}:{name}", style.name());
            cases.push((id, synth::mark(&photo, style, n as u64)));
        }
    }
    cases
}
