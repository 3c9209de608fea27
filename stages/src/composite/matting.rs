//! Alpha refinement and foreground colours.
//!
//! - [`post_process`]: rembg's `post_process_mask` (opening with a 3x3 cross, 5x5 Gaussian
//!   with sigma 2, threshold at 127).
//! - [`refine_alpha`]: rembg's `alpha_matting` trimap (sure foreground above `af`, sure
//!   background below `ab`, both eroded by `ae`), with the uncertain band solved by a guided
//!   filter (He et al., 2013) on the photo's luma: linear in the pixel count, where rembg's
//!   closed-form matting solves a sparse system that takes minutes at 2000 px.
//! - [`estimate_foreground`]: the subject's own colour where it is semi-transparent, by blur
//!   fusion (Forte and Pitié, 2021): `F = F̄ + α (I - α F̄ - (1 - α) B̄)`, where `F̄` and `B̄`
//!   are alpha-weighted local means, run at a wide then a narrow radius.

use super::filters::{Plane, box_mean, extremum, gaussian};

/// rembg's `post_process_mask`: a hard mask with clean edges.
pub fn post_process(alpha: &Plane) -> Plane {
    // Opening with OpenCV's 3x3 ellipse, which is a cross: erosion then dilation, each the
    // extremum over the pixel and its four neighbours.
    let cross = |p: &Plane, max: bool| {
        let (w, h) = (p.width, p.height);
        let mut out = p.data.clone();
        for y in 0..h {
            for x in 0..w {
                let mut v = p.data[y * w + x];
                let mut take = |u: f32| v = if max { v.max(u) } else { v.min(u) };
                if x > 0 {
                    take(p.data[y * w + x - 1]);
                }
                if x + 1 < w {
                    take(p.data[y * w + x + 1]);
                }
                if y > 0 {
                    take(p.data[(y - 1) * w + x]);
                }
                if y + 1 < h {
                    take(p.data[(y + 1) * w + x]);
                }
                out[y * w + x] = v;
            }
        }
        Plane::new(w, h, out)
    };
    let opened = cross(&cross(alpha, false), true);
    gaussian(&opened, 2, 2.0).map(|v| if v * 255.0 < 127.0 { 0.0 } else { 1.0 })
}

/// The photo's luma, 0..1, from interleaved RGB(A).
pub fn luma(rgb: &[u8], width: usize, height: usize, channels: usize) -> Plane {
    let data = rgb
        .chunks_exact(channels)
        .map(|p| {
            (0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])) / 255.0
        })
        .collect();
    Plane::new(width, height, data)
}

/// The trimap thresholds of rembg's alpha matting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trimap {
    /// Alpha at or above this (0..255) is sure foreground.
    pub foreground: u8,
    /// Alpha at or below this (0..255) is sure background.
    pub background: u8,
    /// The sure regions are eroded by a square of this side.
    pub erode: usize,
}

/// The guided filter of `p` with guide `guide`, radius `r`, regularisation `eps`.
pub fn guided_filter(guide: &Plane, p: &Plane, r: usize, eps: f32) -> Plane {
    let mean_i = box_mean(guide, r);
    let mean_p = box_mean(p, r);
    let corr_ip = box_mean(&guide.zip(p, |a, b| a * b), r);
    let corr_ii = box_mean(&guide.map(|a| a * a), r);
    let var_i = corr_ii.zip(&mean_i, |c, m| c - m * m);
    let cov_ip = corr_ip.zip(&mean_i.zip(&mean_p, |a, b| a * b), |c, m| c - m);
    let a = cov_ip.zip(&var_i, |c, v| c / (v + eps));
    let b = mean_p.zip(&a.zip(&mean_i, |a, m| a * m), |m, am| m - am);
    let (mean_a, mean_b) = (box_mean(&a, r), box_mean(&b, r));
    let q = mean_a.zip(guide, |a, i| a * i);
    q.zip(&mean_b, |q, b| q + b)
}

/// rembg's alpha matting: sure regions from the trimap keep 0 or 1, the band between gets
/// the guided filter's alpha.
pub fn refine_alpha(alpha: &Plane, guide: &Plane, trimap: Trimap) -> Plane {
    let fg = alpha.map(|a| {
        if a * 255.0 >= f32::from(trimap.foreground) {
            1.0
        } else {
            0.0
        }
    });
    let bg = alpha.map(|a| {
        if a * 255.0 <= f32::from(trimap.background) {
            1.0
        } else {
            0.0
        }
    });
    // A square of side `erode` is a window of radius erode / 2.
    let r = trimap.erode / 2;
    let (fg, bg) = if r > 0 {
        (extremum(&fg, r, false), extremum(&bg, r, false))
    } else {
        (fg, bg)
    };
    // The filter's window spans the band: a little wider than the erosion, at least 4 px.
    let radius = (trimap.erode).max(4);
    let solved = guided_filter(guide, alpha, radius, 1e-3);
    let data = alpha
        .data
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if fg.data[i] > 0.5 {
                1.0
            } else if bg.data[i] > 0.5 {
                0.0
            } else {
                solved.data[i].clamp(0.0, 1.0)
            }
        })
        .collect();
    Plane::new(alpha.width, alpha.height, data)
}

