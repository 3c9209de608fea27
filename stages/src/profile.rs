//! Watermark profiles: the same mark on many images.
//!
//! A profile is a mark's alpha and colour over its bounding box, learned from a batch of
//! images that share it ([`learn`], multi-image estimation in the spirit of Dekel et al.,
//! CVPR 2017) or made from a logo and an opacity ([`from_logo`]). [`locate`] finds it in a new
//! image (position and scale search on edge maps) and [`unblend`] removes it by inverting
//! `observed = (1 - alpha) * photo + alpha * colour`, falling back to a fill where the mark is
//! nearly opaque.
//!
//! Learning, for N images of one size with the mark in one place:
//! 1. The median across images of each pixel's gradient keeps what the images share, the
//!    mark's edges, and drops the photos' (their gradients are sparse and unrelated). Its
//!    magnitude, thresholded, gives the mark's support; holes inside it (flat insides of
//!    letters and shapes) are filled.
//! 2. Each image gets a prior for its photo under the support: Telea's fill.
//! 3. Per pixel, the N observations against the N priors give a first alpha and colour by
//!    least squares (slope and intercept of observed against prior, shared by the three
//!    channels); the mark's colour is their alpha-weighted median.
//! 4. With the colour fixed, each pixel's alpha is the least-squares projection of
//!    `observed - prior` on `colour - prior` over all images and channels; the colour is then
//!    re-fitted to those alphas. Two rounds.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::inpaint::{self, Rect};
use crate::{Mask, Raster, StageError};
use unmark_schemas::FailureReason;
use unmark_schemas::params::InpaintParams;

/// Alpha from which the fill starts to take over from unblending.
const BLEND_FROM: f32 = 0.80;
/// Alpha at and above which only the fill is used.
const BLEND_TO: f32 = 0.94;
/// A placement that explains this much of the image's edges along the mark is taken at once.
const CLEARLY_THERE: f32 = 0.5;
/// How much better another placement must match than the learned one to be taken.
const EXPECTED_BONUS: f32 = 0.1;
/// A placed mark covers a pixel fully where its alpha is at least this share of its full
/// opacity.
const COVERED: f32 = 0.9;
/// A logo placed within this of its own scale keeps its alphas pixel for pixel.
const EXACT_SCALE: f32 = 0.02;
/// Learned alphas below this are the priors' noise, not the mark.
const NOISE_ALPHA: f32 = 0.03;
/// Pixels of a placed mark with alpha below this are left alone.
const MIN_ALPHA: f32 = 1.5 / 255.0;

/// A watermark: alpha and colour over a box, and where it sat in the images it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Size of the images it was learned on; `None` for a logo (no known placement).
    pub frame: Option<(u32, u32)>,
    /// The box's top-left corner in that frame.
    pub origin: (u32, u32),
    /// The box's size.
    pub width: u32,
    /// The box's height.
    pub height: u32,
    /// Alpha per pixel of the box, 0..255.
    pub alpha: Vec<u8>,
    /// Colour per pixel of the box, RGB.
    pub colour: Vec<u8>,
}

/// The JSON form: arrays as base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    format: String,
    frame: Option<(u32, u32)>,
    origin: (u32, u32),
    width: u32,
    height: u32,
    alpha: String,
    colour: String,
}

const FORMAT: &str = "unmark-watermark-profile/1";

fn invalid(message: impl Into<String>) -> StageError {
    StageError::new(FailureReason::InvalidParameter, message)
}

impl Profile {
    /// The profile as JSON (`unmark-watermark-profile/1`).
    pub fn to_json(&self) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let file = ProfileFile {
            format: FORMAT.into(),
            frame: self.frame,
            origin: self.origin,
            width: self.width,
            height: self.height,
            alpha: b64.encode(&self.alpha),
            colour: b64.encode(&self.colour),
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }

    /// Reads and checks a profile.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StageError> {
        let file: ProfileFile = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a watermark profile: {e}")))?;
        if file.format != FORMAT {
            return Err(invalid(format!(
                "profile format {:?} is not {FORMAT:?}",
                file.format
            )));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let decode = |s: &str, what: &str| {
            b64.decode(s)
                .map_err(|e| invalid(format!("profile {what} is not base64: {e}")))
        };
        let n = file.width as usize * file.height as usize;
        let profile = Self {
            frame: file.frame,
            origin: file.origin,
            width: file.width,
            height: file.height,
            alpha: decode(&file.alpha, "alpha")?,
            colour: decode(&file.colour, "colour")?,
        };
        if n == 0 || profile.alpha.len() != n || profile.colour.len() != 3 * n {
            return Err(invalid("profile arrays do not match its size"));
        }
        Ok(profile)
    }

