//! Tiled watermarks: one mark repeated over the whole image on a lattice, as stock-photo
//! previews do.
//!
//! The network finds some copies of a tiled mark and misses others (a copy over a busy part of
//! the photo, a faint one). The repetition itself is the cue the network cannot see in its
//! 150 px window. [`complete`] looks for the lattice step that carries the network's confident
//! pixels onto the same edges elsewhere (a normalised cross-correlation of the high-passed
//! image, weighted by the network's mask), then gives every pixel the upper quartile of the
//! network's probability over its nearest lattice copies. A copy the network missed inherits
//! the copies it found.
//!
//! A texture is rejected by the same median: a brick wall repeats, but the network calls few
//! of its bricks a mark, so the median of the probability over the copies stays low where the
//! network's mask is, and no lattice is used.

use rayon::prelude::*;

use crate::Raster;
use crate::composite::filters::{Plane, box_mean};

/// Probability above which a pixel counts as marked.
const SURE: f32 = 0.5;
/// Fewest marked pixels worth looking for a lattice from.
const MIN_PIXELS: usize = 100;
/// Shortest lattice step, in working pixels: below it, the photo's own texture correlates.
const MIN_STEP: f64 = 16.0;
/// Least normalised correlation of the best step.
const MIN_CORRELATION: f64 = 0.4;
/// Peaks within this share of the best one count as lattice steps.
const STRONG: f64 = 0.75;
/// Peaks of the half-size correlation within this share of its best are measured at full
/// size, the [`CANDIDATES`] highest of them.
const LOOSE: f64 = 0.5;
const CANDIDATES: usize = 64;
/// The most marked pixels a full-size score reads.
const FINE_PIXELS: usize = 32_768;
/// Least share of the marked pixels that a shifted copy must still overlap.
const MIN_OVERLAP: f64 = 0.3;
/// The copies of a pixel compared (its nearest lattice neighbours), and the fewest needed.
const COPIES: usize = 60;
const MIN_COPIES: usize = 8;
/// Least share of the network's mask that the median over the copies keeps.
const MIN_CONSISTENCY: f64 = 0.3;
/// The quantile of the copies' probabilities that the completed mark takes.
const QUANTILE: f64 = 0.75;
/// The box (side) whose mean the high-pass removes.
const HIGHPASS_SIDE: usize = 9;

/// Two lattice steps, in working pixels (`u` the shorter).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Lattice {
    u: [f64; 2],
    v: [f64; 2],
}

/// The network's probabilities `prob` (one per pixel of `image`), completed over a tiled mark's
/// lattice: each pixel gets the upper quartile over its lattice copies. `None` when the image
/// holds no repeated mark.
pub fn complete(image: &Raster, prob: &[f32]) -> Option<Vec<f32>> {
    let (w, h) = (image.width as usize, image.height as usize);
    let marked: Vec<bool> = prob.iter().map(|&p| p > SURE).collect();
    let count = marked.iter().filter(|&&m| m).count();
    if count < MIN_PIXELS {
        return None;
    }
    let lattice = find_lattice(&highpass(image), &marked, w, h)?;
    let offsets = lattice.offsets(w, h);
    if offsets.len() < MIN_COPIES {
        return None;
    }
    let (median, upper) = fold(prob, w, h, &offsets);
    let kept = median.iter().filter(|&&p| p > SURE).count();
    (kept as f64 >= MIN_CONSISTENCY * count as f64).then_some(upper)
}

