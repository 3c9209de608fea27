//! Automatic watermark detection: a small convolutional network that marks the pixels a visible
//! watermark covers, for jobs that send no mask.
//!
//! The network is a four-level U-Net of 3x3 convolutions (about 250k weights): two layers of
//! 16 channels at full size, a 2x2 max-pool, two of 32 at half size, a max-pool, three of 48
//! at quarter size (dilations 1, 2, 4), a max-pool, three of 64 at an eighth (dilations 1, 2,
//! 4), then back up three times (nearest-neighbour, concatenated with the skip connection, one
//! layer each) and a 1x1 head. Every layer but the head is followed by a ReLU. The
//! eighth-size level sees about 150 px around each pixel, so the flat inside of a large logo
//! is judged with its outline in view.
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
//!
//! Weights file, little-endian: `b"UMWD"`, `u32` version (3), `u32` layer count (14), then per
//! layer `u32` in, out, kernel, dilation, the weights `[out][in][ky][kx]` and the biases, all
//! `f32`, in the order of [`LAYOUT`].

use std::sync::OnceLock;

use fast_image_resize::FilterType;
use rayon::prelude::*;

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

/// The layers, in file order: (name, in, out, kernel, dilation).
pub const LAYOUT: [(&str, usize, usize, usize, usize); 14] = [
    ("c1a", 3, 16, 3, 1),
    ("c1b", 16, 16, 3, 1),
    ("c2a", 16, 32, 3, 1),
    ("c2b", 32, 32, 3, 1),
    ("c3a", 32, 48, 3, 1),
    ("c3b", 48, 48, 3, 2),
    ("c3c", 48, 48, 3, 4),
    ("c4a", 48, 64, 3, 1),
    ("c4b", 64, 64, 3, 2),
    ("c4c", 64, 64, 3, 4),
    ("u3", 112, 48, 3, 1),
    ("u2", 80, 32, 3, 1),
    ("u1", 48, 16, 3, 1),
    ("head", 16, 1, 1, 1),
];

/// The weights file's version: 3 is the four-level network of [`LAYOUT`].
const VERSION: usize = 3;

/// Input sides are padded up to a multiple of this (three 2x2 poolings).
const PAD: usize = 8;

/// One convolution.
#[derive(Debug, Clone)]
struct Conv {
    inputs: usize,
    outputs: usize,
    kernel: usize,
    dilation: usize,
    /// `[out][in][ky][kx]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// The detector network.
#[derive(Debug, Clone)]
pub struct Network {
    layers: Vec<Conv>,
}

/// Planar feature maps: one `width * height` plane per channel.
struct Planes {
    width: usize,
    height: usize,
    data: Vec<Vec<f32>>,
}

impl Planes {
    /// These channels followed by `other`'s (same size).
    fn concat(mut self, other: Planes) -> Planes {
        debug_assert_eq!((self.width, self.height), (other.width, other.height));
        self.data.extend(other.data);
        self
    }

    /// `f` on every plane, in parallel, making planes of `width` x `height`.
    fn map(&self, width: usize, height: usize, f: impl Fn(&[f32]) -> Vec<f32> + Sync) -> Planes {
        Planes {
            width,
            height,
            data: self.data.par_iter().map(|p| f(p)).collect(),
        }
    }

    /// Each 2x2 block's maximum (the sides are even).
    fn max_pool(&self) -> Planes {
        let (w, h, sw) = (self.width / 2, self.height / 2, self.width);
        self.map(w, h, |p| {
            let mut out = Vec::with_capacity(w * h);
            for y in 0..h {
                let (r0, r1) = (&p[2 * y * sw..][..sw], &p[(2 * y + 1) * sw..][..sw]);
                for x in 0..w {
                    out.push(
                        r0[2 * x]
                            .max(r0[2 * x + 1])
                            .max(r1[2 * x])
                            .max(r1[2 * x + 1]),
                    );
                }
            }
            out
        })
    }

    /// Twice the size, each value repeated 2x2 (nearest neighbour).
    fn upsample2(&self) -> Planes {
        let (w, h, sw) = (self.width * 2, self.height * 2, self.width);
        self.map(w, h, |p| {
            let mut out = Vec::with_capacity(w * h);
            for y in 0..h {
                out.extend(p[(y / 2) * sw..][..sw].iter().flat_map(|&v| [v, v]));
            }
            out
        })
    }
}

impl Network {
    /// The network built into the binary.
    pub fn builtin() -> &'static Network {
        static NET: OnceLock<Network> = OnceLock::new();
        NET.get_or_init(|| Network::parse(BUILTIN).expect("the built-in detector weights parse"))
    }