    /// Mean alpha over the pixels where the mark is (alpha > 0).
    pub fn mean_alpha(&self) -> f32 {
        let on: Vec<f32> = self
            .alpha
            .iter()
            .filter(|&&a| a > 0)
            .map(|&a| f32::from(a) / 255.0)
            .collect();
        on.iter().sum::<f32>() / on.len().max(1) as f32
    }
}

fn rgb(r: &Raster, i: usize) -> [f32; 3] {
    let c = r.channels as usize;
    let p = &r.data[i * c..i * c + c];
    match c {
        1 | 2 => [f32::from(p[0]); 3],
        _ => [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])],
    }
}

fn median(values: &mut [f32]) -> f32 {
    values.sort_by(f32::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Pixels of `support` not reachable from outside it: the holes inside a shape.
fn fill_holes(support: &mut Mask) {
    let (w, h) = (support.width as usize, support.height as usize);
    let mut outside = vec![false; w * h];
    let mut stack: Vec<usize> = Vec::new();
    for x in 0..w {
        stack.extend([x, (h - 1) * w + x]);
    }
    for y in 0..h {
        stack.extend([y * w, y * w + w - 1]);
    }
    while let Some(i) = stack.pop() {
        if outside[i] || support.data[i] != 0 {
            continue;
        }
        outside[i] = true;
        let (x, y) = (i % w, i / w);
        if x > 0 {
            stack.push(i - 1);
        }
        if x + 1 < w {
            stack.push(i + 1);
        }
        if y > 0 {
            stack.push(i - w);
        }
        if y + 1 < h {
            stack.push(i + w);
        }
    }
    for (m, out) in support.data.iter_mut().zip(outside) {
        if !out {
            *m = 1;
        }
    }
}

/// The mark's support from the median gradient across `images`.
fn shared_edges(images: &[Raster]) -> Mask {
    let (w, h) = (images[0].width as usize, images[0].height as usize);
    let mut mag = vec![0f32; w * h];
    let mut gx = vec![0f32; images.len()];
    let mut gy = vec![0f32; images.len()];
    for y in 0..h - 1 {
        for x in 0..w - 1 {
            let i = y * w + x;
            let mut best = 0f32;
            for c in 0..3 {
                for (k, img) in images.iter().enumerate() {
                    let here = rgb(img, i)[c];
                    gx[k] = rgb(img, i + 1)[c] - here;
                    gy[k] = rgb(img, i + w)[c] - here;
                }
                let (mx, my) = (median(&mut gx), median(&mut gy));
                best = best.max((mx * mx + my * my).sqrt());
            }
            mag[i] = best;
        }
    }
    let mut sorted = mag.clone();
    let typical = median(&mut sorted);
    let threshold = 4.0 + 4.0 * typical;
    let mut support = Mask::new(w as u32, h as u32);
    for (i, &m) in mag.iter().enumerate() {
        if m > threshold {
            // An edge lies between a pixel and its right and lower neighbours.
            support.data[i] = 1;
            support.data[(i + 1).min(w * h - 1)] = 1;
            support.data[(i + w).min(w * h - 1)] = 1;
        }
    }
    support
}

/// Drops connected parts of `mask` smaller than `min` pixels (isolated coincidences).
fn drop_specks(mask: &mut Mask, min: usize) {
    let (labels, _) = inpaint::label(mask);
    let mut sizes = std::collections::HashMap::<u32, usize>::new();
    for &l in &labels {
        if l != 0 {
            *sizes.entry(l).or_default() += 1;
        }
    }
    for (m, l) in mask.data.iter_mut().zip(&labels) {
        if *l != 0 && sizes[l] < min {
            *m = 0;
        }
    }
}

fn telea(image: &Raster, mask: &Mask) -> Raster {
    inpaint::telea_prior(image, mask, InpaintParams::default().radius)
}

/// Learns the mark that `images` share (at least 3, one size, the mark in one place).
pub fn learn(images: &[Raster]) -> Result<Profile, StageError> {
    if images.len() < 3 {
        return Err(invalid(format!(
            "learning a watermark needs at least 3 images that share it, got {}",
            images.len()
        )));
    }
    let size = images[0].size();
    if let Some(other) = images.iter().find(|i| i.size() != size) {
        return Err(invalid(format!(
            "images to learn from must have one size: {}x{} and {}x{}",
            size.0, size.1, other.width, other.height
        )));
    }
    if size.0 < 8 || size.1 < 8 {
        return Err(invalid("images to learn from must be at least 8x8"));
    }
    let mut support = shared_edges(images);
    drop_specks(&mut support, 6);
    let Some(edges) = inpaint::bounding_box(&support) else {
        return Err(StageError::new(
            FailureReason::MaskRequired,
            "these images share no visible watermark (no edges in common)",
        ));
    };
    // The edges themselves, with the flat insides of shapes: growing the support further
    // makes the fills worse (measured on the group set).
    fill_holes(&mut support);
    let priors: Vec<Raster> = images.iter().map(|img| telea(img, &support)).collect();
    let (w, _) = (size.0 as usize, size.1 as usize);
    let margin = 2;
    let bx = Rect {
        x0: edges.x0.saturating_sub(margin),
        y0: edges.y0.saturating_sub(margin),
        x1: (edges.x1 + margin).min(size.0),
        y1: (edges.y1 + margin).min(size.1),
    };
    let pixels: Vec<usize> = (bx.y0..bx.y1)
        .flat_map(|y| (bx.x0..bx.x1).map(move |x| y as usize * w + x as usize))
        .filter(|&i| support.data[i] != 0)
        .collect();
    let samples = |i: usize| -> (Vec<[f32; 3]>, Vec<[f32; 3]>) {
        (
            images.iter().map(|img| rgb(img, i)).collect(),
            priors.iter().map(|p| rgb(p, i)).collect(),
        )
    };

    // First guess per pixel: observed = a * prior + b, a = 1 - alpha, b = alpha * colour.
    let mut guesses: Vec<(f32, [f32; 3])> = Vec::new();
    for &i in &pixels {
        let (obs, pri) = samples(i);
        let n = obs.len() as f32;
        let mean = |v: &[[f32; 3]], c: usize| v.iter().map(|p| p[c]).sum::<f32>() / n;
        let (mut cov, mut var) = (0f32, 0f32);
        for c in 0..3 {
            let (mo, mp) = (mean(&obs, c), mean(&pri, c));
            for (o, p) in obs.iter().zip(&pri) {
                cov += (o[c] - mo) * (p[c] - mp);
                var += (p[c] - mp) * (p[c] - mp);
            }
        }
        if var < 1.0 {
            continue;
        }
        let alpha = 1.0 - cov / var;
        if alpha > 0.15 && alpha < 0.98 {
            let colour: [f32; 3] =
                std::array::from_fn(|c| (mean(&obs, c) - (1.0 - alpha) * mean(&pri, c)) / alpha);
            guesses.push((alpha, colour));
        }
    }
    if guesses.is_empty() {
        return Err(StageError::new(
            FailureReason::MaskRequired,
            "these images share edges but no consistent watermark",
        ));
    }
    let mut colour: [f32; 3] = std::array::from_fn(|c| {
        let mut v: Vec<f32> = guesses.iter().map(|g| g.1[c]).collect();
        median(&mut v).clamp(0.0, 255.0)
    });

    let mut alphas = vec![0f32; pixels.len()];
    for _ in 0..2 {
        for (a, &i) in alphas.iter_mut().zip(&pixels) {
            let (obs, pri) = samples(i);
            *a = inpaint::blend_alpha(&obs, &pri, colour);
        }
        // colour = sum a * (o - (1 - a) p) / sum a^2, over pixels with a clear alpha.
        let (mut num, mut den) = ([0f32; 3], 0f32);
        for (&a, &i) in alphas.iter().zip(&pixels) {
            if a < 0.1 {
                continue;
            }
            let (obs, pri) = samples(i);
            for (o, p) in obs.iter().zip(&pri) {
                for c in 0..3 {
                    num[c] += a * (o[c] - (1.0 - a) * p[c]);
                }
                den += a * a;
            }
        }
        if den > 0.0 {
            colour = std::array::from_fn(|c| (num[c] / den).clamp(0.0, 255.0));
        }
    }

    // The colour again, now robustly: the median over the pixels at the mark's opacity (where
    // alpha is known best) of what each observation says the colour is.
    if let Some(opacity) = snap_to_opacity(&mut alphas) {
        let mut votes: [Vec<f32>; 3] = Default::default();
        for (&a, &i) in alphas.iter().zip(&pixels) {
            if a != opacity {
                continue;
            }
            let (obs, pri) = samples(i);
            for (o, p) in obs.iter().zip(&pri) {
                for c in 0..3 {
                    votes[c].push((o[c] - (1.0 - a) * p[c]) / a);
                }
            }
        }
        if votes[0].len() > 100 {
            colour = std::array::from_fn(|c| median(&mut votes[c]).clamp(0.0, 255.0));
            for (a, &i) in alphas.iter_mut().zip(&pixels) {
                let (obs, pri) = samples(i);
                *a = inpaint::blend_alpha(&obs, &pri, colour);
            }
            snap_to_opacity(&mut alphas);
        }
    }
    // What is left of the mark: alphas above the estimates' noise, in connected parts that
    // reach a clear alpha somewhere (edges the photos share by chance do not).
    let mut on = Mask::new(size.0, size.1);
    let mut strength = vec![0f32; (size.0 * size.1) as usize];
    for (&a, &i) in alphas.iter().zip(&pixels) {
        if a >= NOISE_ALPHA {
            on.data[i] = 1;
            strength[i] = a;
        }
    }
    let (labels, count) = inpaint::label(&on);
    let (mut peak, mut mass) = (vec![0f32; count + 1], vec![0f32; count + 1]);
    for (l, a) in labels.iter().zip(&strength) {
        peak[*l as usize] = peak[*l as usize].max(*a);
        mass[*l as usize] += *a;
    }
    let heaviest = mass.iter().skip(1).copied().fold(0f32, f32::max);
    for (m, l) in on.data.iter_mut().zip(&labels) {
        let l = *l as usize;
        if l != 0 && (peak[l] < 0.2 || mass[l] < 0.05 * heaviest) {
            *m = 0;
        }
    }
    let Some(kept) = inpaint::bounding_box(&on) else {
        return Err(StageError::new(
            FailureReason::MaskRequired,
            "these images share edges but no consistent watermark",
        ));
    };
    let bx = Rect {
        x0: kept.x0.saturating_sub(1),
        y0: kept.y0.saturating_sub(1),
        x1: (kept.x1 + 1).min(size.0),
        y1: (kept.y1 + 1).min(size.1),
    };
    let (bw, bh) = (bx.x1 - bx.x0, bx.y1 - bx.y0);
    let mut profile = Profile {
        frame: Some(size),
        origin: (bx.x0, bx.y0),
        width: bw,
        height: bh,
        alpha: vec![0; (bw * bh) as usize],
        colour: colour.map(|c| c.round() as u8).repeat((bw * bh) as usize),
    };
    for (&a, &i) in alphas.iter().zip(&pixels) {
        if on.data[i] != 0 {
            let (x, y) = ((i % w) as u32 - bx.x0, (i / w) as u32 - bx.y0);
            profile.alpha[(y * bw + x) as usize] = (a * 255.0).round() as u8;
        }
    }
    Ok(profile)
}

/// Most marks are drawn at one opacity: inside the strokes alpha is that opacity, and only
/// anti-aliased edges lie below it. The per-pixel estimates scatter around it by the priors'
/// errors; the opacity itself, the mode over thousands of pixels, is known far better. So
/// estimates within `SNAP` of the mode are set to it, and the rest are left alone.
fn snap_to_opacity(alphas: &mut [f32]) -> Option<f32> {
    const SNAP: f32 = 0.06;
    let mut hist = [0f32; 256];
    for &a in alphas.iter().filter(|&&a| a > 0.1) {
        hist[(a * 255.0).round() as usize] += 1.0;
    }
    // The mode of the histogram smoothed over +-3 bins.
    let smooth = |i: usize| {
        (i.saturating_sub(3)..=(i + 3).min(255))
            .map(|j| hist[j])
            .sum::<f32>()
    };
    let mode = (26..256).max_by(|&a, &b| smooth(a).total_cmp(&smooth(b)))?;
    if smooth(mode) < 50.0 {
        return None;
    }
    // The mode's exact value: the mean of the estimates near it.
    let near: Vec<f32> = alphas
        .iter()
        .copied()
        .filter(|a| (a * 255.0 - mode as f32).abs() <= 3.5)
        .collect();
    let opacity = near.iter().sum::<f32>() / near.len().max(1) as f32;
    for a in alphas.iter_mut() {
        if (*a - opacity).abs() < SNAP {
            *a = opacity;
        }
    }
    Some(opacity)
}

/// A profile from a logo (its alpha channel, or its luminance where it has none) and an
/// opacity; its placement is found in each image.
pub fn from_logo(logo: &Raster, opacity: f32) -> Result<Profile, StageError> {
    if !(opacity > 0.0 && opacity <= 1.0) {
        return Err(invalid(format!(
            "opacity must be above 0 and at most 1, got {opacity}"
        )));
    }
    let n = logo.width as usize * logo.height as usize;
    let c = logo.channels as usize;
    let mut alpha = Vec::with_capacity(n);
    let mut colour = Vec::with_capacity(3 * n);
    for i in 0..n {
        let p = &logo.data[i * c..i * c + c];
        let (rgb, a) = match c {
            4 => ([p[0], p[1], p[2]], p[3]),
            2 => ([p[0]; 3], p[1]),
            // No alpha channel: white is the mark, in white.
            _ => (
                [255; 3],
                if c == 3 {
                    p[0].max(p[1]).max(p[2])
                } else {
                    p[0]
                },
            ),
        };
        alpha.push((f32::from(a) * opacity).round() as u8);
        colour.extend_from_slice(&rgb);
    }
    Ok(Profile {
        frame: None,
        origin: (0, 0),
        width: logo.width,
        height: logo.height,
        alpha,
        colour,
    })
}

/// Where a profile sits in an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Top-left corner of the scaled box.
    pub x: i64,
    /// Top-left corner of the scaled box.
    pub y: i64,
    /// Scale of the box.
    pub scale: f32,
    /// Normalised correlation of the edges, 0..1.
    pub score: f32,
}

/// A profile resampled to one scale (bilinear): alpha 0..1 and colour.
struct Scaled {
    width: u32,
    height: u32,
    alpha: Vec<f32>,
    colour: Vec<[f32; 3]>,
}

impl Scaled {
    fn new(profile: &Profile, scale: f32) -> Self {
        let w = ((profile.width as f32 * scale).round() as u32).max(1);
        let h = ((profile.height as f32 * scale).round() as u32).max(1);
        let (pw, ph) = (profile.width as usize, profile.height as usize);
        let mut alpha = Vec::with_capacity((w * h) as usize);
        let mut colour = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                let sx = ((x as f32 + 0.5) / scale - 0.5).clamp(0.0, (pw - 1) as f32);
                let sy = ((y as f32 + 0.5) / scale - 0.5).clamp(0.0, (ph - 1) as f32);
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(pw - 1), (y0 + 1).min(ph - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                let weights = [
                    (y0 * pw + x0, (1.0 - fx) * (1.0 - fy)),
                    (y0 * pw + x1, fx * (1.0 - fy)),
                    (y1 * pw + x0, (1.0 - fx) * fy),
                    (y1 * pw + x1, fx * fy),
                ];
                let a: f32 = weights
                    .iter()
                    .map(|&(i, wt)| f32::from(profile.alpha[i]) * wt)
                    .sum();
                // Colour weighted by alpha, so that a mark's edge keeps the mark's colour.
                let mut col = [0f32; 3];
                let mut aw = 0f32;
                for &(i, wt) in &weights {
                    let k = f32::from(profile.alpha[i]) * wt + 1e-3 * wt;
                    aw += k;
                    for (c, v) in col.iter_mut().enumerate() {
                        *v += f32::from(profile.colour[3 * i + c]) * k;
                    }
                }
                alpha.push(a / 255.0);
                colour.push(col.map(|v| v / aw));
            }
        }
        Self {
            width: w,
            height: h,
            alpha,
            colour,
        }
    }
}

