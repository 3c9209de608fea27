//! The measurements a restoration is judged by ([`super::choose`]), all taken on the image
//! at hand.
//!
//! - [`trace`]: a right inversion gives back the photo, and the photo under a mark looks like
//!   the photo around it. Its pixels differ from their unmasked neighbours across the mask's
//!   edge, and from each other inside it, about as much as neighbouring pixels of the photo
//!   differ outside it, plus the observation's noise as the inversion scales it. A wrong
//!   colour or opacity leaves the mark's trace: a step between inside and outside, or between
//!   parts of the mark the model treats alike (two layers fitted as one, a gradient fitted
//!   flat), or texture amplified too much. The excess of those squared differences over the
//!   photo's own is a lower bound on the restoration's error.
//! - [`noise`]: the observation's noise, on the photo around the mask.
//! - [`ring_fill_error`] and [`Structure`]: how far the fill errs, tried on the ring of
//!   photo around each region, and how the photo's changes grow with distance.

use super::super::regions::label;
use super::{mean_square, rgb};
use crate::{Mask, Raster};

/// Parts of a mask this close (chessboard px) are judged together, as one region: the
/// letters of a word, a logo and its wordmark.
const GROUP: usize = 3;

/// The mask's regions: each pixel within [`GROUP`] of the mask carries its region's number
/// (1 on), every other pixel 0.
pub(super) struct Regions {
    pub(super) of: Vec<u32>,
    pub(super) count: usize,
    /// Each pixel's chessboard distance from the mask (0 inside it).
    away: Vec<f32>,
    /// The rows and columns the regions span: `(x0, y0, x1, y1)`, ends excluded.
    span: (usize, usize, usize, usize),
}

impl Regions {
    pub(super) fn of(mask: &Mask) -> Self {
        let outside = Mask {
            width: mask.width,
            height: mask.height,
            data: mask.data.iter().map(|&m| u8::from(m == 0)).collect(),
        };
        let away = super::chamfer(&outside, 1.0);
        let (of, count) = label(&grown(mask, &away, GROUP));
        let w = mask.width as usize;
        let mut span = (usize::MAX, usize::MAX, 0, 0);
        for (i, _) in of.iter().enumerate().filter(|(_, r)| **r != 0) {
            let (x, y) = (i % w, i / w);
            span = (
                span.0.min(x),
                span.1.min(y),
                span.2.max(x + 1),
                span.3.max(y + 1),
            );
        }
        if count == 0 {
            span = (0, 0, 0, 0);
        }
        Regions {
            of,
            count,
            away,
            span,
        }
    }

    /// The pixels of the regions' span, row by row: `(index, x, y)`.
    fn pixels(&self, width: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let (x0, y0, x1, y1) = self.span;
        (y0..y1).flat_map(move |y| (x0..x1).map(move |x| (y * width + x, x, y)))
    }
}

/// `mask` grown by `by` px (chessboard), given each pixel's distance from it.
fn grown(mask: &Mask, away: &[f32], by: usize) -> Mask {
    Mask {
        width: mask.width,
        height: mask.height,
        data: away.iter().map(|&d| u8::from(d <= by as f32)).collect(),
    }
}

/// The observation's noise variance (levels squared, mean over channels), measured on the
/// photo around the mask: each unmasked pixel near it (within [`GROUP`]) whose 4 neighbours
/// are unmasked too, less their mean. For white noise of variance `v` that residual's square,
/// averaged over three channels, has a mean of `1.25 v` and a tenth percentile of 0.195 of
/// that; the tenth percentile keeps edges and texture out. At least the 8-bit quantisation's
/// `1 / 12`.
pub(super) fn noise(image: &Raster, mask: &Mask, regions: &Regions) -> f32 {
    let (w, h) = (mask.width as usize, mask.height as usize);
    let mut squares = Vec::new();
    for (i, x, y) in regions.pixels(w) {
        if x == 0 || y == 0 || x + 1 >= w || y + 1 >= h {
            continue;
        }
        let around = [i - 1, i + 1, i - w, i + w];
        if regions.of[i] == 0 || mask.data[i] != 0 || around.iter().any(|&j| mask.data[j] != 0) {
            continue;
        }
        let p = rgb(image, i);
        let mean = [0, 1, 2].map(|k| around.iter().map(|&j| rgb(image, j)[k]).sum::<f32>() / 4.0);
        squares.push(mean_square(p, mean));
    }
    if squares.is_empty() {
        return 1.0 / 12.0;
    }
    let low = squares.len() / 10;
    (*squares.select_nth_unstable_by(low, f32::total_cmp).1 / (0.195 * 1.25)).max(1.0 / 12.0)
}

