//! `restore` for loose masks (drawn or detected generously, so that many masked pixels are
//! not under the mark): every pixel gets its own alpha. Per connected region of the mask:
//!
//! 1. takes the `telea` fill as a prior for the photo;
//! 2. estimates the mark's colour and each pixel's alpha by alternating least squares on
//!    `observed - prior = a * (colour - prior)`;
//! 3. caps each pixel's alpha by the region's opacity (a high quantile of the alphas of the
//!    pixels whose neighbours are all masked), which stops the overshoot a poor prior causes;
//! 4. inverts the blend where alpha is clearly below 1, keeps the prior where the mark is
//!    (nearly) opaque, and blends the two in between;
//! 5. falls back to the prior for a whole region when the model does not explain it (the
//!    colour is too close to the photo, or the residual is large).

use super::super::regions::label;
use super::{alpha_of, copy_prior, rgb};
use crate::{Mask, Raster};

/// The region's opacity is this quantile of the alphas of its inside pixels.
const OPACITY_QUANTILE: f32 = 0.85;
/// Alpha from which the prior starts to take over.
const BLEND_FROM: f32 = 0.78;
/// Alpha at and above which only the prior is used.
const BLEND_TO: f32 = 0.93;

/// Restores the masked pixels of `image` given the inpainted `prior` of the same image.
pub(super) fn restore(image: &mut Raster, mask: &Mask, prior: &Raster, interior: &[bool]) {
    let (labels, count) = label(mask);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, &l) in labels.iter().enumerate() {
        if l > 0 {
            members[l as usize - 1].push(i);
        }
    }
    for pixels in &members {
        restore_region(image, prior, pixels, interior);
    }
}

fn percentile(values: &mut [f32], q: f32) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    values[((values.len() - 1) as f32 * q).round() as usize]
}

fn restore_region(image: &mut Raster, prior: &Raster, pixels: &[usize], interior: &[bool]) {
    if image.channels < 3 || pixels.len() < 4 {
        return copy_prior(image, prior, pixels);
    }
    let obs: Vec<[f32; 3]> = pixels.iter().map(|&i| rgb(image, i)).collect();
    let pri: Vec<[f32; 3]> = pixels.iter().map(|&i| rgb(prior, i)).collect();

    // Over a flat background, colour and alpha trade off along the ray from the photo through
    // the observation: every point of it fits. Start at the ray's far end inside the RGB cube
    // (the most extreme colour, the lowest alpha, the least noise amplification); where the
    // background varies, the alternation below pulls the colour to where the data puts it.
    let n = obs.len() as f32;
    let mean = |v: &[[f32; 3]]| [0, 1, 2].map(|k| v.iter().map(|p| p[k]).sum::<f32>() / n);
    let (o_mean, p_mean) = (mean(&obs), mean(&pri));
    let dir = [0, 1, 2].map(|k| o_mean[k] - p_mean[k]);
    let reach = (0..3)
        .filter(|&k| dir[k].abs() > 1e-3)
        .map(|k| {
            let bound = if dir[k] > 0.0 { 255.0 } else { 0.0 };
            (bound - p_mean[k]) / dir[k]
        })
        .fold(f32::INFINITY, f32::min);
    if !reach.is_finite() {
        return copy_prior(image, prior, pixels);
    }
    let mut colour = [0, 1, 2].map(|k| (p_mean[k] + reach * dir[k]).clamp(0.0, 255.0));
    let mut alpha = vec![0f32; obs.len()];
    for _ in 0..12 {
        for (a, (o, p)) in alpha.iter_mut().zip(obs.iter().zip(&pri)) {
            *a = alpha_of(*o, *p, colour);
        }
        let (mut num, mut den) = ([0f32; 3], 0f32);
        for (a, (o, p)) in alpha.iter().zip(obs.iter().zip(&pri)) {
            for k in 0..3 {
                num[k] += a * (o[k] - (1.0 - a) * p[k]);
            }
            den += a * a;
        }
        if den < 1e-3 {
            return copy_prior(image, prior, pixels);
        }
        for k in 0..3 {
            colour[k] = (num[k] / den).clamp(0.0, 255.0);
        }
    }

    // A mark is no more opaque than its inside: where the prior is poor, per-pixel alphas
    // overshoot, and the cap stops them.
    let mut inside: Vec<f32> = pixels
        .iter()
        .zip(&alpha)
        .filter(|(i, _)| interior[**i])
        .map(|(_, a)| *a)
        .collect();
    let opacity = if inside.len() >= 8 {
        percentile(&mut inside, OPACITY_QUANTILE)
    } else {
        percentile(&mut alpha.clone(), OPACITY_QUANTILE)
    };
    for a in alpha.iter_mut() {
        *a = a.min(opacity);
    }

    // Does the model explain the region better than the prior alone?
    let contrast: f32 = pri.iter().map(|p| dist(*p, colour)).sum::<f32>() / pri.len() as f32;
    let (mut resid, mut change) = (0f32, 0f32);
    for ((o, p), a) in obs.iter().zip(&pri).zip(&alpha) {
        let model = [0, 1, 2].map(|k| (1.0 - a) * p[k] + a * colour[k]);
        resid += dist(*o, model);
        change += dist(*o, *p);
    }
    if contrast < 24.0 || opacity < 0.05 || resid > 0.6 * change {
        return copy_prior(image, prior, pixels);
    }

    let c = image.channels as usize;
    for ((&i, o), (p, a)) in pixels.iter().zip(&obs).zip(pri.iter().zip(&alpha)) {
        let keep_prior = ((a - BLEND_FROM) / (BLEND_TO - BLEND_FROM)).clamp(0.0, 1.0);
        for k in 0..3 {
            let unblended = if *a < BLEND_TO {
                ((o[k] - a * colour[k]) / (1.0 - a)).clamp(0.0, 255.0)
            } else {
                p[k]
            };
            let v = (1.0 - keep_prior) * unblended + keep_prior * p[k];
            image.data[i * c + k] = v.round().clamp(0.0, 255.0) as u8;
        }
        if c == 4 {
            image.data[i * c + 3] = prior.data[i * c + 3];
        }
    }
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}