/// Rec. 601 luma.
fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

fn luma_edges(image: &Raster) -> (usize, usize, Vec<f32>) {
    let (w, h) = (image.width as usize, image.height as usize);
    let luma: Vec<f32> = (0..w * h).map(|i| luma(rgb(image, i))).collect();
    (w, h, gradient(&luma, w, h))
}

fn gradient(v: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let dx = if x + 1 < w { v[i + 1] - v[i] } else { 0.0 };
            let dy = if y + 1 < h { v[i + w] - v[i] } else { 0.0 };
            out[i] = (dx * dx + dy * dy).sqrt();
        }
    }
    out
}

/// Averages `f x f` blocks.
fn pool(v: &[f32], w: usize, h: usize, f: usize) -> (usize, usize, Vec<f32>) {
    let (pw, ph) = (w / f, h / f);
    let mut out = vec![0f32; pw * ph];
    for y in 0..ph * f {
        for x in 0..pw * f {
            out[(y / f) * pw + x / f] += v[y * w + x];
        }
    }
    let norm = (f * f) as f32;
    out.iter_mut().for_each(|o| *o /= norm);
    (pw, ph, out)
}

/// Zero-mean normalised correlation of `template` at (x, y) of `image`.
fn ncc(
    image: &[f32],
    iw: usize,
    template: &[f32],
    tw: usize,
    th: usize,
    x: usize,
    y: usize,
) -> f32 {
    let n = (tw * th) as f32;
    let (mut si, mut sii, mut st, mut stt, mut sit) = (0f32, 0f32, 0f32, 0f32, 0f32);
    for ty in 0..th {
        let row = &image[(y + ty) * iw + x..(y + ty) * iw + x + tw];
        for (tx, &v) in row.iter().enumerate() {
            let t = template[ty * tw + tx];
            si += v;
            sii += v * v;
            st += t;
            stt += t * t;
            sit += v * t;
        }
    }
    let cov = sit - si * st / n;
    let var = (sii - si * si / n) * (stt - st * st / n);
    if var <= 1e-6 { 0.0 } else { cov / var.sqrt() }
}

