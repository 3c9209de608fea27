//! The mark's model: how an observed pixel is made from the photo under it.
//!
//! Every model is affine in the photo, pixel by pixel: `observed = (1 - a) * photo + a *
//! colour`. The simplest has one colour and one opacity for the whole mark; a gradient's
//! colour changes linearly across the mark ([`Fit::Gradient`]); a mark of two or three layers
//! (a fill over an outline or a drop shadow) has one blend per layer, and each pixel is under
//! one of them ([`Fit::Layers`]: where two layers overlap, their composite is again one such
//! blend). Which model a region takes is decided by how well each explains it
//! ([`super::check`]).

use super::{HUBER, MAX_OPACITY, MIN_FIT, NOISE, median};

/// Which model of the mark to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fit {
    /// One colour, one opacity.
    Flat,
    /// One opacity, a colour that changes linearly across the mark.
    Gradient,
    /// Up to [`MAX_LAYERS`] blends of their own, each pixel under one.
    Layers,
}

/// The most layers a mark is split into: a fill, its outline or shadow, and where they
/// overlap.
const MAX_LAYERS: usize = 3;
/// A split into one more layer is kept only if the fit's capped squared residuals fall to
/// this share of the split's parent's.
const SPLIT_GAIN: f32 = 0.35;
/// A layer takes at least this share of the pixels fitted.
const MIN_LAYER: f32 = 0.08;
/// A gradient is kept only if the colour it adds across the mark (times the opacity) is this
/// many robust residual scales.
const RAMP_SCALES: f32 = 3.0;

/// A mark's colour and opacity, as fitted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blend {
    /// The colour at `centre`.
    pub(super) colour: [f32; 3],
    /// The colour's change per pixel along x and along y (zero for a flat colour).
    pub(super) ramp: [[f32; 3]; 2],
    /// The mean position of the pixels fitted.
    pub(super) centre: (f32, f32),
    pub(super) opacity: f32,
    /// Standard error of the opacity.
    pub(super) opacity_error: f32,
    /// The weighted mean of the prior over the pixels fitted: the fit's centre.
    pub(super) mean_prior: [f32; 3],
}

impl Blend {
    /// A flat blend of `colour` at `opacity` (the tests' marks).
    #[cfg(test)]
    pub(super) fn flat(colour: [f32; 3], opacity: f32) -> Self {
        Blend {
            colour,
            ramp: [[0.0; 3]; 2],
            centre: (0.0, 0.0),
            opacity,
            opacity_error: 0.0,
            mean_prior: [128.0; 3],
        }
    }

    /// The colour at `(x, y)`.
    pub(super) fn colour_at(&self, (x, y): (f32, f32)) -> [f32; 3] {
        let (dx, dy) = (x - self.centre.0, y - self.centre.1);
        [0, 1, 2].map(|k| {
            (self.colour[k] + self.ramp[0][k] * dx + self.ramp[1][k] * dy).clamp(0.0, 255.0)
        })
    }
}

/// A mark's blends and which one each pixel is under.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) layers: Vec<Blend>,
    /// Per pixel of the image, its layer (all 0 for one layer).
    layer: Vec<u8>,
    width: usize,
}

impl Model {
    /// One blend for every pixel of an image `width` wide with `pixels` pixels.
    pub(super) fn one(blend: Blend, pixels: usize, width: usize) -> Self {
        Model {
            layers: vec![blend],
            layer: vec![0; pixels],
            width,
        }
    }

    /// Pixel `i`'s blend.
    pub(super) fn at(&self, i: usize) -> &Blend {
        &self.layers[self.layer[i] as usize]
    }

    pub(super) fn opacity(&self, i: usize) -> f32 {
        self.at(i).opacity
    }

    /// Pixel `i`'s colour.
    pub(super) fn colour(&self, i: usize) -> [f32; 3] {
        self.at(i).colour_at(self.position(i))
    }

    fn position(&self, i: usize) -> (f32, f32) {
        ((i % self.width) as f32, (i / self.width) as f32)
    }

    /// The photo under observed value `o` at pixel `i` where the mark's alpha is `alpha`.
    pub(super) fn invert(&self, i: usize, o: [f32; 3], alpha: f32) -> [f32; 3] {
        let keep = (1.0 - alpha).max(0.05);
        let colour = self.colour(i);
        [0, 1, 2].map(|k| ((o[k] - alpha * colour[k]) / keep).clamp(0.0, 255.0))
    }