impl Lattice {
    /// The nearest [`COPIES`] lattice points (rounded to pixels) that a `w` x `h` image can hold
    /// a copy at, the origin left out.
    fn offsets(&self, w: usize, h: usize) -> Vec<(isize, isize)> {
        const REACH: i32 = 40;
        let mut points = Vec::new();
        for j in -REACH..=REACH {
            for i in -REACH..=REACH {
                if (i, j) == (0, 0) {
                    continue;
                }
                let x = f64::from(i) * self.u[0] + f64::from(j) * self.v[0];
                let y = f64::from(i) * self.u[1] + f64::from(j) * self.v[1];
                if x.abs() < w as f64 && y.abs() < h as f64 {
                    points.push((x.hypot(y), x.round() as isize, y.round() as isize));
                }
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points.truncate(COPIES);
        points.into_iter().map(|(_, x, y)| (x, y)).collect()
    }
}

/// Per pixel, the median and the [`QUANTILE`] of `values` over the pixel and its copies at
/// `offsets` that fall inside the image.
fn fold(values: &[f32], w: usize, h: usize, offsets: &[(isize, isize)]) -> (Vec<f32>, Vec<f32>) {
    let (mut median, mut upper) = (vec![0.0; w * h], vec![0.0; w * h]);
    median
        .par_chunks_mut(w)
        .zip(upper.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, (median, upper))| {
            let mut seen = Vec::with_capacity(offsets.len() + 1);
            for x in 0..w {
                seen.clear();
                seen.push(values[y * w + x]);
                for &(dx, dy) in offsets {
                    let (sx, sy) = (x as isize + dx, y as isize + dy);
                    if (0..w as isize).contains(&sx) && (0..h as isize).contains(&sy) {
                        seen.push(values[sy as usize * w + sx as usize]);
                    }
                }
                seen.sort_by(f32::total_cmp);
                median[x] = quantile(&seen, 0.5);
                upper[x] = quantile(&seen, QUANTILE);
            }
        });
    (median, upper)
}

/// The `q` quantile of `sorted` (not empty), interpolated between ranks as numpy does.
fn quantile(sorted: &[f32], q: f64) -> f32 {
    let at = q * (sorted.len() - 1) as f64;
    let lo = at.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let f = (at - lo as f64) as f32;
    sorted[lo] + (sorted[hi] - sorted[lo]) * f
}

/// The image's gray level (the mean of its colour channels) minus its [`HIGHPASS_SIDE`] box
/// mean (the box clipped to the image).
fn highpass(image: &Raster) -> Vec<f32> {
    let c = image.channels as usize;
    // Gray (and gray + alpha) images: the one gray channel.
    let colours = if c >= 3 { 3 } else { 1 };
    let gray = Plane::new(
        image.width as usize,
        image.height as usize,
        image
            .data
            .chunks_exact(c)
            .map(|px| px[..colours].iter().map(|&v| f32::from(v)).sum::<f32>() / colours as f32)
            .collect(),
    );
    let mean = box_mean(&gray, HIGHPASS_SIDE / 2);
    gray.zip(&mean, |v, m| v - m).data
}

/// The lattice from the normalised cross-correlation of the marked part of `highpass` with the
/// whole of it: the shortest strong step, halved while its half is as strong, and the shortest
/// strong step along another line.
///
/// The correlation of every step is computed at half size (a transform a quarter the size);
/// its peaks are then measured again at full size around twice their step, and only those
/// measures decide.
fn find_lattice(highpass: &[f32], marked: &[bool], w: usize, h: usize) -> Option<Lattice> {
    let fine = Fine::new(highpass, marked, w, h);
    let peaks: Vec<(f64, [f64; 2])> = coarse_peaks(highpass, marked, w, h)
        .into_par_iter()
        .filter_map(|step| fine.best_near(step, 2))
        .collect();
    let best = peaks.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if best < MIN_CORRELATION {
        return None;
    }
    let mut strong: Vec<[f64; 2]> = peaks
        .iter()
        .filter(|p| p.0 >= STRONG * best)
        .map(|p| p.1)
        .collect();
    strong.sort_by(|a, b| norm(*a).total_cmp(&norm(*b)));
    let mut u = strong[0];
    // A step twice the true one correlates as well: halve while the half does too.
    for _ in 0..3 {
        let half = [u[0] / 2.0, u[1] / 2.0];
        let strong_half = fine
            .best_near([half[0].round(), half[1].round()], 1)
            .is_some_and(|p| p.0 >= STRONG * best);
        if norm(u) >= 2.0 * MIN_STEP && strong_half {
            u = half;
        } else {
            break;
        }
    }
    // The second step: the shortest strong one not along the first; without one, the copies
    // lie on a line (a step beyond the image).
    let v = strong
        .iter()
        .copied()
        .find(|s| (u[0] * s[1] - u[1] * s[0]).abs() > 0.3 * norm(u) * norm(*s))
        .unwrap_or_else(|| {
            let far = 2.0 * w.max(h) as f64 / norm(u);
            [-u[1] * far, u[0] * far]
        });
    reduce(u, v)
}

/// The local maxima (5 x 5) of the normalised correlation of the image at half size that
/// reach [`LOOSE`] of the best, the [`CANDIDATES`] highest, as steps at full size.
fn coarse_peaks(highpass: &[f32], marked: &[bool], w: usize, h: usize) -> Vec<[f64; 2]> {
    let (cw, ch) = (w / 2, h / 2);
    if cw < 2 || ch < 2 {
        return Vec::new();
    }
    let mut small = vec![0.0; cw * ch];
    let mut small_marked = vec![false; cw * ch];
    for y in 0..ch {
        for x in 0..cw {
            let top = 2 * y * w + 2 * x;
            let block = [top, top + 1, top + w, top + w + 1];
            small[y * cw + x] = block.iter().map(|&i| highpass[i]).sum::<f32>() / 4.0;
            small_marked[y * cw + x] = block.iter().any(|&i| marked[i]);
        }
    }
    let count = small_marked.iter().filter(|&&m| m).count() as f64;
    let map = Correlation::new(&small, &small_marked, cw, ch);
    // The half plane of steps (dy > 0, or dy = 0 and dx > 0), as a (2cw - 1) x ch grid.
    let gw = 2 * cw - 1;
    let mut ncc = vec![f64::NEG_INFINITY; gw * ch];
    for dy in 0..ch {
        for gx in 0..gw {
            let dx = gx as isize - (cw as isize - 1);
            if (dy == 0 && dx <= 0) || (dx as f64).hypot(dy as f64) < MIN_STEP / 2.0 {
                continue;
            }
            if let Some(v) = map.normalised(dx, dy as isize, MIN_OVERLAP * count) {
                ncc[dy * gw + gx] = v;
            }
        }
    }
    let best = ncc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut peaks = Vec::new();
    for dy in 0..ch {
        for gx in 0..gw {
            let v = ncc[dy * gw + gx];
            // Steps never scored are -inf and fall below too.
            if v < LOOSE * best || !v.is_finite() {
                continue;
            }
            let top = (dy.saturating_sub(2)..(dy + 3).min(ch)).all(|ny| {
                (gx.saturating_sub(2)..(gx + 3).min(gw)).all(|nx| ncc[ny * gw + nx] <= v)
            });
            if top {
                let dx = gx as f64 - (cw as f64 - 1.0);
                peaks.push((v, [2.0 * dx, 2.0 * dy as f64]));
            }
        }
    }
    peaks.sort_by(|a, b| b.0.total_cmp(&a.0));
    peaks.truncate(CANDIDATES);
    peaks.into_iter().map(|p| p.1).collect()
}

/// The normalised correlation at full size, one step at a time, over the marked pixels.
struct Fine<'a> {
    highpass: &'a [f32],
    /// The marked pixels, as (x, y).
    marked: Vec<(usize, usize)>,
    w: usize,
    h: usize,
}

