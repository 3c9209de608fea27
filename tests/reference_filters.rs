//! Native Rust versions of the example plugins' filters, written from their documented
//! behaviour: the reference the plugin tests compare against and the bench races. Shared by
//! the integration tests and `benches/plugins.rs`.

use unmark_stages::Raster;

/// Any raster as RGBA (the widening the plugin stage does).
pub(crate) fn rgba_of(r: &Raster) -> Vec<u8> {
    r.data
        .chunks_exact(r.channels as usize)
        .flat_map(|p| match *p {
            [r, g, b] => [r, g, b, 255],
            [r, g, b, a] => [r, g, b, a],
            [g] => [g, g, g, 255],
            [g, a] => [g, g, g, a],
            _ => unreachable!("1 to 4 channels"),
        })
        .collect()
}

/// `grayscale`: Rec. 601 luma, alpha kept.
pub(crate) fn native_grayscale(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let y = ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128)
                >> 8) as u8;
            [y, y, y, p[3]]
        })
        .collect()
}

fn round_u8(v: f32) -> u8 {
    (v + 0.5).clamp(0.0, 255.0) as u8
}

/// `blur`: separable Gaussian, edges clamped, 8-bit rounding between the passes.
/// `blur`: separable Gaussian, edges clamped, 8-bit rounding between the passes.
pub(crate) fn native_blur(rgba: &[u8], w: usize, h: usize, sigma: f64) -> Vec<u8> {
    let radius = (3.0 * sigma).ceil() as i64;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma) as f32).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let pass = |src: &[u8], horizontal: bool| {
        let mut out = vec![0u8; src.len()];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let mut acc = [0f32; 4];
                for (j, k) in kernel.iter().enumerate() {
                    let d = j as i64 - radius;
                    let (sx, sy) = if horizontal {
                        ((x + d).clamp(0, w as i64 - 1), y)
                    } else {
                        (x, (y + d).clamp(0, h as i64 - 1))
                    };
                    let at = (sy as usize * w + sx as usize) * 4;
                    for c in 0..4 {
                        acc[c] += k * f32::from(src[at + c]);
                    }
                }
                let at = (y as usize * w + x as usize) * 4;
                for c in 0..4 {
                    out[at + c] = round_u8(acc[c]);
                }
            }
        }
        out
    };
    pass(&pass(rgba, true), false)
}

/// `autolevels`: per-channel stretch ignoring `clip` percent at each end.
/// `autolevels`: per-channel stretch ignoring `clip` percent at each end.
pub(crate) fn native_autolevels(rgba: &[u8], clip: f64) -> Vec<u8> {
    let n = rgba.len() / 4;
    let skip = (n as f64 * clip / 100.0) as usize;
    let mut out = rgba.to_vec();
    for c in 0..3 {
        let mut hist = [0usize; 256];
        rgba.chunks_exact(4).for_each(|p| hist[p[c] as usize] += 1);
        let pick = |order: &mut dyn Iterator<Item = usize>| {
            let mut seen = 0;
            let mut last = 0;
            for v in order {
                last = v;
                seen += hist[v];
                if seen > skip {
                    break;
                }
            }
            last as i64
        };
        let lo = pick(&mut (0..255));
        let hi = pick(&mut (1..=255).rev());
        if hi <= lo {
            continue;
        }
        for p in out.chunks_exact_mut(4) {
            let t = i64::from(p[c]).clamp(lo, hi);
            p[c] = (((t - lo) * 255 + (hi - lo) / 2) / (hi - lo)) as u8;
        }
    }
    out
}

/// `threshold`: opaque pixels within `tol` of `colour` on each channel.
/// `threshold`: opaque pixels within `tol` of `colour` on each channel.
pub(crate) fn native_threshold(rgba: &[u8], colour: [i32; 3], tol: i32) -> Vec<u8> {
    rgba.chunks_exact(4)
        .map(|p| {
            let near = (0..3).all(|c| (i32::from(p[c]) - colour[c]).abs() <= tol);
            if p[3] > 0 && near { 255 } else { 0 }
        })
        .collect()
}

/// `invert` (AssemblyScript): towards the negative by `amount`, in 1/256 steps.
/// `invert` (AssemblyScript): towards the negative by `amount`, in 1/256 steps.
pub(crate) fn native_invert(rgba: &[u8], amount: f64) -> Vec<u8> {
    let k = (amount * 256.0).round() as i32;
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let f = |v: u8| {
                let v = i32::from(v);
                (v + (((255 - 2 * v) * k + 128) >> 8)) as u8
            };
            [f(p[0]), f(p[1]), f(p[2]), p[3]]
        })
        .collect()
}