    /// The widest uncertainty of any layer's opacity.
    pub(super) fn opacity_error(&self) -> f32 {
        self.layers.iter().fold(0f32, |m, b| m.max(b.opacity_error))
    }

    /// Fits `fit` on the pixels `at` (observed `obs` over `prior`) and assigns every pixel of
    /// `pixels` to a layer. `None` where the wider model does not explain the pixels clearly
    /// better than the flat one, `base`, does.
    pub(super) fn fit(
        fit: Fit,
        base: &Blend,
        samples: (&[[f32; 3]], &[[f32; 3]], &[usize]),
        (pixels, width, len): (&[usize], usize, usize),
        image: impl Fn(usize) -> ([f32; 3], [f32; 3]),
    ) -> Option<Self> {
        let (prior, obs, at) = samples;
        // The samples' positions, which only the wider models read.
        let located = || -> Vec<(f32, f32)> {
            at.iter()
                .map(|&i| ((i % width) as f32, (i / width) as f32))
                .collect()
        };
        match fit {
            Fit::Flat => Some(Model::one(*base, len, width)),
            Fit::Gradient => {
                let positions = located();
                let ramped = fit_blend(prior, obs, Some(&positions))?;
                let extent = positions
                    .iter()
                    .map(|&(x, y)| {
                        let (dx, dy) = (x - ramped.centre.0, y - ramped.centre.1);
                        (0..3)
                            .map(|k| (ramped.ramp[0][k] * dx + ramped.ramp[1][k] * dy).abs())
                            .fold(0f32, f32::max)
                    })
                    .fold(0f32, f32::max);
                let scale = robust_scale(prior, obs, &positions, &[ramped]);
                (extent * ramped.opacity > RAMP_SCALES * scale)
                    .then(|| Model::one(ramped, len, width))
            }
            Fit::Layers => {
                let layers = fit_layers(prior, obs, &located(), *base)?;
                let mut model = Model {
                    layers,
                    layer: vec![0; len],
                    width,
                };
                for &i in pixels {
                    let (o, p) = image(i);
                    model.layer[i] = model.nearest(i, o, p);
                }
                model.smooth(pixels);
                Some(model)
            }
        }
    }

    /// The layer whose blend, at some alpha up to its opacity, comes nearest to `o` from `p`.
    fn nearest(&self, i: usize, o: [f32; 3], p: [f32; 3]) -> u8 {
        let at = self.position(i);
        let mut best = (f32::MAX, 0);
        for (n, blend) in self.layers.iter().enumerate() {
            let d = segment_distance(o, p, blend.colour_at(at), blend.opacity);
            if d < best.0 {
                best = (d, n as u8);
            }
        }
        best.1
    }

    /// Two passes of a 3x3 majority among the masked `pixels`: a lone pixel takes its
    /// neighbours' layer.
    fn smooth(&mut self, pixels: &[usize]) {
        let w = self.width;
        let h = self.layer.len() / w;
        let mut masked = vec![false; self.layer.len()];
        for &i in pixels {
            masked[i] = true;
        }
        for _ in 0..2 {
            let next: Vec<(usize, u8)> = pixels
                .iter()
                .map(|&i| {
                    let (x, y) = (i % w, i / w);
                    let mut votes = [0u8; MAX_LAYERS];
                    for ny in y.saturating_sub(1)..(y + 2).min(h) {
                        for nx in x.saturating_sub(1)..(x + 2).min(w) {
                            let j = ny * w + nx;
                            if masked[j] {
                                votes[self.layer[j] as usize] += 1;
                            }
                        }
                    }
                    let own = self.layer[i];
                    let (top, count) = votes
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, v)| **v)
                        .map_or((own, 0), |(n, v)| (n as u8, *v));
                    (
                        i,
                        if count > votes[own as usize] + 1 {
                            top
                        } else {
                            own
                        },
                    )
                })
                .collect();
            for (i, l) in next {
                self.layer[i] = l;
            }
        }
    }
}

/// The distance from `o` to the segment from `p` towards `colour`, up to `opacity` of the way.
fn segment_distance(o: [f32; 3], p: [f32; 3], colour: [f32; 3], opacity: f32) -> f32 {
    let d: [f32; 3] = [0, 1, 2].map(|k| colour[k] - p[k]);
    let length = d.iter().map(|v| v * v).sum::<f32>();
    let t = if length < 1.0 {
        0.0
    } else {
        ((0..3).map(|k| (o[k] - p[k]) * d[k]).sum::<f32>() / length).clamp(0.0, opacity)
    };
    (0..3)
        .map(|k| (o[k] - p[k] - t * d[k]).powi(2))
        .sum::<f32>()
}

