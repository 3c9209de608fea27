//! Linear-time filters over `f32` planes: box means, min/max (erosion, dilation) and a
//! Gaussian, all separable with running sums or monotone queues, so their cost does not grow
//! with the radius. Borders use the part of the window inside the image.

use std::collections::VecDeque;

/// A single-channel image of `f32` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Samples, rows top to bottom.
    pub data: Vec<f32>,
}

impl Plane {
    /// A plane of `f(x, y)` at every pixel.
    pub fn from_fn(width: usize, height: usize, f: impl Fn(usize, usize) -> f32) -> Self {
        let data = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Self::new(width, height, data)
    }

    /// A plane from samples.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), width * height);
        Self {
            width,
            height,
            data,
        }
    }

    /// The plane of `channel` of interleaved 8-bit pixels, scaled to 0..1.
    pub fn from_u8(
        width: usize,
        height: usize,
        data: &[u8],
        channels: usize,
        channel: usize,
    ) -> Self {
        let data = data
            .chunks_exact(channels)
            .map(|p| f32::from(p[channel]) / 255.0)
            .collect();
        Self::new(width, height, data)
    }

    /// Samples back to 0..255, rounded and clamped.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|&v| to_u8(v)).collect()
    }

    /// A plane of the same size with `f` applied to each pair of samples.
    pub fn zip(&self, other: &Plane, f: impl Fn(f32, f32) -> f32) -> Plane {
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| f(a, b))
            .collect();
        Plane::new(self.width, self.height, data)
    }

    /// A plane of the same size with `f` applied to each sample.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Plane {
        Plane::new(
            self.width,
            self.height,
            self.data.iter().map(|&v| f(v)).collect(),
        )
    }
}

/// 0..1 to 0..255, rounded and clamped.
pub fn to_u8(v: f32) -> u8 {
    (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// Applies `line` to every row, then to every column.
fn separable(p: &Plane, line: impl Fn(&[f32], &mut [f32])) -> Plane {
    let (w, h) = (p.width, p.height);
    let mut rows = vec![0.0; w * h];
    for (src, dst) in p.data.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
        line(src, dst);
    }
    let mut out = vec![0.0; w * h];
    let (mut col, mut res) = (vec![0.0; h], vec![0.0; h]);
    for x in 0..w {
        for y in 0..h {
            col[y] = rows[y * w + x];
        }
        line(&col, &mut res);
        for y in 0..h {
            out[y * w + x] = res[y];
        }
    }
    Plane::new(w, h, out)
}

/// Mean over the `(2r+1)^2` window around each sample.
pub fn box_mean(p: &Plane, r: usize) -> Plane {
    separable(p, |src, dst| {
        let n = src.len();
        let mut prefix = vec![0.0f64; n + 1];
        for (i, &v) in src.iter().enumerate() {
            prefix[i + 1] = prefix[i] + f64::from(v);
        }
        for (i, d) in dst.iter_mut().enumerate() {
            let lo = i.saturating_sub(r);
            let hi = (i + r + 1).min(n);
            *d = ((prefix[hi] - prefix[lo]) / (hi - lo) as f64) as f32;
        }
    })
}

/// Minimum (`max == false`) or maximum over the `(2r+1)^2` window: erosion or dilation with
/// a square.
pub fn extremum(p: &Plane, r: usize, max: bool) -> Plane {
    let better = move |a: f32, b: f32| if max { a >= b } else { a <= b };
    separable(p, |src, dst| {
        let n = src.len();
        let mut q: VecDeque<usize> = VecDeque::new();
        let mut next = 0;
        for (i, d) in dst.iter_mut().enumerate() {
            let hi = (i + r + 1).min(n);
            while next < hi {
                while q.back().is_some_and(|&j| better(src[next], src[j])) {
                    q.pop_back();
                }
                q.push_back(next);
                next += 1;
            }
            while q.front().is_some_and(|&j| j + r < i) {
                q.pop_front();
            }
            *d = q.front().map_or(0.0, |&j| src[j]);
        }
    })
}

/// A Gaussian blur with `sigma`, over `2 * half + 1` taps, borders reflected (OpenCV's
/// `BORDER_DEFAULT`).
pub fn gaussian(p: &Plane, half: usize, sigma: f32) -> Plane {
    let taps: Vec<f32> = (0..=2 * half)
        .map(|i| {
            let d = i as f32 - half as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = taps.iter().sum();
    let taps: Vec<f32> = taps.iter().map(|t| t / total).collect();
    separable(p, |src, dst| {
        let n = src.len() as isize;
        for (i, d) in dst.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (k, &t) in taps.iter().enumerate() {
                let mut j = i as isize + k as isize - half as isize;
                // reflect-101: -1 -> 1, n -> n - 2
                if j < 0 {
                    j = -j;
                }
                if j >= n {
                    j = 2 * (n - 1) - j;
                }
                acc += t * src[j.clamp(0, n - 1) as usize];
            }
            *d = acc;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Plane {
        Plane::from_fn(w, h, f)
    }

    #[test]
    fn box_mean_matches_a_direct_sum() {
        let p = plane(7, 5, |x, y| (x * 3 + y * 5 % 7) as f32);
        let m = box_mean(&p, 2);
        for y in 0..5usize {
            for x in 0..7usize {
                let (mut s, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(2)..(y + 3).min(5) {
                    for xx in x.saturating_sub(2)..(x + 3).min(7) {
                        s += p.data[yy * 7 + xx];
                        n += 1.0;
                    }
                }
                assert!((m.data[y * 7 + x] - s / n).abs() < 1e-4, "({x},{y})");
            }
        }
    }

    #[test]
    fn erosion_and_dilation_match_a_direct_window() {
        let p = plane(9, 6, |x, y| ((x * 7 + y * 13) % 11) as f32);
        for max in [false, true] {
            let e = extremum(&p, 1, max);
            for y in 0..6usize {
                for x in 0..9usize {
                    let mut best = if max { f32::MIN } else { f32::MAX };
                    for yy in y.saturating_sub(1)..(y + 2).min(6) {
                        for xx in x.saturating_sub(1)..(x + 2).min(9) {
                            let v = p.data[yy * 9 + xx];
                            best = if max { best.max(v) } else { best.min(v) };
                        }
                    }
                    assert_eq!(e.data[y * 9 + x], best, "max={max} ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn gaussian_keeps_flat_planes_flat_and_sums_to_one() {
        let flat = plane(6, 6, |_, _| 0.25);
        assert!(
            gaussian(&flat, 2, 2.0)
                .data
                .iter()
                .all(|v| (v - 0.25).abs() < 1e-6)
        );
        let dot = plane(11, 11, |x, y| if (x, y) == (5, 5) { 1.0 } else { 0.0 });
        let g = gaussian(&dot, 2, 2.0);
        assert!((g.data.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(g.data[5 * 11 + 5] > g.data[5 * 11 + 6]);
    }
}
