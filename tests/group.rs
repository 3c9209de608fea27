//! The group set of `../shared/eval` (one watermark on 8 photos), for the profile tests and
//! `benches/profiles.rs`.

use std::path::{Path, PathBuf};

use unmark_stages::decode::{Limits, binarize, decode};
use unmark_stages::profile::Profile;
use unmark_stages::{Mask, Raster};

/// One photo of the group.
pub(crate) struct Item {
    /// The photo's name.
    pub(crate) name: String,
    /// The watermarked file.
    pub(crate) path: PathBuf,
    pub(crate) watermarked: Raster,
    pub(crate) clean: Raster,
}

/// The group: its photos, the true mask and the true alpha (0..1).
pub(crate) struct Group {
    pub(crate) items: Vec<Item>,
    pub(crate) mask: Mask,
    pub(crate) alpha: Vec<f32>,
}

fn read(path: &Path) -> Raster {
    let limits = Limits {
        max_pixels: 100_000_000,
        max_input_bytes: 1 << 30,
    };
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode(&bytes, &limits, "image").expect("decodable").raster
}

/// Loads the group from the eval folder `eval`.
pub(crate) fn load(eval: &Path) -> Group {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval.join("manifest.json")).expect("manifest"))
            .expect("json");
    let g = &manifest["group"];
    let path = |v: &serde_json::Value| eval.join(v.as_str().expect("path"));
    let items = g["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|it| Item {
            name: it["photo"].as_str().expect("photo").to_owned(),
            path: path(&it["watermarked"]),
            watermarked: read(&path(&it["watermarked"])),
            clean: read(&path(&it["clean"])),
        })
        .collect();
    let alpha = read(&path(&g["alpha"]));
    Group {
        items,
        mask: binarize(&read(&path(&g["mask"]))),
        alpha: alpha
            .data
            .iter()
            .step_by(alpha.channels as usize)
            .map(|&a| f32::from(a) / 255.0)
            .collect(),
    }
}

/// Every image but the `k`th: what a leave-one-out run learns from.
pub(crate) fn leave_out(images: &[Raster], k: usize) -> Vec<Raster> {
    images
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != k)
        .map(|(_, r)| r.clone())
        .collect()
}

/// Mean absolute error of the learned alpha, placed where it was learned, over the true mask.
pub(crate) fn alpha_error(p: &Profile, g: &Group) -> f64 {
    let w = g.mask.width as usize;
    let mut learned = vec![0f32; g.alpha.len()];
    for y in 0..p.height as usize {
        for x in 0..p.width as usize {
            let i = (p.origin.1 as usize + y) * w + p.origin.0 as usize + x;
            learned[i] = f32::from(p.alpha[y * p.width as usize + x]) / 255.0;
        }
    }
    let on: Vec<usize> = (0..g.alpha.len())
        .filter(|&i| g.mask.data[i] != 0)
        .collect();
    on.iter()
        .map(|&i| f64::from((learned[i] - g.alpha[i]).abs()))
        .sum::<f64>()
        / on.len() as f64
}