/// Each sample's residual under the blend (of `blends`) that explains it best.
fn residuals(
    prior: &[[f32; 3]],
    obs: &[[f32; 3]],
    positions: &[(f32, f32)],
    blends: &[Blend],
) -> Vec<(f32, usize)> {
    prior
        .iter()
        .zip(obs)
        .zip(positions)
        .map(|((p, o), &at)| {
            blends
                .iter()
                .enumerate()
                .map(|(n, b)| {
                    let c = b.colour_at(at);
                    let r = (0..3)
                        .map(|k| (o[k] - (1.0 - b.opacity) * p[k] - b.opacity * c[k]).powi(2))
                        .sum::<f32>()
                        .sqrt();
                    (r, n)
                })
                .fold((f32::MAX, 0), |best, r| if r.0 < best.0 { r } else { best })
        })
        .collect()
}

fn robust_scale(
    prior: &[[f32; 3]],
    obs: &[[f32; 3]],
    positions: &[(f32, f32)],
    blends: &[Blend],
) -> f32 {
    let r = residuals(prior, obs, positions, blends);
    1.4826 * median(r.into_iter().map(|(r, _)| r).collect()) + 1e-3
}

/// Splits the mark into layers while a split explains the samples clearly better: the
/// layer whose samples fit worst gives its outliers to a new blend, then samples and blends
/// are matched again (a few rounds of k-lines). `None` when no split is kept.
fn fit_layers(
    prior: &[[f32; 3]],
    obs: &[[f32; 3]],
    positions: &[(f32, f32)],
    base: Blend,
) -> Option<Vec<Blend>> {
    let n = prior.len();
    // The observation's own noise (over three channels) is a floor no split goes below.
    let floor = 3.0 * NOISE * NOISE;
    let cap = 3.0 * robust_scale(prior, obs, positions, &[base]).max(floor.sqrt());
    let cost = |blends: &[Blend]| {
        residuals(prior, obs, positions, blends)
            .iter()
            .map(|(r, _)| r.min(cap).powi(2) + floor)
            .sum::<f32>()
    };
    let mut blends = vec![base];
    let mut best = cost(&blends);
    while blends.len() < MAX_LAYERS {
        // The new layer starts from the samples that fit worst: the last third by residual
        // (a robust fit over two layers may be a compromise, with few clear outliers).
        let assigned = residuals(prior, obs, positions, &blends);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| assigned[b].0.total_cmp(&assigned[a].0));
        let outliers = &order[..n / 3];
        if (outliers.len() as f32) < (MIN_LAYER * n as f32).max(MIN_FIT as f32) {
            break;
        }
        let pick = |set: &[usize], v: &[[f32; 3]]| set.iter().map(|&k| v[k]).collect::<Vec<_>>();
        let Some(new) = fit_blend(&pick(outliers, prior), &pick(outliers, obs), None) else {
            break;
        };
        let mut trial = blends.clone();
        trial.push(new);
        // Match samples to blends and refit each, a few rounds.
        for _ in 0..4 {
            let assigned = residuals(prior, obs, positions, &trial);
            let mut next = Vec::new();
            for layer in 0..trial.len() {
                let set: Vec<usize> = (0..n).filter(|&k| assigned[k].1 == layer).collect();
                if (set.len() as f32) < (MIN_LAYER * n as f32).max(MIN_FIT as f32) {
                    continue;
                }
                if let Some(b) = fit_blend(&pick(&set, prior), &pick(&set, obs), None) {
                    next.push(b);
                }
            }
            if next.len() < trial.len() {
                break;
            }
            trial = next;
        }
        let trial_cost = cost(&trial);
        if trial.len() <= blends.len() || trial_cost > SPLIT_GAIN * best {
            break;
        }
        (blends, best) = (trial, trial_cost);
    }
    (blends.len() > 1).then_some(blends)
}