    /// Reads a weights file, naming what is wrong with a bad one.
    pub fn parse(bytes: &[u8]) -> Result<Network, String> {
        let mut at = 0usize;
        let mut take = |n: usize, what: &str| -> Result<&[u8], String> {
            let end = at
                .checked_add(n)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| format!("weights file truncated in {what} at byte {at}"))?;
            let s = &bytes[at..end];
            at = end;
            Ok(s)
        };
        if take(4, "the magic")? != b"UMWD" {
            return Err("not a detector weights file (no UMWD magic)".into());
        }
        let u32_at = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
        let version = u32_at(take(4, "the version")?);
        if version != VERSION {
            return Err(format!(
                "detector weights version {version}, expected {VERSION}"
            ));
        }
        let count = u32_at(take(4, "the layer count")?);
        if count != LAYOUT.len() {
            return Err(format!("{count} layers, expected {}", LAYOUT.len()));
        }
        let mut layers = Vec::with_capacity(count);
        for (name, inputs, outputs, kernel, dilation) in LAYOUT {
            let head = take(16, "a layer header")?;
            let got = [0, 4, 8, 12].map(|o| u32_at(&head[o..o + 4]));
            if got != [inputs, outputs, kernel, dilation] {
                return Err(format!(
                    "layer {name} is {}->{} kernel {} dilation {}, expected \
                     {inputs}->{outputs} kernel {kernel} dilation {dilation}",
                    got[0], got[1], got[2], got[3]
                ));
            }
            let floats = |s: &[u8]| -> Vec<f32> {
                s.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            let weights = floats(take(4 * outputs * inputs * kernel * kernel, "weights")?);
            let bias = floats(take(4 * outputs, "biases")?);
            if weights.iter().chain(&bias).any(|v| !v.is_finite()) {
                return Err(format!("layer {name} has a weight that is not finite"));
            }
            layers.push(Conv {
                inputs,
                outputs,
                kernel,
                dilation,
                weights,
                bias,
            });
        }
        if at != bytes.len() {
            return Err(format!("{} bytes after the last layer", bytes.len() - at));
        }
        Ok(Network { layers })
    }

    /// Per-pixel logits (positive: watermark) for an RGB(A) or gray `image` at its own size.
    pub fn logits(&self, image: &Raster) -> Vec<f32> {
        let (width, height) = (image.width as usize, image.height as usize);
        // Sides padded up to a multiple of PAD by repeating the last row and column.
        let (pw, ph) = (width.div_ceil(PAD) * PAD, height.div_ceil(PAD) * PAD);
        let c = image.channels as usize;
        let mut input = Planes {
            width: pw,
            height: ph,
            data: vec![vec![0.0; pw * ph]; 3],
        };
        for y in 0..ph {
            for x in 0..pw {
                let px = image.pixel(x.min(width - 1) as u32, y.min(height - 1) as u32);
                for ch in 0..3 {
                    // Gray images repeat their one channel.
                    let v = px[if c < 3 { 0 } else { ch }];
                    input.data[ch][y * pw + x] = f32::from(v) / 255.0 - 0.5;
                }
            }
        }
        let l = &self.layers;
        let e1 = l[1].forward(&l[0].forward(&input, true), true);
        let e2 = l[3].forward(&l[2].forward(&e1.max_pool(), true), true);
        let e3 = l[4].forward(&e2.max_pool(), true);
        let e3 = l[6].forward(&l[5].forward(&e3, true), true);
        let e4 = l[7].forward(&e3.max_pool(), true);
        let e4 = l[9].forward(&l[8].forward(&e4, true), true);
        let u3 = l[10].forward(&e4.upsample2().concat(e3), true);
        let u2 = l[11].forward(&u3.upsample2().concat(e2), true);
        let u1 = l[12].forward(&u2.upsample2().concat(e1), true);
        let out = l[13].forward(&u1, false);
        let plane = &out.data[0];
        (0..height)
            .flat_map(|y| plane[y * pw..y * pw + width].iter().copied())
            .collect()
    }
}