/// The scales to try for `profile` on an image of `size`.
fn scales(profile: &Profile, size: (u32, u32)) -> Vec<f32> {
    match profile.frame {
        Some((fw, _)) => {
            let base = size.0 as f32 / fw as f32;
            let mut s: Vec<f32> = [0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4]
                .iter()
                .map(|k| k * base)
                .collect();
            if (base - 1.0).abs() > 0.05 {
                s.push(1.0);
            }
            s
        }
        None => {
            // A logo from 5 % to 60 % of the image's width, in 10 % steps.
            let (lo, hi) = (0.05 * size.0 as f32, 0.6 * size.0 as f32);
            let mut s = Vec::new();
            let mut width = lo;
            while width <= hi {
                s.push(width / profile.width as f32);
                width *= 1.1;
            }
            s
        }
    }
}

/// How well a placement explains the image: the share of the image's edge energy along the
/// mark's edges that unblending the mark there takes away. The true placement removes most of
/// it; a wrong one removes little or adds edges of its own (a negative score).
fn explained(image: &Raster, mark: &Scaled, x: i64, y: i64) -> f32 {
    let (iw, ih) = (i64::from(image.width), i64::from(image.height));
    let (tw, th) = (mark.width as i64, mark.height as i64);
    if x < 0 || y < 0 || x + tw > iw || y + th > ih {
        return f32::NEG_INFINITY;
    }
    let at = |tx: i64, ty: i64| -> (f32, f32) {
        let i = ((y + ty) * iw + x + tx) as usize;
        let t = (ty * tw + tx) as usize;
        let o = rgb(image, i);
        let (a, c) = (mark.alpha[t].min(0.9), mark.colour[t]);
        let u: [f32; 3] = std::array::from_fn(|k| (o[k] - a * c[k]) / (1.0 - a));
        (luma(o), luma(u))
    };
    let (mut before, mut after) = (0f32, 0f32);
    for ty in 0..th - 1 {
        for tx in 0..tw - 1 {
            let t = (ty * tw + tx) as usize;
            let da = (mark.alpha[t + 1] - mark.alpha[t]).abs()
                + (mark.alpha[t + tw as usize] - mark.alpha[t]).abs();
            if da < 0.02 {
                continue;
            }
            let (o, u) = at(tx, ty);
            let (or, ur) = at(tx + 1, ty);
            let (od, ud) = at(tx, ty + 1);
            before += (or - o).abs() + (od - o).abs();
            after += (ur - u).abs() + (ud - u).abs();
        }
    }
    if before <= 0.0 {
        0.0
    } else {
        (before - after) / before
    }
}

