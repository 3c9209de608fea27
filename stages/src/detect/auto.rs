//! Automatic watermark detection: a small convolutional network that marks the pixels a visible
//! watermark covers, for jobs that send no mask.
//!
//! The network ([`unmark_models::detector`], on burn) is a four-level U-Net of 3x3
//! convolutions (about 250k weights) whose eighth-size level sees about 150 px around each
//! pixel, so the flat inside of a large logo is judged with its outline in view.
//!
//! It is trained on synthetic marks (text, rotated and tiled text, CJK, logos with wordmarks,
//! tiled logos; random fonts, colours, opacities, JPEG) over photos that registry packages
//! ship, by `models/watermark-detector/train.py`, in three rounds (the second and third on new
//! samples, over more photos and logo shapes), and its weights (1 MiB) are built into the
//! binary. It runs on the CPU at up to three working sizes ([`DETECT_SIDES`]: longest sides
//! of 512, 768 and 1024 pixels, a small image enlarged by at most [`MAX_ENLARGE`]), each on the
//! image and on its mirror image. At each size the mean of the two passes' logits is scaled
//! back up bilinearly; the largest of the sizes' logits is thresholded at full size. A mark's
//! strokes are seen best at one scale: thin ones vanish when a large photo is shrunk to 512
//! px, and a large logo's flat inside is judged best when the photo is small.

use std::sync::OnceLock;

use fast_image_resize::FilterType;
use unmark_models::Backend;
use unmark_models::detector::{Detector, SIDE_MULTIPLE};

use crate::prescale;
use crate::{Mask, Raster, StageError};

/// The longest sides the network sees an image at, smallest first ([`detect`]).
pub const DETECT_SIDES: [u32; 3] = [512, 768, 1024];

/// A smaller image is enlarged for the network by at most this factor.
pub const MAX_ENLARGE: f64 = 1.5;

/// A detected mask is grown by this many pixels (on top of `mask_dilate`) before removal: the
/// network marks where the mark is clearly visible, and the faint anti-aliased rim around it
/// still needs removing. Removal with the detected mask on the dev set: 22.91 dB grown by 0,
/// 23.87 by 1, 23.26 by 2 (2 was best when the network ran at 512 px only, whose masks were
/// tighter).
pub const GROWTH: u32 = 1;

/// A detected part is kept only if the network is this sure of one of its pixels.
pub const SEED: f32 = 0.99;

/// The weights built into the binary.
static BUILTIN: &[u8] = include_bytes!("../../../models/watermark-detector/detector.bin");

/// The detector network, with its weights.
#[derive(Debug)]
pub struct Network {
    detector: Detector,
}

impl Network {
    /// The network built into the binary.
    pub fn builtin() -> &'static Network {
        static NET: OnceLock<Network> = OnceLock::new();
        NET.get_or_init(|| {
            Network::builtin_on(Backend::Cpu).expect("the built-in detector weights parse")
        })
    }

    /// The built-in weights on `backend` (the CPU's is [`Network::builtin`], loaded once).
    pub fn builtin_on(backend: Backend) -> Result<Network, String> {
        Network::parse_on(BUILTIN, backend)
    }

    /// Reads a weights file onto `backend`, naming what is wrong with a bad one: the CPU runs
    /// the Winograd path, a GPU the burn modules.
    pub fn parse_on(bytes: &[u8], backend: Backend) -> Result<Network, String> {
        Detector::from_bytes(bytes, backend)
            .map(|detector| Network { detector })
            .map_err(|e| e.to_string())
    }

    /// Per-pixel logits (positive: watermark) for an RGB(A) or gray `image` at its own size.
    pub fn logits(&self, image: &Raster) -> Result<Vec<f32>, StageError> {
        let (width, height) = (image.width as usize, image.height as usize);
        // Sides padded up to a multiple of the network's by repeating the last row and column.
        let (pw, ph) = (
            width.div_ceil(SIDE_MULTIPLE) * SIDE_MULTIPLE,
            height.div_ceil(SIDE_MULTIPLE) * SIDE_MULTIPLE,
        );
        let c = image.channels as usize;
        let mut input = vec![0.0; 3 * pw * ph];
        for y in 0..ph {
            for x in 0..pw {
                let px = image.pixel(x.min(width - 1) as u32, y.min(height - 1) as u32);
                for ch in 0..3 {
                    // Gray images repeat their one channel.
                    let v = px[if c < 3 { 0 } else { ch }];
                    input[(ch * ph + y) * pw + x] = f32::from(v) / 255.0 - 0.5;
                }
            }
        }
        let plane = self
            .detector
            .logits(input, (pw, ph))
            .map_err(|e| StageError::internal(format!("watermark detector: {e}")))?;
        Ok((0..height)
            .flat_map(|y| plane[y * pw..y * pw + width].iter().copied())
            .collect())
    }
}