/// How far the ring of photo the fill is tried on reaches out from the mask (px,
/// chessboard).
pub(super) const RING: usize = 4;

/// The fill's error on the photo right around each region, by depth (levels squared, mean
/// over channels; index 0 unused): the mask grown by [`RING`] px is filled (`fill`), and the
/// ring of known photo it covered is compared with what is there, each pixel at its depth in
/// the grown mask (`k` for the pixels `RING + 1 - k` from the mask, `k` in 1..=`RING`, in
/// slot `k - 1`). The photo next to a mark is like the photo under it, and the ring's shape
/// follows the mask's: how the fill's error grows with depth there is how it grows inside.
pub(super) fn ring_fill_error(
    image: &Raster,
    mask: &Mask,
    regions: &Regions,
    fill: impl Fn(&Mask) -> Raster,
) -> Vec<[f32; RING]> {
    let ring = grown(mask, &regions.away, RING);
    let filled = fill(&ring);
    let mut sums = vec![[Sum::default(); RING]; regions.count + 1];
    for i in (0..mask.data.len()).filter(|&i| ring.data[i] != 0 && mask.data[i] == 0) {
        let away = (regions.away[i] as usize).clamp(1, RING);
        sums[regions.of[i] as usize][RING - away].add(mean_square(rgb(&filled, i), rgb(image, i)));
    }
    sums.into_iter()
        .map(|depths| {
            let measured = depths.map(Sum::mean);
            // A depth with no pixel takes the one before it (or the first measured).
            let mut last = measured.iter().flatten().next().copied().unwrap_or(0.0);
            measured.map(|m| {
                last = m.unwrap_or(last).max(last);
                last
            })
        })
        .collect()
}

/// The distances (px) the photo's structure function is measured at.
const REACH: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// The photo's structure function around the mask: per distance of [`REACH`], the mean
/// squared difference (mean over channels) between unmasked pixels that far apart, across
/// and down, the first of them within [`GROUP`] of the mask. A fill drawn from the photo at a
/// masked pixel's depth errs about that much, or less where it averages many.
pub(super) struct Structure([f32; REACH.len()]);

impl Structure {
    pub(super) fn of(image: &Raster, mask: &Mask, regions: &Regions) -> Self {
        let (w, h) = (mask.width as usize, mask.height as usize);
        let mut sums = [Sum::default(); REACH.len()];
        let around = regions
            .pixels(w)
            .filter(|&(i, _, _)| regions.of[i] != 0 && mask.data[i] == 0);
        for (i, x, y) in around {
            for (k, &d) in REACH.iter().enumerate() {
                for j in [(x + d < w).then(|| i + d), (y + d < h).then(|| i + d * w)]
                    .into_iter()
                    .flatten()
                    .filter(|&j| mask.data[j] == 0)
                {
                    sums[k].add(mean_square(rgb(image, i), rgb(image, j)));
                }
            }
        }
        let mut last = 0f32;
        Structure(sums.map(|s| {
            last = s.mean().map_or(last, |m| m.max(last));
            last
        }))
    }

    /// The structure function at `distance`, interpolated between the measured distances.
    pub(super) fn at(&self, distance: f32) -> f32 {
        let k = REACH.iter().take_while(|&&d| (d as f32) < distance).count();
        if k == 0 {
            return self.0[0];
        }
        if k == REACH.len() {
            return self.0[k - 1];
        }
        let (d0, d1) = (REACH[k - 1] as f32, REACH[k] as f32);
        let t = (distance - d0) / (d1 - d0);
        self.0[k - 1] + t * (self.0[k] - self.0[k - 1])
    }
}

/// A sum of squared differences and how many were added.
#[derive(Clone, Copy, Default)]
struct Sum {
    total: f32,
    pairs: f32,
}

impl Sum {
    fn add(&mut self, v: f32) {
        self.total += v;
        self.pairs += 1.0;
    }

    fn mean(self) -> Option<f32> {
        (self.pairs > 0.0).then(|| self.total / self.pairs)
    }

    fn merge(self, other: Sum) -> Sum {
        Sum {
            total: self.total + other.total,
            pairs: self.pairs + other.pairs,
        }
    }
}