/// Finds `profile` in `image`. Candidates come from matching the edges of the mark's alpha
/// against the image's edges (normalised correlation, on blocks of at least 4x4 so that the
/// coarse image is about 256 px across, then a few pixels around the three best, at each
/// scale), and from where a learned mark was. Each candidate is then judged by how much of
/// the image's edges along the mark unblending it there explains ([`explained`]), and the best
/// is refined over finer scales and nearby positions the same way.
pub fn locate(profile: &Profile, image: &Raster) -> Option<Placement> {
    let mut candidates: Vec<(Placement, f32)> = Vec::new();
    if let Some(at) = expected_placement(profile, image.size()) {
        // Where a learned mark was is where it most likely is; when unblending it there
        // clearly explains the image, there is nothing to search for.
        let here = refine(profile, image, at, &[1.0], 2);
        if here.score >= CLEARLY_THERE {
            return Some(here);
        }
        candidates.push((at, EXPECTED_BONUS));
    }
    let (iw, ih, edges) = luma_edges(image);
    let f = (iw.max(ih) / 256).max(4);
    let (cw, ch, coarse) = pool(&edges, iw, ih, f);
    for scale in scales(profile, image.size()) {
        let mark = Scaled::new(profile, scale);
        let (tw, th) = (mark.width as usize, mark.height as usize);
        if tw > iw || th > ih || tw < 2 * f || th < 2 * f {
            continue;
        }
        let template = gradient(&mark.alpha, tw, th);
        let (ctw, cth, ctemplate) = pool(&template, tw, th, f);
        let mut coarse_hits: Vec<(f32, usize, usize)> = Vec::new();
        for y in 0..=ch.saturating_sub(cth) {
            for x in 0..=cw.saturating_sub(ctw) {
                coarse_hits.push((ncc(&coarse, cw, &ctemplate, ctw, cth, x, y), x, y));
            }
        }
        coarse_hits.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(_, cx, cy) in coarse_hits.iter().take(3) {
            let mut fine: Option<Placement> = None;
            let (x0, y0) = ((cx * f).saturating_sub(f), (cy * f).saturating_sub(f));
            for y in y0..=(cy * f + f).min(ih - th) {
                for x in x0..=(cx * f + f).min(iw - tw) {
                    let score = ncc(&edges, iw, &template, tw, th, x, y);
                    if fine.is_none_or(|b| score > b.score) {
                        fine = Some(Placement {
                            x: x as i64,
                            y: y as i64,
                            scale,
                            score,
                        });
                    }
                }
            }
            candidates.extend(fine.map(|p| (p, 0.0)));
        }
    }
    // Each candidate, judged near its scale and position; then the best, refined until it
    // stops improving.
    let mut best: Option<Placement> = None;
    for (at, bonus) in candidates {
        let mut local = refine(profile, image, at, &[0.95, 0.975, 1.0, 1.025, 1.05], 1);
        local.score += bonus;
        if best.is_none_or(|b| local.score > b.score) {
            best = Some(local);
        }
    }
    let mut found = best?;
    for _ in 0..4 {
        let next = refine(profile, image, found, &[0.99, 1.0, 1.01], 2);
        if next.score <= found.score {
            break;
        }
        found = next;
    }
    Some(Placement {
        score: found.score.clamp(-1.0, 1.0),
        ..found
    })
}