impl Conv {
    /// The layer on `input`, zero-padded to the same size; `relu` clamps negatives.
    fn forward(&self, input: &Planes, relu: bool) -> Planes {
        let (w, h) = (input.width, input.height);
        let half = (self.kernel / 2) as isize;
        let k = self.kernel;
        let one = |o: usize| -> Vec<f32> {
            let mut out = vec![self.bias[o]; w * h];
            for (i, plane) in input.data.iter().enumerate() {
                for ky in 0..k {
                    let dy = (ky as isize - half) * self.dilation as isize;
                    for kx in 0..k {
                        let dx = (kx as isize - half) * self.dilation as isize;
                        let wt = self.weights[((o * self.inputs + i) * k + ky) * k + kx];
                        if wt == 0.0 {
                            continue;
                        }
                        // Output columns whose source column lies inside the image.
                        let x0 = (-dx).max(0) as usize;
                        let x1 = (w as isize - dx.max(0)).max(0) as usize;
                        if x0 >= x1 {
                            continue;
                        }
                        let y0 = (-dy).max(0) as usize;
                        let y1 = (h as isize - dy.max(0)).max(0) as usize;
                        for y in y0..y1 {
                            let sy = (y as isize + dy) as usize;
                            let src = &plane[sy * w + (x0 as isize + dx) as usize..][..x1 - x0];
                            let dst = &mut out[y * w + x0..y * w + x1];
                            for (d, s) in dst.iter_mut().zip(src) {
                                *d += wt * s;
                            }
                        }
                    }
                }
            }
            if relu {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            out
        };
        debug_assert_eq!(input.data.len(), self.inputs);
        let data = (0..self.outputs).into_par_iter().map(one).collect();
        Planes {
            width: w,
            height: h,
            data,
        }
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
    let mut logits = net.logits(&seen);
    let mirrored = net.logits(&mirror(&seen));
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
        assert_eq!(net.layers.len(), LAYOUT.len());
        // Any size works: padded to a multiple of 8 inside, cropped back.
        let logits = net.logits(&Raster::filled(37, 22, 3, 128));
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
        let ours = Network::builtin().logits(&image);
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
    fn bad_weight_files_name_the_problem() {
        assert!(
            Network::parse(b"PK\x03\x04")
                .expect_err("bad")
                .contains("magic")
        );
        let cut = &BUILTIN[..BUILTIN.len() - 3];
        assert!(Network::parse(cut).expect_err("cut").contains("truncated"));
        let mut longer = BUILTIN.to_vec();
        longer.push(0);
        assert!(
            Network::parse(&longer)
                .expect_err("longer")
                .contains("after the last layer")
        );
        let mut wrong = BUILTIN.to_vec();
        wrong[16] = 4; // c1a's output count
        assert_eq!(
            Network::parse(&wrong).expect_err("wrong"),
            "layer c1a is 3->4 kernel 3 dilation 1, expected 3->16 kernel 3 dilation 1"
        );
    }

    #[test]
    fn convolution_matches_a_direct_sum() {
        // One 3x3 layer with dilation 2 on a 5x4 ramp, against the definition.
        let conv = Conv {
            inputs: 1,
            outputs: 1,
            kernel: 3,
            dilation: 2,
            weights: (0..9).map(|i| i as f32 - 4.0).collect(),
            bias: vec![0.5],
        };
        let (w, h) = (5usize, 4usize);
        let plane: Vec<f32> = (0..w * h).map(|i| (i * 7 % 11) as f32).collect();
        let out = conv.forward(
            &Planes {
                width: w,
                height: h,
                data: vec![plane.clone()],
            },
            false,
        );
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut want = 0.5;
                for ky in 0..3isize {
                    for kx in 0..3isize {
                        let (sx, sy) = (x + (kx - 1) * 2, y + (ky - 1) * 2);
                        if sx >= 0 && sy >= 0 && sx < w as isize && sy < h as isize {
                            want += conv.weights[(ky * 3 + kx) as usize]
                                * plane[sy as usize * w + sx as usize];
                        }
                    }
                }
                let got = out.data[0][y as usize * w + x as usize];
                assert!((got - want).abs() < 1e-4, "({x},{y}): {got} vs {want}");
            }
        }
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