/// Scales a `sw` x `sh` plane to `dw` x `dh` bilinearly (pixel centres aligned).
fn upsample(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    let mut out = vec![0.0; dw * dh];
    upsample_each(src, sw, sh, dw, dh, |i, v| out[i] = v);
    out
}

/// Bilinear upsampling of `src` (`sw` x `sh`) to `dw` x `dh`, each value handed to `put` with
/// its index instead of stored: a caller that combines it with a full-size buffer of its own
/// needs no second one.
fn upsample_each(
    src: &[f32],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
    mut put: impl FnMut(usize, f32),
) {
    if (sw, sh) == (dw, dh) {
        for (i, &v) in src.iter().enumerate() {
            put(i, v);
        }
        return;
    }
    let axis = |d: usize, s: usize| -> Vec<(usize, usize, f32)> {
        let scale = s as f32 / d as f32;
        (0..d)
            .map(|i| {
                let f = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (s - 1) as f32);
                let lo = f.floor() as usize;
                (lo, (lo + 1).min(s - 1), f - lo as f32)
            })
            .collect()
    };
    let (xs, ys) = (axis(dw, sw), axis(dh, sh));
    for (y, &(y0, y1, fy)) in ys.iter().enumerate() {
        let (r0, r1) = (&src[y0 * sw..][..sw], &src[y1 * sw..][..sw]);
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
            put(y * dw + x, top + (bottom - top) * fy);
        }
    }
}

/// `image` flipped left to right.
fn mirror(image: &Raster) -> Raster {
    let c = image.channels as usize;
    let w = image.width as usize;
    let mut out = image.clone();
    for (dst, src) in out
        .data
        .chunks_exact_mut(w * c)
        .zip(image.data.chunks_exact(w * c))
    {
        for (d, s) in dst.chunks_exact_mut(c).zip(src.chunks_exact(c).rev()) {
            d.copy_from_slice(s);
        }
    }
    out
}

/// The watermark mask of `image` at its full size: pixels whose logit, at the working size
/// ([`DETECT_SIDES`]) where it is highest, is above that of `threshold` (0..1), in parts that
/// hold a pixel of probability [`SEED`] or more (or above `threshold`, when that is higher),
/// and the copies of a tiled mark completed over its lattice ([`super::tiled::complete`]).
pub fn detect(net: &Network, image: &Raster, threshold: f32) -> Result<Mask, StageError> {
    let (width, height) = (image.width as usize, image.height as usize);
    // The smallest size also serves the tiled marks' lattice.
    let mut smallest = None;
    let mut full: Vec<f32> = Vec::new();
    for size in network_sizes(image.size()) {
        let (seen, logits) = logits_at(net, image, size)?;
        let (sw, sh) = (seen.width as usize, seen.height as usize);
        if full.is_empty() {
            full = upsample(&logits, sw, sh, width, height);
        } else {
            upsample_each(&logits, sw, sh, width, height, |i, v| {
                full[i] = full[i].max(v);
            });
        }
        smallest.get_or_insert((seen, logits));
    }
    let cut = logit(threshold);
    let mut mask = Mask::new(image.width, image.height);
    for (m, &v) in mask.data.iter_mut().zip(&full) {
        *m = u8::from(v > cut);
    }
    let mut mask = keep_seeded(mask, &full, logit(threshold.max(SEED)));
    // A tiled mark: the copies the network missed take the probability of those it found.
    if let Some((seen, logits)) = smallest {
        let prob: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
        if let Some(tiled) = super::tiled::complete(&seen, &prob) {
            let (w, h) = (seen.width as usize, seen.height as usize);
            upsample_each(&tiled, w, h, width, height, |i, p| {
                mask.data[i] |= u8::from(p > threshold);
            });
        }
    }
    Ok(mask)
}

/// The network's logits for `image` resized to `size` (and that resized image): the mean of
/// the logits of the image and of its mirror image (flipped left to right). On the dev set
/// the mirror gave F1 0.347 against 0.321 for one pass, for twice the time.
fn logits_at(
    net: &Network,
    image: &Raster,
    size: (u32, u32),
) -> Result<(Raster, Vec<f32>), StageError> {
    let seen = if size == image.size() {
        image.clone()
    } else {
        // A box filter when shrinking keeps thin strokes; Catmull-Rom when enlarging keeps
        // their edges sharp.
        let filter = if size.0 > image.width {
            FilterType::CatmullRom
        } else {
            FilterType::Box
        };
        prescale::resize(image, None, size.0, size.1, filter)?
    };
    let mut logits = net.logits(&seen)?;
    let mirrored = net.logits(&mirror(&seen))?;
    let w = seen.width as usize;
    for (row, back) in logits.chunks_exact_mut(w).zip(mirrored.chunks_exact(w)) {
        for (v, m) in row.iter_mut().zip(back.iter().rev()) {
            *v = (*v + m) / 2.0;
        }
    }
    Ok((seen, logits))
}