impl<'a> Fine<'a> {
    fn new(highpass: &'a [f32], marked: &[bool], w: usize, h: usize) -> Fine<'a> {
        let all = marked.iter().filter(|&&m| m).count();
        // Every k-th marked pixel, so that a mask over most of the image costs no more than
        // [`FINE_PIXELS`] per step.
        let k = all.div_ceil(FINE_PIXELS).max(1);
        let marked = (0..w * h)
            .filter(|&i| marked[i])
            .step_by(k)
            .map(|i| (i % w, i / w))
            .collect();
        Fine {
            highpass,
            marked,
            w,
            h,
        }
    }

    /// The best (correlation, step) within `reach` pixels of `step`, among the steps in the
    /// half plane, at least [`MIN_STEP`] long, whose overlap is large enough.
    fn best_near(&self, step: [f64; 2], reach: isize) -> Option<(f64, [f64; 2])> {
        let (cx, cy) = (step[0] as isize, step[1] as isize);
        let mut best: Option<(f64, [f64; 2])> = None;
        for dy in cy - reach..=cy + reach {
            for dx in cx - reach..=cx + reach {
                if dy < 0 || (dy == 0 && dx <= 0) || (dx as f64).hypot(dy as f64) < MIN_STEP {
                    continue;
                }
                if let Some(v) = self.at(dx, dy)
                    && best.is_none_or(|b| v > b.0)
                {
                    best = Some((v, [dx as f64, dy as f64]));
                }
            }
        }
        best
    }

    /// The normalised correlation at step (`dx`, `dy`), over the marked pixels whose copy is
    /// inside the image; `None` when fewer than [`MIN_OVERLAP`] of them are.
    fn at(&self, dx: isize, dy: isize) -> Option<f64> {
        let (w, h) = (self.w as isize, self.h as isize);
        let (mut num, mut ea, mut eb, mut n) = (0.0, 0.0, 0.0, 0usize);
        for &(x, y) in &self.marked {
            let (sx, sy) = (x as isize + dx, y as isize + dy);
            if (0..w).contains(&sx) && (0..h).contains(&sy) {
                let a = f64::from(self.highpass[y * self.w + x]);
                let b = f64::from(self.highpass[sy as usize * self.w + sx as usize]);
                num += a * b;
                ea += a * a;
                eb += b * b;
                n += 1;
            }
        }
        let enough = n as f64 >= MIN_OVERLAP * self.marked.len() as f64;
        (enough && ea * eb > 1e-9).then(|| num / (ea * eb).sqrt())
    }
}

fn norm(a: [f64; 2]) -> f64 {
    a[0].hypot(a[1])
}

/// Gauss's reduction: the shortest basis of the lattice `a`, `b` span, or `None` when they
/// (nearly) lie on one line.
fn reduce(mut a: [f64; 2], mut b: [f64; 2]) -> Option<Lattice> {
    if (a[0] * b[1] - a[1] * b[0]).abs() < 0.1 * norm(a) * norm(b) {
        return None;
    }
    loop {
        if norm(a) > norm(b) {
            std::mem::swap(&mut a, &mut b);
        }
        let mu = (a[0] * b[0] + a[1] * b[1]) / (a[0] * a[0] + a[1] * a[1]);
        // At exactly one half, either rounding is as short: stop (rounding away from zero
        // would swing between the two for ever).
        if mu.abs() <= 0.5 {
            return Some(Lattice { u: a, v: b });
        }
        let m = mu.round();
        b = [b[0] - m * a[0], b[1] - m * a[1]];
    }
}

/// The sums behind the normalised cross-correlation of `a = marked * highpass` with
/// `highpass`, for every step, by FFT: numerator, the overlap's energies, the overlap's count.
struct Correlation {
    /// Side lengths of the padded transforms (powers of two, at least twice the image's).
    nw: usize,
    nh: usize,
    /// Per step: (sum a(p) h(p+s), sum a(p)^2 over the overlap), then
    /// (sum marked(p) h(p+s)^2, overlap count).
    first: Vec<Cx>,
    second: Vec<Cx>,
}

impl Correlation {
    fn new(highpass: &[f32], marked: &[bool], w: usize, h: usize) -> Correlation {
        let (nw, nh) = ((2 * w).next_power_of_two(), (2 * h).next_power_of_two());
        let mut z1 = vec![Cx::ZERO; nw * nh];
        let mut z2 = vec![Cx::ZERO; nw * nh];
        let mut z3 = vec![Cx::ZERO; nw * nh];
        for y in 0..h {
            for x in 0..w {
                let hp = f64::from(highpass[y * w + x]);
                let m = if marked[y * w + x] { 1.0 } else { 0.0 };
                let a = m * hp;
                let i = y * nw + x;
                // Two real signals per transform: one in each part.
                z1[i] = Cx::new(hp, a);
                z2[i] = Cx::new(1.0, m);
                z3[i] = Cx::new(hp * hp, a * a);
            }
        }
        for z in [&mut z1, &mut z2, &mut z3] {
            fft2(z, nw, nh, h, false);
        }
        let mut first = vec![Cx::ZERO; nw * nh];
        let mut second = vec![Cx::ZERO; nw * nh];
        for ky in 0..nh {
            for kx in 0..nw {
                let i = ky * nw + kx;
                let j = ((nh - ky) % nh) * nw + (nw - kx) % nw;
                let (hh, a) = split(z1[i], z1[j]);
                let (one, m) = split(z2[i], z2[j]);
                let (h2, a2) = split(z3[i], z3[j]);
                // Both inverses are real: pack two per transform again.
                first[i] = a.conj() * hh + Cx::I * (a2.conj() * one);
                second[i] = m.conj() * h2 + Cx::I * (m.conj() * one);
            }
        }
        // Only the steps with 0 <= dy < h are read.
        fft2(&mut first, nw, nh, h, true);
        fft2(&mut second, nw, nh, h, true);
        Correlation {
            nw,
            nh,
            first,
            second,
        }
    }

