//! Image quality metrics, defined as scikit-image defines them, so that unmark's numbers and
//! the reference tools' numbers are comparable.
//!
//! - [`psnr`]: peak signal-to-noise ratio over all samples, or over the samples of the masked
//!   pixels (`data_range` 255).
//! - [`ssim`]: the mean structural similarity (7x7 uniform window, K1 0.01, K2 0.03, sample
//!   covariance, reflected borders, per channel then averaged), over the whole map or over the
//!   masked pixels only.
//! - [`MaskScores`]: precision, recall, F1 and IoU of a detected mask against the truth.

use crate::{Mask, Raster};

fn assert_comparable(a: &Raster, b: &Raster, mask: Option<&Mask>) {
    assert_eq!(
        (a.size(), a.channels),
        (b.size(), b.channels),
        "images differ in shape"
    );
    if let Some(m) = mask {
        assert_eq!(m.size(), a.size(), "mask differs in size");
    }
}

/// PSNR in dB; infinite when the images are equal on the region.
///
/// # Panics
/// When the images or the mask differ in size.
pub fn psnr(a: &Raster, b: &Raster, mask: Option<&Mask>) -> f64 {
    assert_comparable(a, b, mask);
    let c = a.channels as usize;
    let mut sum = 0f64;
    let mut n = 0usize;
    for (i, (pa, pb)) in a
        .data
        .chunks_exact(c)
        .zip(b.data.chunks_exact(c))
        .enumerate()
    {
        if mask.is_some_and(|m| m.data[i] == 0) {
            continue;
        }
        for (x, y) in pa.iter().zip(pb) {
            let d = *x as f64 - *y as f64;
            sum += d * d;
        }
        n += c;
    }
    if n == 0 || sum == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (sum / n as f64)).log10()
}

/// scipy's `reflect` border: `d c b a | a b c d | d c b a`.
fn reflect(i: i64, n: i64) -> usize {
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// Mean over a 7x7 window at every pixel, borders reflected.
fn box7(src: &[f64], w: usize, h: usize) -> Vec<f64> {
    const R: i64 = 3;
    let mut tmp = vec![0f64; w * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let mut s = 0.0;
            for d in -R..=R {
                s += row[reflect(x as i64 + d, w as i64)];
            }
            tmp[y * w + x] = s / 7.0;
        }
    }
    let mut out = vec![0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            for d in -R..=R {
                s += tmp[reflect(y as i64 + d, h as i64) * w + x];
            }
            out[y * w + x] = s / 7.0;
        }
    }
    out
}

/// The SSIM map of one channel.
fn ssim_map(a: &[f64], b: &[f64], w: usize, h: usize) -> Vec<f64> {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let cov_norm = 49.0 / 48.0;
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<_>>();
    let (ux, uy) = (box7(a, w, h), box7(b, w, h));
    let uxx = box7(&prod(a, a), w, h);
    let uyy = box7(&prod(b, b), w, h);
    let uxy = box7(&prod(a, b), w, h);
    (0..w * h)
        .map(|i| {
            let vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
            let vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
            let vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
            ((2.0 * ux[i] * uy[i] + c1) * (2.0 * vxy + c2))
                / ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2))
        })
        .collect()
}

/// Mean SSIM: over the masked pixels when `mask` is given, else over the whole map less a
/// 3-pixel border (as scikit-image crops it).
///
/// # Panics
/// When the images or the mask differ in size.
pub fn ssim(a: &Raster, b: &Raster, mask: Option<&Mask>) -> f64 {
    assert_comparable(a, b, mask);
    let (w, h, c) = (a.width as usize, a.height as usize, a.channels as usize);
    let mut total = vec![0f64; w * h];
    for ch in 0..c {
        let plane = |r: &Raster| {
            r.data
                .iter()
                .skip(ch)
                .step_by(c)
                .map(|&v| v as f64)
                .collect::<Vec<_>>()
        };
        for (t, s) in total.iter_mut().zip(ssim_map(&plane(a), &plane(b), w, h)) {
            *t += s / c as f64;
        }
    }
    let (mut sum, mut n) = (0f64, 0usize);
    for y in 0..h {
        for x in 0..w {
            let keep = match mask {
                Some(m) => m.data[y * w + x] != 0,
                None => x >= 3 && y >= 3 && x + 3 < w && y + 3 < h,
            };
            if keep {
                sum += total[y * w + x];
                n += 1;
            }
        }
    }
    if n == 0 { 1.0 } else { sum / n as f64 }
}

/// How well a detected mask matches the true one, pixel by pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskScores {
    /// Of the detected pixels, the share that the mark covers.
    pub precision: f64,
    /// Of the mark's pixels, the share detected.
    pub recall: f64,
    /// The harmonic mean of precision and recall.
    pub f1: f64,
    /// Intersection over union.
    pub iou: f64,
}

impl MaskScores {
    /// Scores `found` against `truth`. An empty detection of an empty truth scores 1.
    ///
    /// # Panics
    /// When the masks differ in size.
    pub fn of(found: &Mask, truth: &Mask) -> Self {
        assert_eq!(found.size(), truth.size(), "masks differ in size");
        let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
        for (&f, &t) in found.data.iter().zip(&truth.data) {
            match (f != 0, t != 0) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fneg += 1,
                (false, false) => {}
            }
        }
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                1.0
            } else {
                num as f64 / den as f64
            }
        };
        let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fneg));
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Self {
            precision,
            recall,
            f1,
            iou: ratio(tp, tp + fp + fneg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images() {
        let a = Raster::filled(10, 10, 3, 9);
        assert!(psnr(&a, &a, None).is_infinite());
        assert!((ssim(&a, &a, None) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn psnr_of_a_known_error() {
        let a = Raster::filled(4, 4, 1, 100);
        let mut b = a.clone();
        b.data[0] = 110; // MSE = 100 / 16 over the whole image
        let want = 10.0 * (255.0f64 * 255.0 / (100.0 / 16.0)).log10();
        assert!((psnr(&a, &b, None) - want).abs() < 1e-9);
        let mut m = Mask::new(4, 4);
        m.set(0, 0, true); // MSE = 100 over the mask
        assert!((psnr(&a, &b, Some(&m)) - 10.0 * (650.25f64).log10()).abs() < 1e-9);
    }

    #[test]
    fn reflect_matches_scipy() {
        let idx: Vec<_> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
    }
}