/// Fits `obs = s * prior + c` (one slope for the three channels, one offset each; with
/// `positions`, an offset that changes linearly with the position) by iteratively reweighted
/// least squares with Huber weights; the opacity is `1 - s` and the colour `c / opacity`.
/// `None` when the prior does not vary at all.
///
/// With positions the slope is fitted on what the position does not explain (the prior and
/// the observation each less its own linear trend across the mark, per channel), so that a
/// trend in the photo is not taken for one in the colour's.
pub(super) fn fit_blend(
    prior: &[[f32; 3]],
    obs: &[[f32; 3]],
    positions: Option<&[(f32, f32)]>,
) -> Option<Blend> {
    let mut weights = vec![1f32; prior.len()];
    let mut slope = 1f32;
    let mut error = 1f32;
    let mut centre = [0f32; 3];
    let mut planes = [[0f32; 3]; 3];
    let mut middle = (0f32, 0f32);
    for _ in 0..6 {
        let total: f32 = weights.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let plane = Plane::new(positions, &weights);
        middle = plane.centre;
        centre = [0, 1, 2].map(|k| {
            prior
                .iter()
                .zip(&weights)
                .map(|(p, w)| w * p[k])
                .sum::<f32>()
                / total
        });
        let (mut cov, mut var) = (0f32, 0f32);
        for k in 0..3 {
            let pp = plane.fit(|s| prior[s][k]);
            let op = plane.fit(|s| obs[s][k]);
            for s in 0..prior.len() {
                let (dp, dobs) = (prior[s][k] - plane.at(pp, s), obs[s][k] - plane.at(op, s));
                cov += weights[s] * dp * dobs;
                var += weights[s] * dp * dp;
            }
        }
        if var < 1e-3 {
            return None;
        }
        slope = cov / var;
        planes = [0, 1, 2].map(|k| plane.fit(|s| obs[s][k] - slope * prior[s][k]));
        let residuals: Vec<f32> = (0..prior.len())
            .map(|s| {
                (0..3)
                    .map(|k| (obs[s][k] - slope * prior[s][k] - plane.at(planes[k], s)).powi(2))
                    .sum::<f32>()
                    .sqrt()
            })
            .collect();
        let scale = 1.4826 * median(residuals.clone()) + 1e-3;
        for (w, r) in weights.iter_mut().zip(&residuals) {
            *w = (HUBER * scale / r.max(1e-9)).min(1.0);
        }
        error = scale / var.sqrt();
    }
    let opacity = (1.0 - slope).clamp(0.0, MAX_OPACITY);
    let per = opacity.max(1e-3);
    let colour = [0, 1, 2].map(|k| (planes[k][0] / per).clamp(0.0, 255.0));
    let ramp = [1, 2].map(|d| [0, 1, 2].map(|k| planes[k][d] / per));
    Some(Blend {
        colour,
        ramp,
        centre: middle,
        opacity,
        opacity_error: error,
        mean_prior: centre,
    })
}

/// Weighted least squares on `[1, x - cx, y - cy]` over the samples' positions (on `[1]`
/// alone without positions): a value's level at the centre and its slopes.
struct Plane<'a> {
    positions: Option<&'a [(f32, f32)]>,
    weights: &'a [f32],
    centre: (f32, f32),
    /// The inverse of the weighted second moments of the centred positions.
    inverse: [[f32; 2]; 2],
    total: f32,
}

impl<'a> Plane<'a> {
    fn new(positions: Option<&'a [(f32, f32)]>, weights: &'a [f32]) -> Self {
        let total: f32 = weights.iter().sum();
        let mut plane = Plane {
            positions,
            weights,
            centre: (0.0, 0.0),
            inverse: [[0.0; 2]; 2],
            total,
        };
        let Some(pos) = positions else {
            return plane;
        };
        let cx = pos.iter().zip(weights).map(|(p, w)| w * p.0).sum::<f32>() / total;
        let cy = pos.iter().zip(weights).map(|(p, w)| w * p.1).sum::<f32>() / total;
        let (mut sxx, mut sxy, mut syy) = (0f32, 0f32, 0f32);
        for (p, w) in pos.iter().zip(weights) {
            let (dx, dy) = (p.0 - cx, p.1 - cy);
            sxx += w * dx * dx;
            sxy += w * dx * dy;
            syy += w * dy * dy;
        }
        let det = sxx * syy - sxy * sxy;
        plane.centre = (cx, cy);
        if det > 1e-6 * (sxx + syy).powi(2).max(1e-9) {
            plane.inverse = [[syy / det, -sxy / det], [-sxy / det, sxx / det]];
        }
        plane
    }