/// The fewest pairs of pixels of the photo a region's reference is taken from; a region with
/// fewer takes the reference of all regions.
const MIN_PAIRS: f32 = 24.0;

/// Per region of `regions` (index 0 unused), the trace `restored` (the whole image, the
/// mask's pixels restored) leaves: the excess (levels squared, mean over channels) of the
/// squared differences between neighbouring pixels across the mask's edge and inside it over
/// the photo's own, measured on the unmasked pixels of `image` around it. `gain[i]` is how
/// much the restoration scales pixel `i`'s observation noise (1 outside the mask), `noise`
/// the observation's noise variance.
pub(super) fn trace(
    image: &Raster,
    mask: &Mask,
    regions: &Regions,
    restored: &Raster,
    gain: &[f32],
    noise: f32,
) -> Vec<f32> {
    let (w, h) = (mask.width as usize, mask.height as usize);
    let n = regions.count + 1;
    let mut photo = vec![[Sum::default(); 2]; n];
    let mut seam = vec![[Sum::default(); 2]; n];
    let mut inside = vec![Sum::default(); n];
    for (i, x, y) in regions.pixels(w) {
        let r = regions.of[i] as usize;
        if r == 0 {
            continue;
        }
        for (step, far) in [(1, 0), (2, 1)] {
            for j in [
                (x + step < w).then(|| i + step),
                (y + step < h).then(|| i + step * w),
            ]
            .into_iter()
            .flatten()
            {
                if regions.of[j] as usize != r {
                    continue;
                }
                let (mi, mj) = (mask.data[i] != 0, mask.data[j] != 0);
                let d = mean_square(rgb(restored, i), rgb(restored, j));
                match (mi, mj) {
                    (false, false) => photo[r][far].add(mean_square(rgb(image, i), rgb(image, j))),
                    (true, true) if far == 0 => {
                        inside[r].add(d - noise * (gain[i] * gain[i] + gain[j] * gain[j] - 2.0));
                    }
                    (true, true) => {}
                    _ => {
                        let g = if mi { gain[i] } else { gain[j] };
                        seam[r][far].add(d - noise * (g * g - 1.0));
                    }
                }
            }
        }
    }
    let pooled = [0, 1].map(|far| photo.iter().fold(Sum::default(), |s, p| s.merge(p[far])));
    (0..n)
        .map(|r| {
            let reference = |far: usize| {
                let own = photo[r][far];
                let pick = if own.pairs >= MIN_PAIRS {
                    own
                } else {
                    pooled[far]
                };
                pick.mean().unwrap_or(0.0)
            };
            let edge = (0..2)
                .filter_map(|far| Some(seam[r][far].mean()? - reference(far)))
                .fold(0f32, f32::max);
            let within = inside[r]
                .mean()
                .map_or(0.0, |m| (m - reference(0)).max(0.0) / 2.0);
            edge + within
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(w: u32, h: u32, at: (u32, u32), side: u32) -> Mask {
        let mut mask = Mask::new(w, h);
        for y in at.1..at.1 + side {
            for x in at.0..at.0 + side {
                mask.set(x, y, true);
            }
        }
        mask
    }

    #[test]
    fn parts_close_together_are_one_region() {
        let (w, h) = (80, 30);
        let mut mask = square(w, h, (5, 5), 8);
        for y in 5..13 {
            for x in 50..58 {
                mask.set(x, y, true);
            }
        }
        mask.set(15, 8, true);
        let regions = Regions::of(&mask);
        assert_eq!(regions.count, 2);
        assert_eq!(
            regions.of[8 * w as usize + 15],
            regions.of[8 * w as usize + 6]
        );
    }

    #[test]
    fn the_noise_is_measured_around_the_mask() {
        let (w, h) = (60u32, 40u32);
        let mut rng = crate::synth::Rng::new(3);
        let mut image = Raster::filled(w, h, 3, 0);
        for v in image.data.iter_mut() {
            // Uniform on -3..=3 about 120: variance 4.
            *v = (117 + rng.next_u64() % 7) as u8;
        }
        let mask = square(w, h, (20, 15), 10);
        let noise = noise(&image, &mask, &Regions::of(&mask));
        assert!((3.0..5.5).contains(&noise), "{noise}");
        let flat = Raster::filled(w, h, 3, 90);
        assert_eq!(super::noise(&flat, &mask, &Regions::of(&mask)), 1.0 / 12.0);
    }
}
