//! The CLI: one file, and a folder with one broken file among good ones.

use crate::common::*;

#[test]
fn one_file() {
    let (wm, mask, _) = case("dev_003_chelsea_512_logo_corner");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("clean.webp");
    let status = unmark()
        .args(["remove-watermark"])
        .arg(&wm)
        .arg("--mask")
        .arg(&mask)
        .arg("-o")
        .arg(&out)
        .args(["--format", "webp"])
        .status()
        .expect("run");
    assert!(status.success());
    let result = read_raster(&out);
    assert_eq!(result.size(), read_raster(&wm).size());
}

#[test]
fn a_folder_with_a_broken_file_finishes_the_rest_and_fails() {
    let root = tempfile::tempdir().expect("tempdir");
    let (images, masks, out) = (
        root.path().join("in"),
        root.path().join("masks"),
        root.path().join("out"),
    );
    std::fs::create_dir_all(&images).expect("mkdir");
    std::fs::create_dir_all(&masks).expect("mkdir");
    for id in [
        "dev_000_astronaut_512_text_corner",
        "dev_007_rocket_512_text_corner",
        "dev_009_motorcycle_left_512_text_center",
    ] {
        let (wm, mask, _) = case(id);
        let ext = wm.extension().expect("ext").to_string_lossy().to_string();
        std::fs::copy(&wm, images.join(format!("{id}.{ext}"))).expect("copy");
        std::fs::copy(&mask, masks.join(format!("{id}.png"))).expect("copy");
    }
    std::fs::write(images.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");
    std::fs::copy(
        case("dev_000_astronaut_512_text_corner").1,
        masks.join("broken.png"),
    )
    .expect("copy");

    let output = unmark()
        .arg("remove-watermark")
        .arg(&images)
        .arg("--mask-dir")
        .arg(&masks)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("4 images: 3 succeeded, 1 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains("broken.png") && stderr.contains("corrupt"),
        "{stderr}"
    );
    let mut written: Vec<_> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "dev_000_astronaut_512_text_corner.png",
            "dev_007_rocket_512_text_corner.png",
            "dev_009_motorcycle_left_512_text_center.jpg",
        ]
    );
}