    /// The fit of the samples' values `v`: `[level, slope along x, slope along y]`.
    fn fit(&self, v: impl Fn(usize) -> f32) -> [f32; 3] {
        let n = self.weights.len();
        let level = (0..n).map(|s| self.weights[s] * v(s)).sum::<f32>() / self.total;
        let Some(pos) = self.positions else {
            return [level, 0.0, 0.0];
        };
        let (mut bx, mut by) = (0f32, 0f32);
        for (s, (w, p)) in self.weights.iter().zip(pos).enumerate() {
            let r = w * (v(s) - level);
            bx += r * (p.0 - self.centre.0);
            by += r * (p.1 - self.centre.1);
        }
        let m = self.inverse;
        [
            level,
            m[0][0] * bx + m[0][1] * by,
            m[1][0] * bx + m[1][1] * by,
        ]
    }

    /// Sample `s`'s value under `plane`.
    fn at(&self, plane: [f32; 3], s: usize) -> f32 {
        match self.positions {
            Some(pos) => {
                plane[0]
                    + plane[1] * (pos[s].0 - self.centre.0)
                    + plane[2] * (pos[s].1 - self.centre.1)
            }
            None => plane[0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Priors, observations and positions.
    type Samples = (Vec<[f32; 3]>, Vec<[f32; 3]>, Vec<(f32, f32)>);

    /// Samples of a photo that varies, under `colour_at` at `opacity`.
    fn samples(opacity: f32, colour_at: impl Fn(f32, f32) -> [f32; 3]) -> Samples {
        let (mut prior, mut obs, mut pos) = (Vec::new(), Vec::new(), Vec::new());
        for y in 0..20 {
            for x in 0..30 {
                let (fx, fy) = (x as f32, y as f32);
                let p = [
                    120.0 + 60.0 * (fx * 0.7).sin(),
                    100.0 + 50.0 * (fy * 0.9 + fx * 0.3).cos(),
                    90.0 + 40.0 * (fx * 0.4 - fy * 0.5).sin(),
                ];
                let c = colour_at(fx, fy);
                prior.push(p);
                obs.push([0, 1, 2].map(|k| (1.0 - opacity) * p[k] + opacity * c[k]));
                pos.push((fx, fy));
            }
        }
        (prior, obs, pos)
    }

    #[test]
    fn a_gradient_is_fitted_with_its_ramp() {
        let colour = |x: f32, _: f32| [255.0 - 6.0 * x, 200.0, 20.0 + 7.0 * x];
        let (prior, obs, pos) = samples(0.4, colour);
        let flat = fit_blend(&prior, &obs, None).expect("fit");
        let ramped = fit_blend(&prior, &obs, Some(&pos)).expect("fit");
        assert!((ramped.opacity - 0.4).abs() < 0.01, "{ramped:?}");
        for (x, y) in [(0.0, 0.0), (15.0, 10.0), (29.0, 19.0)] {
            let (got, want) = (ramped.colour_at((x, y)), colour(x, y));
            for k in 0..3 {
                assert!((got[k] - want[k]).abs() < 2.0, "{got:?} {want:?}");
            }
        }
        // The flat fit cannot explain it: its opacity is off.
        assert!((flat.opacity - 0.4).abs() > 0.02 || flat.ramp == [[0.0; 3]; 2]);
    }

    #[test]
    fn two_layers_are_found_and_one_is_not_split() {
        // The left third under black at 0.7, the rest under white at 0.4.
        let (p1, o1, pos1) = samples(0.7, |_, _| [0.0; 3]);
        let (_, o2, _) = samples(0.4, |_, _| [255.0; 3]);
        let obs: Vec<[f32; 3]> = (0..p1.len())
            .map(|s| if pos1[s].0 < 10.0 { o1[s] } else { o2[s] })
            .collect();
        let base = fit_blend(&p1, &obs, None).expect("fit");
        let layers = fit_layers(&p1, &obs, &pos1, base).expect("two layers");
        assert_eq!(layers.len(), 2);
        let mut found: Vec<(f32, f32)> = layers.iter().map(|b| (b.opacity, b.colour[0])).collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            (found[0].0 - 0.4).abs() < 0.02 && found[0].1 > 250.0,
            "{found:?}"
        );
        assert!(
            (found[1].0 - 0.7).abs() < 0.02 && found[1].1 < 5.0,
            "{found:?}"
        );
        let base = fit_blend(&p1, &o2, None).expect("fit");
        assert!(fit_layers(&p1, &o2, &pos1, base).is_none());
    }
}