/// The best of the placements around `at`: its scale times each of `ks`, the centre kept,
/// moved up to `reach` pixels each way, judged by [`explained`].
fn refine(profile: &Profile, image: &Raster, at: Placement, ks: &[f32], reach: i64) -> Placement {
    let mut best = Placement {
        score: f32::NEG_INFINITY,
        ..at
    };
    let cx = at.x as f32 + profile.width as f32 * at.scale / 2.0;
    let cy = at.y as f32 + profile.height as f32 * at.scale / 2.0;
    // The profile's own size, where it is in reach: resampling blurs a mark's edges.
    let natural = ((at.scale - 1.0).abs() < 0.05).then_some(1.0);
    for scale in ks.iter().map(|k| at.scale * k).chain(natural) {
        let mark = Scaled::new(profile, scale);
        let (x0, y0) = (cx - mark.width as f32 / 2.0, cy - mark.height as f32 / 2.0);
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let (x, y) = (x0.round() as i64 + dx, y0.round() as i64 + dy);
                // A hair's preference for the natural size breaks near-ties its way.
                let bonus = if scale == 1.0 { 0.005 } else { 0.0 };
                let score = explained(image, &mark, x, y) + bonus;
                if score > best.score {
                    best = Placement { x, y, scale, score };
                }
            }
        }
    }
    best
}