/// The sizes the network sees an image of `size` at, smallest first: its longest side scaled
/// to each of [`DETECT_SIDES`], enlarged by at most [`MAX_ENLARGE`]. A small image reaches its
/// largest size before the last side, and each size is run once.
fn network_sizes((width, height): (u32, u32)) -> Vec<(u32, u32)> {
    let mut sizes: Vec<(u32, u32)> = DETECT_SIDES
        .iter()
        .map(|&side| {
            let scale = (f64::from(side) / f64::from(width.max(height))).min(MAX_ENLARGE);
            prescale::scaled_size((width, height), scale)
        })
        .collect();
    sizes.dedup();
    sizes
}

/// A probability (clamped away from 0 and 1) as a logit.
fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

/// The parts (8-connected) of `mask` that hold a logit above `seed`: a mark gives the
/// network at least one pixel it is sure of, a texture that only resembles one mostly does
/// not (hysteresis, as in Canny's edges).
fn keep_seeded(mut mask: Mask, logits: &[f32], seed: f32) -> Mask {
    let (labels, count) = crate::inpaint::label(&mask);
    let mut seeded = vec![false; count + 1];
    for (&l, &v) in labels.iter().zip(logits) {
        if l != 0 && v > seed {
            seeded[l as usize] = true;
        }
    }
    for (m, &l) in mask.data.iter_mut().zip(&labels) {
        *m = u8::from(l != 0 && seeded[l as usize]);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_weights_parse() {
        let net = Network::builtin();
        // Any size works: padded to a multiple of 8 inside, cropped back.
        let logits = net.logits(&Raster::filled(37, 22, 3, 128)).expect("logits");
        assert_eq!(logits.len(), 37 * 22);
    }

    #[test]
    fn logits_match_the_training_framework() {
        // `train.py --parity` writes PyTorch's logits of this image for the built-in weights.
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../models/watermark-detector/parity.json"
        ))
        .expect("parity fixture");
        let (w, h) = (24u32, 16u32);
        assert_eq!(
            (fixture["width"].as_u64(), fixture["height"].as_u64()),
            (Some(24), Some(16))
        );
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    data.push(((7 * x + 13 * y + 29 * c) % 256) as u8);
                }
            }
        }
        let image = Raster::from_data(w, h, 3, data).expect("raster");
        let ours = Network::builtin().logits(&image).expect("logits");
        let theirs = fixture["logits"].as_array().expect("logits");
        assert_eq!(ours.len(), theirs.len());
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            let b = b.as_f64().expect("number") as f32;
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "logit {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn a_bad_weight_file_is_refused_with_its_reason() {
        let err = Network::parse_on(b"PK\x03\x04", Backend::Cpu).expect_err("bad");
        assert!(err.contains("magic"), "{err}");
    }

    #[test]
    fn only_seeded_parts_are_kept() {
        // Two parts above the threshold; only the left one holds a sure pixel.
        let mut mask = Mask::new(6, 1);
        mask.data = vec![1, 1, 0, 1, 1, 0];
        let logits = [0.5, 6.0, -3.0, 0.5, 4.0, -3.0];
        let kept = keep_seeded(mask, &logits, 4.5);
        assert_eq!(kept.data, vec![1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn each_working_size_is_run_once() {
        // A large photo is shrunk to every side; a 512 px one is seen at its own size and
        // enlarged once; a small one is only enlarged, once.
        assert_eq!(
            network_sizes((2048, 1536)),
            vec![(512, 384), (768, 576), (1024, 768)]
        );
        assert_eq!(network_sizes((512, 341)), vec![(512, 341), (768, 512)]);
        assert_eq!(network_sizes((200, 100)), vec![(300, 150)]);
        assert_eq!(network_sizes((1, 1)), vec![(2, 2)]);
    }

    #[test]
    fn mirroring_reverses_each_row() {
        let image = Raster::from_data(3, 2, 1, vec![1, 2, 3, 4, 5, 6]).expect("raster");
        assert_eq!(mirror(&image).data, vec![3, 2, 1, 6, 5, 4]);
        assert_eq!(mirror(&mirror(&image)), image);
    }

    #[test]
    fn upsampling_keeps_constants_and_corners() {
        let up = upsample(&[1.0, 3.0, 1.0, 3.0], 2, 2, 4, 4);
        assert_eq!(up.len(), 16);
        assert!((up[0] - 1.0).abs() < 1e-6 && (up[3] - 3.0).abs() < 1e-6);
        assert!((up[1] - 1.5).abs() < 1e-6);
    }
}
