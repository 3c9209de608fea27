//! OpenCV's Telea, the benches' reference: `benches/opencv_telea.py` over a batch of cases.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use unmark_stages::Mask;

/// One case for the reference: the input image and the mask it inpaints.
pub(crate) struct Case<'a> {
    pub(crate) id: &'a str,
    pub(crate) image: PathBuf,
    pub(crate) mask: &'a Mask,
}

/// Runs `cv2.inpaint(..., INPAINT_TELEA)` with `radius` on every case (the median of `repeat`
/// timed runs each, single-threaded), writing masks and results under `dir`. Returns each
/// case's result path and seconds, in order; panics when python3 or OpenCV is missing.
pub(crate) fn telea(cases: &[Case], radius: u32, repeat: usize, dir: &Path) -> Vec<(PathBuf, f64)> {
    let outs: Vec<PathBuf> = cases
        .iter()
        .map(|case| dir.join(format!("{}-cv.png", case.id)))
        .collect();
    let jobs: Vec<serde_json::Value> = cases
        .iter()
        .zip(&outs)
        .map(|(case, out)| {
            let mask = dir.join(format!("{}-mask.png", case.id));
            save_mask(case.mask, &mask);
            serde_json::json!({ "image": case.image, "mask": mask, "out": out, "radius": radius })
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/opencv_telea.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(repeat.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    serde_json::to_writer(child.stdin.take().expect("stdin"), &jobs).expect("write jobs");
    let output = child.wait_with_output().expect("opencv reference");
    assert!(
        output.status.success(),
        "opencv reference failed (scripts/setup.sh --bench installs it)"
    );
    let seconds: Vec<f64> = serde_json::from_slice(&output.stdout).expect("opencv timings");
    outs.into_iter().zip(seconds).collect()
}

fn save_mask(mask: &Mask, path: &Path) {
    let data = mask.data.iter().map(|&v| v * 255).collect();
    image::GrayImage::from_raw(mask.width, mask.height, data)
        .expect("mask buffer")
        .save(path)
        .expect("save mask");
}