/// Where a learned profile was in its own frame, scaled to an image of `size`.
pub fn expected_placement(profile: &Profile, size: (u32, u32)) -> Option<Placement> {
    let (fw, _) = profile.frame?;
    let scale = size.0 as f32 / fw as f32;
    Some(Placement {
        x: (profile.origin.0 as f32 * scale).round() as i64,
        y: (profile.origin.1 as f32 * scale).round() as i64,
        scale,
        score: 1.0,
    })
}

/// The placed mark's full opacity: the median of its alphas of at least half the largest (a
/// learned profile snaps the inside of its strokes to one opacity; a logo's alpha times the
/// opacity the user gave). 0 for an empty placement.
fn full_opacity(placed: &[(f32, [f32; 3])], mask: &Mask) -> f32 {
    let alphas: Vec<f32> = placed
        .iter()
        .zip(&mask.data)
        .filter(|&(_, &m)| m != 0)
        .map(|(&(a, _), _)| a)
        .collect();
    let top = alphas.iter().copied().fold(0f32, f32::max);
    let mut upper: Vec<f32> = alphas.into_iter().filter(|&a| a >= 0.5 * top).collect();
    if upper.is_empty() {
        return 0.0;
    }
    let mid = upper.len() / 2;
    *upper.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// Removes the placed mark from `image` and returns the mask of the pixels it changed. The
/// `restore` engine does it, told which pixels the mark covers fully (see
/// [`inpaint::restore_shaped`]). A logo at its own size, or a mark whose opacity this image
/// leaves unknown, is removed with the profile's own alphas and colours instead: unblended
/// where the mark lets the photo through, a Telea fill where it is nearly opaque, and the two
/// blended between.
pub fn unblend(image: &mut Raster, profile: &Profile, at: Placement) -> Mask {
    let Scaled {
        width: tw,
        height: th,
        alpha,
        colour,
    } = Scaled::new(profile, at.scale);
    let (iw, ih) = (image.width as i64, image.height as i64);
    let mut mask = Mask::new(image.width, image.height);
    let mut placed = vec![(0f32, [0f32; 3]); (iw * ih) as usize];
    for ty in 0..th as i64 {
        for tx in 0..tw as i64 {
            let (x, y) = (at.x + tx, at.y + ty);
            let t = (ty * tw as i64 + tx) as usize;
            if x < 0 || y < 0 || x >= iw || y >= ih || alpha[t] < MIN_ALPHA {
                continue;
            }
            let i = (y * iw + x) as usize;
            mask.data[i] = 1;
            placed[i] = (alpha[t], colour[t]);
        }
    }
    // A learned mark, or a logo drawn at another scale, goes through `restore`, told which
    // pixels the mark covers fully: it fits this image's own opacity and colour over them
    // and measures the rim's alphas here (the learned ones come from other photos, the
    // resampled ones are blurred). A logo at its own size keeps its exact alphas.
    let exact = profile.frame.is_none() && (at.scale - 1.0).abs() < EXACT_SCALE;
    let full = full_opacity(&placed, &mask);
    if full > 0.0 && !exact {
        let covered: Vec<bool> = placed.iter().map(|&(a, _)| a >= COVERED * full).collect();
        if inpaint::restore_shaped(image, &mask, &covered) {
            return mask;
        }
    }
    let opaque = Mask {
        data: placed
            .iter()
            .map(|&(a, _)| u8::from(a > BLEND_FROM))
            .collect(),
        ..mask.clone()
    };
    let prior = if opaque.count() > 0 {
        Some(telea(image, &crate::detect::dilate(&opaque, 1)))
    } else {
        None
    };
    let c = image.channels as usize;
    for (i, &(a, col)) in placed.iter().enumerate() {
        if mask.data[i] == 0 {
            continue;
        }
        let o = rgb(image, i);
        let fill = prior.as_ref().map_or(o, |p| rgb(p, i));
        let t = ((a - BLEND_FROM) / (BLEND_TO - BLEND_FROM)).clamp(0.0, 1.0);
        let out: [f32; 3] = std::array::from_fn(|k| {
            let clean = if a < BLEND_TO {
                ((o[k] - a * col[k]) / (1.0 - a)).clamp(0.0, 255.0)
            } else {
                fill[k]
            };
            (1.0 - t) * clean + t * fill[k]
        });
        let px = &mut image.data[i * c..i * c + c];
        match c {
            1 | 2 => px[0] = luma(out).round() as u8,
            _ => {
                for k in 0..3 {
                    px[k] = out[k].round() as u8;
                }
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_opacity_is_the_level_of_the_strokes_not_of_the_rim() {
        // A mark at 0.5 with an anti-aliased rim (0.1 to 0.4) that outnumbers its inside, one
        // stray bright pixel, and a pixel outside the mask that must not count.
        let alphas = [
            0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 0.52, 0.9, 0.99,
        ];
        let mut mask = Mask::new(alphas.len() as u32, 1);
        mask.data = vec![1; alphas.len()];
        *mask.data.last_mut().expect("pixel") = 0;
        let placed: Vec<(f32, [f32; 3])> = alphas.iter().map(|&a| (a, [255.0; 3])).collect();
        assert_eq!(full_opacity(&placed, &mask), 0.5);
        assert_eq!(
            full_opacity(&placed, &Mask::new(alphas.len() as u32, 1)),
            0.0
        );
    }
}