    /// The normalised correlation at step (`dx`, `dy`), or `None` when the marked pixels that
    /// stay inside the image are fewer than `min_overlap`.
    fn normalised(&self, dx: isize, dy: isize, min_overlap: f64) -> Option<f64> {
        let x = dx.rem_euclid(self.nw as isize) as usize;
        let y = dy.rem_euclid(self.nh as isize) as usize;
        let (f, s) = (self.first[y * self.nw + x], self.second[y * self.nw + x]);
        let energy = f.im * s.re;
        (s.im >= min_overlap && energy > 1e-9).then(|| f.re / energy.sqrt())
    }
}

/// The transforms of the two real signals packed as `x + i y`, from the packed transform at
/// `k` (`zk`) and at `-k` (`zn`).
fn split(zk: Cx, zn: Cx) -> (Cx, Cx) {
    let c = zn.conj();
    let x = Cx::new((zk.re + c.re) / 2.0, (zk.im + c.im) / 2.0);
    let d = Cx::new(zk.re - c.re, zk.im - c.im);
    // (zk - conj(zn)) / 2i
    (x, Cx::new(d.im / 2.0, -d.re / 2.0))
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Cx {
    re: f64,
    im: f64,
}

impl Cx {
    const ZERO: Cx = Cx { re: 0.0, im: 0.0 };
    const I: Cx = Cx { re: 0.0, im: 1.0 };

    fn new(re: f64, im: f64) -> Cx {
        Cx { re, im }
    }

    fn conj(self) -> Cx {
        Cx::new(self.re, -self.im)
    }
}

impl std::ops::Mul for Cx {
    type Output = Cx;
    fn mul(self, o: Cx) -> Cx {
        Cx::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

impl std::ops::Add for Cx {
    type Output = Cx;
    fn add(self, o: Cx) -> Cx {
        Cx::new(self.re + o.re, self.im + o.im)
    }
}

/// The 2-D discrete Fourier transform of `data` (`w` x `h`, both powers of two) in place; the
/// inverse divides by `w * h`. Only the first `rows` rows matter: forward, the others are zero;
/// inverse, the others are left half done.
fn fft2(data: &mut [Cx], w: usize, h: usize, rows: usize, inverse: bool) {
    // Forward, the rows from `rows` on are zero and stay so; inverse, they are not read. So
    // the row transforms skip them: before the columns' forward, after them inverse.
    if !inverse {
        data[..rows * w]
            .par_chunks_mut(w)
            .for_each(|row| fft(row, inverse));
    }
    let mut columns = transpose(data, w, h);
    columns.par_chunks_mut(h).for_each(|col| fft(col, inverse));
    data.copy_from_slice(&transpose(&columns, h, w));
    if inverse {
        data[..rows * w]
            .par_chunks_mut(w)
            .for_each(|row| fft(row, inverse));
    }
    if inverse {
        let scale = 1.0 / (w * h) as f64;
        for z in data.iter_mut() {
            *z = Cx::new(z.re * scale, z.im * scale);
        }
    }
}

/// `data` (`w` x `h`, row-major) as `h` x `w`.
fn transpose(data: &[Cx], w: usize, h: usize) -> Vec<Cx> {
    let mut out = vec![Cx::ZERO; w * h];
    for y in 0..h {
        for x in 0..w {
            out[x * h + y] = data[y * w + x];
        }
    }
    out
}

/// The unscaled 1-D transform of `a` (a power of two long) in place: iterative radix-2,
/// `exp(-2 pi i k n / N)` forward, `exp(+...)` inverse.
fn fft(a: &mut [Cx], inverse: bool) {
    let n = a.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            a.swap(i, j);
        }
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut len = 2;
    while len <= n {
        let angle = sign * 2.0 * std::f64::consts::PI / len as f64;
        let step = Cx::new(angle.cos(), angle.sin());
        for chunk in a.chunks_exact_mut(len) {
            let (lo, hi) = chunk.split_at_mut(len / 2);
            let mut twiddle = Cx::new(1.0, 0.0);
            for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                let t = *y * twiddle;
                *y = Cx::new(x.re - t.re, x.im - t.im);
                *x = *x + t;
                twiddle = twiddle * step;
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_matches_a_direct_transform_and_inverts() {
        let n = 16;
        let signal: Vec<Cx> = (0..n)
            .map(|i| Cx::new((i as f64 * 0.7).sin(), (i * i % 5) as f64))
            .collect();
        let mut fast = signal.clone();
        fft(&mut fast, false);
        for (k, f) in fast.iter().enumerate() {
            let mut direct = Cx::ZERO;
            for (t, s) in signal.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                direct = direct + *s * Cx::new(a.cos(), a.sin());
            }
            assert!((f.re - direct.re).abs() < 1e-9 && (f.im - direct.im).abs() < 1e-9);
        }
        let mut back = fast;
        fft(&mut back, true);
        for (b, s) in back.iter().zip(&signal) {
            assert!((b.re / n as f64 - s.re).abs() < 1e-9 && (b.im / n as f64 - s.im).abs() < 1e-9);
        }
    }

    #[test]
    fn gauss_reduction_finds_the_short_basis() {
        // (222, 89) is five steps of (44, 0) and one of (2, 89).
        let l = reduce([222.0, 89.0], [44.0, 0.0]).expect("two directions");
        assert_eq!((l.u, l.v), ([44.0, 0.0], [2.0, 89.0]));
        assert!(reduce([40.0, 2.0], [80.0, 4.5]).is_none());
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.75), 3.0);
        assert_eq!(quantile(&[0.0, 1.0], 0.75), 0.75);
    }

    /// A textured photo (deterministic noise) with a bright ring every 40 px in x and 48 px in
    /// y, rows offset by half a step, and the network's probability: sure on the ring's copies
    /// in the left two thirds, nothing elsewhere.
    fn tiled_scene(tiled: bool) -> (Raster, Vec<f32>, Vec<bool>) {
        let (w, h) = (240u32, 192u32);
        let mut image = Raster::filled(w, h, 3, 0);
        let mut truth = vec![false; (w * h) as usize];
        let mut prob = vec![0.02; (w * h) as usize];
        let mut state = 12345u32;
        for y in 0..h {
            for x in 0..w {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = ((state >> 16) % 90) as f64;
                let (row, col) = (y / 48, x as i64 - if (y / 48) % 2 == 1 { 20 } else { 0 });
                let (cx, cy) = (col.rem_euclid(40) as f64 - 20.0, f64::from(y % 48) - 24.0);
                let r = cx.hypot(cy);
                let on = (6.0..10.0).contains(&r) && (tiled || (row, col.div_euclid(40)) == (1, 1));
                let v = if on {
                    0.5 * noise + 0.5 * 250.0
                } else {
                    60.0 + noise
                };
                image.pixel_mut(x, y).fill(v as u8);
                let i = (y * w + x) as usize;
                truth[i] = on;
                if on && x < 160 {
                    prob[i] = 0.95;
                }
            }
        }
        (image, prob, truth)
    }

    #[test]
    fn a_tiled_mark_is_completed_from_the_copies_found() {
        let (image, prob, truth) = tiled_scene(true);
        let done = complete(&image, &prob).expect("the lattice is found");
        let found = done.iter().map(|&p| p > SURE);
        let (mut tp, mut fp, mut all) = (0, 0, 0);
        for (f, &t) in found.zip(&truth) {
            tp += usize::from(f && t);
            fp += usize::from(f && !t);
            all += usize::from(t);
        }
        let seen = prob.iter().filter(|&&p| p > SURE).count();
        assert!(seen * 4 < all * 3, "the network saw {seen} of {all}");
        assert!(tp as f64 >= 0.9 * all as f64, "recall {tp}/{all}");
        assert!(fp as f64 <= 0.1 * tp as f64, "false {fp} against {tp}");
    }

    #[test]
    fn a_mark_that_does_not_repeat_is_left_alone() {
        let (image, mut prob, truth) = tiled_scene(false);
        for (p, &t) in prob.iter_mut().zip(&truth) {
            *p = if t { 0.95 } else { 0.02 };
        }
        assert!(complete(&image, &prob).is_none());
    }
}