/// Blur fusion: the foreground colour planes of `image` (each 0..1) under `alpha`.
pub fn estimate_foreground(image: &[Plane], alpha: &Plane) -> Vec<Plane> {
    let longest = alpha.width.max(alpha.height);
    // The paper's radii (90 then 6) are for about 1000-2000 px images; scale the wide one.
    let wide = (longest * 90 / 1500).clamp(8, 90);
    let mut fg: Vec<Plane> = image.to_vec();
    let mut bg: Vec<Plane> = image.to_vec();
    for r in [wide, 6] {
        let blur_a = box_mean(alpha, r);
        let blur_1a = blur_a.map(|a| 1.0 - a);
        for c in 0..image.len() {
            let f_mean =
                box_mean(&fg[c].zip(alpha, |f, a| f * a), r).zip(&blur_a, |s, a| s / (a + 1e-5));
            let b_mean = box_mean(&bg[c].zip(alpha, |b, a| b * (1.0 - a)), r)
                .zip(&blur_1a, |s, a| s / (a + 1e-5));
            let data = (0..alpha.data.len())
                .map(|i| {
                    let (a, x) = (alpha.data[i], image[c].data[i]);
                    let (f, b) = (f_mean.data[i], b_mean.data[i]);
                    let f_new = (f + a * (x - a * f - (1.0 - a) * b)).clamp(0.0, 1.0);
                    let b_new = (b + (1.0 - a) * (x - (1.0 - a) * b - a * f)).clamp(0.0, 1.0);
                    (f_new, b_new)
                })
                .collect::<Vec<_>>();
            fg[c] = Plane::new(
                alpha.width,
                alpha.height,
                data.iter().map(|d| d.0).collect(),
            );
            bg[c] = Plane::new(
                alpha.width,
                alpha.height,
                data.iter().map(|d| d.1).collect(),
            );
        }
    }
    fg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Plane {
        Plane::from_fn(w, h, f)
    }

    #[test]
    fn post_processing_removes_specks_and_hardens_edges() {
        // A speck of one pixel and a soft-edged square.
        let alpha = plane(40, 40, |x, y| {
            if (x, y) == (3, 3) {
                1.0
            } else if (10..30).contains(&x) && (10..30).contains(&y) {
                if x == 10 || x == 29 { 0.6 } else { 1.0 }
            } else {
                0.0
            }
        });
        let out = post_process(&alpha);
        assert_eq!(out.data[3 * 40 + 3], 0.0, "the speck is opened away");
        assert_eq!(out.data[20 * 40 + 20], 1.0);
        assert!(out.data.iter().all(|&v| v == 0.0 || v == 1.0));
    }

    #[test]
    fn matting_follows_the_photos_edge_inside_the_band() {
        // The photo has a sharp edge at x = 20; the coarse alpha ramps over 12..28.
        let guide = plane(40, 20, |x, _| if x < 20 { 0.9 } else { 0.1 });
        let alpha = plane(40, 20, |x, _| {
            (1.0 - (x as f32 - 12.0) / 16.0).clamp(0.0, 1.0)
        });
        let trimap = Trimap {
            foreground: 240,
            background: 10,
            erode: 4,
        };
        let out = refine_alpha(&alpha, &guide, trimap);
        let at = |x: usize| out.data[10 * 40 + x];
        assert_eq!(at(2), 1.0);
        assert_eq!(at(38), 0.0);
        // Sharper than the ramp on both sides of the edge.
        assert!(
            at(17) > alpha.data[10 * 40 + 17],
            "{} vs {}",
            at(17),
            alpha.data[10 * 40 + 17]
        );
        assert!(
            at(23) < alpha.data[10 * 40 + 23],
            "{} vs {}",
            at(23),
            alpha.data[10 * 40 + 23]
        );
    }

    #[test]
    fn foreground_estimation_removes_the_old_background_from_edges() {
        // Red subject (left) over a green background; the edge pixels are a 50/50 mix.
        let (w, h) = (60, 30);
        // left of the edge, on it, right of it
        let step = |l: f32, r: f32| {
            plane(w, h, move |x, _| match x {
                0..29 => l,
                29 => 0.5,
                _ => r,
            })
        };
        let (alpha, red, green) = (step(1.0, 0.0), step(1.0, 0.0), step(0.0, 1.0));
        let blue = plane(w, h, |_, _| 0.0);
        let fg = estimate_foreground(&[red, green, blue], &alpha);
        let edge = 15 * w + 29;
        assert!(fg[0].data[edge] > 0.9, "red {}", fg[0].data[edge]);
        assert!(fg[1].data[edge] < 0.1, "green {}", fg[1].data[edge]);
    }
}
