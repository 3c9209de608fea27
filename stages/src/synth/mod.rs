//! Synthetic visible watermarks in styles the dev set (`../shared/eval`) lacks, drawn over a
//! photo the caller gives, for the tests and benches that hold `restore` to marks it was not
//! tuned on.
//!
//! [`mark`] draws one [`Case`] of a [`Style`] from a seed: a flat mark for reference, a colour
//! gradient across the mark, a fill over an outline of another colour, a fill over a soft
//! drop shadow, text tiled diagonally over the whole image, and a mark that inverts the photo
//! under it. Text comes from a stroke font ([`font`]), logos from discs and rings; each
//! stroke's coverage is exact to a pixel's width, as a renderer's box filter gives it. Layers
//! composite the way marks are made, `out = (1 - a) * under + a * colour`, in floating point
//! and rounded once, and the mask is where any layer's alpha reaches half a level.
//!
//! ```
//! use unmark_stages::synth::{self, Style};
//!
//! let photo = synth::texture(160, 120, 7);
//! let case = synth::mark(&photo, Style::Outlined, 1);
//! assert_eq!(case.clean, photo);
//! assert!(case.mask.count() > 0);
//! ```

mod font;

use crate::{Mask, Raster};

/// A mark's style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Style {
    /// One colour, one opacity: text or a logo, as in the dev set.
    Flat,
    /// A colour that changes smoothly across the mark, from one colour to another.
    Gradient,
    /// Text filled in one colour over an outline in another, each with its own opacity.
    Outlined,
    /// A text or logo over a soft, offset drop shadow of a dark colour.
    Shadowed,
    /// Rows of text rotated by 20 to 45 degrees, tiled over the whole image.
    Tiled,
    /// A mark that inverts the photo under it: `out = p + a * (255 - 2 p)`.
    Inverting,
}

impl Style {
    /// Every style, the flat one first.
    pub const ALL: [Style; 6] = [
        Style::Flat,
        Style::Gradient,
        Style::Outlined,
        Style::Shadowed,
        Style::Tiled,
        Style::Inverting,
    ];

    /// The style's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Style::Flat => "flat",
            Style::Gradient => "gradient",
            Style::Outlined => "outlined",
            Style::Shadowed => "shadowed",
            Style::Tiled => "tiled_diagonal",
            Style::Inverting => "inverting",
        }
    }
}

/// One synthetic watermark case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The style drawn.
    pub style: Style,
    /// The photo with the mark.
    pub marked: Raster,
    /// The photo as given.
    pub clean: Raster,
    /// Where the mark's alpha reaches half a level.
    pub mask: Mask,
    /// The opacity of the mark's top layer (its fill).
    pub opacity: f32,
}

/// A small seeded generator (SplitMix64): the same seed draws the same case everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.range(0.0, 1.0) < p
    }
}

const WORDS: &[&str] = &[
    "SAMPLE",
    "PREVIEW",
    "PROOF",
    "DRAFT",
    "STOCK PHOTO",
    "COPYRIGHT 2026",
    "DEMO",
    "LICENSED",
    "STUDIO 9",
    "DO NOT COPY",
    "AGENCY",
    "WATERMARK",
    "PHOTO BY K.M.",
];

const COLOURS: &[[f32; 3]] = &[
    [255.0, 255.0, 255.0],
    [0.0, 0.0, 0.0],
    [128.0, 128.0, 128.0],
    [220.0, 220.0, 220.0],
    [30.0, 90.0, 230.0],
    [250.0, 210.0, 20.0],
    [220.0, 30.0, 40.0],
    [40.0, 200.0, 90.0],
    [200.0, 40.0, 200.0],
];

/// The points within `radius` px of the segment from `a` to `b`.
#[derive(Debug, Clone, Copy)]
struct Capsule {
    a: (f32, f32),
    b: (f32, f32),
    radius: f32,
}

impl Capsule {
    fn distance(&self, (x, y): (f32, f32)) -> f32 {
        let (dx, dy) = (self.b.0 - self.a.0, self.b.1 - self.a.1);
        let length = dx * dx + dy * dy;
        let t = if length > 0.0 {
            (((x - self.a.0) * dx + (y - self.a.1) * dy) / length).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (px, py) = (self.a.0 + t * dx - x, self.a.1 + t * dy - y);
        (px * px + py * py).sqrt()
    }
}

/// A mark's shape: a union of capsules, in pixels.
#[derive(Debug, Clone, Default)]
struct Shape {
    capsules: Vec<Capsule>,
}

impl Shape {
    /// `text` with capitals `height` px tall in strokes of `radius`, centred on `centre`,
    /// rotated by `angle` (radians) and slanted by `shear`.
    fn text(
        text: &str,
        height: f32,
        radius: f32,
        centre: (f32, f32),
        angle: f32,
        shear: f32,
    ) -> Self {
        let scale = height / font::HEIGHT;
        let width = text_width(text, height);
        let (sin, cos) = angle.sin_cos();
        let place = |(gx, gy): (f32, f32), origin: f32| {
            let x = origin + gx * scale - width / 2.0 + shear * (font::HEIGHT / 2.0 - gy) * scale;
            let y = gy * scale - height / 2.0;
            (centre.0 + x * cos - y * sin, centre.1 + x * sin + y * cos)
        };
        let mut shape = Shape::default();
        for (n, c) in text.chars().enumerate() {
            let origin = n as f32 * font::ADVANCE * scale;
            for stroke in font::strokes(c) {
                for pair in stroke.windows(2) {
                    shape.capsules.push(Capsule {
                        a: place(pair[0], origin),
                        b: place(pair[1], origin),
                        radius,
                    });
                }
            }
        }
        shape
    }

    /// A logo `size` px across centred on `centre`: a disc inside a ring, a word below.
    fn logo(centre: (f32, f32), size: f32, word: &str) -> Self {
        let disc = size * 0.22;
        let ring = size * 0.36;
        let mut shape = Shape {
            capsules: vec![Capsule {
                a: (centre.0, centre.1 - size * 0.12),
                b: (centre.0, centre.1 - size * 0.12),
                radius: disc,
            }],
        };
        let steps = 40;
        let at = |k: usize| {
            let t = k as f32 / steps as f32 * std::f32::consts::TAU;
            (
                centre.0 + ring * t.cos(),
                centre.1 - size * 0.12 + ring * t.sin(),
            )
        };
        for k in 0..steps {
            shape.capsules.push(Capsule {
                a: at(k),
                b: at(k + 1),
                radius: (size * 0.04).max(1.0),
            });
        }
        let height = (size * 0.16).max(8.0);
        let word_centre = (centre.0, centre.1 + size * 0.38);
        shape.capsules.extend(
            Shape::text(
                word,
                height,
                (height * 0.09).max(0.8),
                word_centre,
                0.0,
                0.0,
            )
            .capsules,
        );
        shape
    }

    /// Each pixel's coverage by the shape grown by `grow` px and moved by `offset`, its edge
    /// spread over `1 + soft` px.
    fn coverage(&self, (w, h): (u32, u32), grow: f32, offset: (f32, f32), soft: f32) -> Vec<f32> {
        let mut cover = vec![0f32; (w * h) as usize];
        let spread = 1.0 + soft;
        for c in &self.capsules {
            let reach = c.radius + grow + spread;
            let (x0, x1) = (
                c.a.0.min(c.b.0) + offset.0 - reach,
                c.a.0.max(c.b.0) + offset.0 + reach,
            );
            let (y0, y1) = (
                c.a.1.min(c.b.1) + offset.1 - reach,
                c.a.1.max(c.b.1) + offset.1 + reach,
            );
            let clip = |v: f32, n: u32| (v.floor().max(0.0) as u32).min(n);
            for y in clip(y0, h)..clip(y1 + 1.0, h) {
                for x in clip(x0, w)..clip(x1 + 1.0, w) {
                    let point = (x as f32 + 0.5 - offset.0, y as f32 + 0.5 - offset.1);
                    let inside = c.radius + grow - c.distance(point);
                    let v = (inside / spread + 0.5).clamp(0.0, 1.0);
                    let slot = &mut cover[(y * w + x) as usize];
                    *slot = slot.max(v);
                }
            }
        }
        cover
    }
}

/// The width in px of `text` with capitals `height` px tall.
fn text_width(text: &str, height: f32) -> f32 {
    let n = text.chars().count() as f32;
    ((n - 1.0) * font::ADVANCE + 4.0) * height / font::HEIGHT
}

/// How a layer colours the pixels it covers.
#[derive(Debug, Clone, Copy)]
enum Paint {
    Colour([f32; 3]),
    /// From `from` at `origin` to `to` at `origin + span`.
    Gradient {
        from: [f32; 3],
        to: [f32; 3],
        origin: (f32, f32),
        span: (f32, f32),
    },
    Invert,
}

struct Layer {
    alpha: Vec<f32>,
    paint: Paint,
}

/// Draws a mark of `style` over `photo` (RGB or RGBA) from `seed`.
pub fn mark(photo: &Raster, style: Style, seed: u64) -> Case {
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(style as u64));
    let size = photo.size();
    let (w, h) = (size.0 as f32, size.1 as f32);
    let word = *rng.pick(WORDS);
    let fill_opacity = rng.range(0.25, 0.85);
    // One line of text or a logo, somewhere in the image.
    let single = |rng: &mut Rng, big: bool| -> (Shape, f32) {
        if rng.chance(0.5) {
            let max_height = 0.85 * w / text_width(word, 1.0);
            let height = if big {
                rng.range(0.6, 1.0) * max_height.min(0.3 * h)
            } else {
                rng.range(12.0, 40.0).min(max_height)
            };
            let radius = height * rng.range(0.06, 0.13);
            let angle = if rng.chance(0.3) {
                rng.range(-0.6, 0.6)
            } else {
                0.0
            };
            let shear = if rng.chance(0.3) { 0.2 } else { 0.0 };
            let margin = (text_width(word, height) / 2.0 + 4.0).min(w / 2.0);
            let centre = (rng.range(margin, w - margin), rng.range(0.3 * h, 0.7 * h));
            (
                Shape::text(word, height, radius.max(0.7), centre, angle, shear),
                radius,
            )
        } else {
            let across = w.min(h)
                * if big {
                    rng.range(0.5, 0.8)
                } else {
                    rng.range(0.2, 0.4)
                };
            let centre = (
                rng.range(across * 0.6, w - across * 0.6),
                rng.range(across * 0.6, h - across * 0.6),
            );
            (Shape::logo(centre, across, word), across * 0.04)
        }
    };
    let colour = *rng.pick(COLOURS);
    let mut layers = Vec::new();
    match style {
        Style::Flat => {
            let (shape, _) = single(&mut rng, false);
            layers.push((
                shape.coverage(size, 0.0, (0.0, 0.0), 0.0),
                Paint::Colour(colour),
            ));
        }
        Style::Gradient => {
            let (shape, _) = single(&mut rng, true);
            let to = loop {
                let to = *rng.pick(COLOURS);
                if to != colour {
                    break to;
                }
            };
            let cover = shape.coverage(size, 0.0, (0.0, 0.0), 0.0);
            let (origin, span) = gradient_axis(&cover, size, rng.range(0.0, std::f32::consts::PI));
            let paint = Paint::Gradient {
                from: colour,
                to,
                origin,
                span,
            };
            layers.push((cover, paint));
        }
        Style::Outlined => {
            let height = rng.range(24.0, 60.0).min(0.85 * w / text_width(word, 1.0));
            let margin = text_width(word, height) / 2.0 + 6.0;
            let centre = (
                rng.range(margin, (w - margin).max(margin + 1.0)),
                rng.range(0.3 * h, 0.7 * h),
            );
            let shape = Shape::text(
                word,
                height,
                height * rng.range(0.07, 0.12),
                centre,
                0.0,
                0.0,
            );
            let light = colour.iter().sum::<f32>() > 382.0;
            let outline = if light {
                [0.0, 0.0, 0.0]
            } else {
                [255.0, 255.0, 255.0]
            };
            let grow = rng.range(1.0, 2.5);
            let outline_opacity = rng.range(0.4, 0.9);
            let under = shape.coverage(size, grow, (0.0, 0.0), 0.0);
            layers.push((scaled(under, outline_opacity), Paint::Colour(outline)));
            layers.push((
                shape.coverage(size, 0.0, (0.0, 0.0), 0.0),
                Paint::Colour(colour),
            ));
        }
        Style::Shadowed => {
            let (shape, radius) = single(&mut rng, false);
            let offset = (rng.range(1.5, 4.0), rng.range(1.5, 4.0));
            let soft = rng.range(0.5, 2.5);
            let shadow = shape.coverage(size, radius.min(1.0), offset, soft);
            layers.push((
                scaled(shadow, rng.range(0.3, 0.7)),
                Paint::Colour([0.0, 0.0, 0.0]),
            ));
            let fill = *rng.pick(&COLOURS[..1 + COLOURS.len() / 2]);
            let fill = if fill == [0.0, 0.0, 0.0] {
                [255.0; 3]
            } else {
                fill
            };
            layers.push((
                shape.coverage(size, 0.0, (0.0, 0.0), 0.0),
                Paint::Colour(fill),
            ));
        }
        Style::Tiled => {
            let angle = rng.range(0.35, 0.8) * if rng.chance(0.5) { 1.0 } else { -1.0 };
            let height = rng.range(14.0, 32.0);
            let radius = height * rng.range(0.06, 0.11);
            let (step_x, step_y) = (text_width(word, height) + height * 2.0, height * 3.5);
            let (sin, cos) = angle.sin_cos();
            let reach = (w * w + h * h).sqrt();
            let mut shape = Shape::default();
            let rows = (reach / step_y) as i32 + 1;
            let cols = (reach / step_x) as i32 + 1;
            for row in -rows..=rows {
                for col in -cols..=cols {
                    let stagger = if row % 2 == 0 { 0.0 } else { step_x / 2.0 };
                    let (u, v) = (col as f32 * step_x + stagger, row as f32 * step_y);
                    let centre = (w / 2.0 + u * cos - v * sin, h / 2.0 + u * sin + v * cos);
                    let margin = step_x;
                    if centre.0 < -margin
                        || centre.1 < -margin
                        || centre.0 > w + margin
                        || centre.1 > h + margin
                    {
                        continue;
                    }
                    shape.capsules.extend(
                        Shape::text(word, height, radius.max(0.7), centre, angle, 0.0).capsules,
                    );
                }
            }
            let opacity = rng.range(0.2, 0.5);
            let cover = shape.coverage(size, 0.0, (0.0, 0.0), 0.0);
            layers.push((scaled(cover, opacity / fill_opacity), Paint::Colour(colour)));
        }
        Style::Inverting => {
            let (shape, _) = single(&mut rng, false);
            let cover = shape.coverage(size, 0.0, (0.0, 0.0), 0.0);
            layers.push((
                scaled(cover, rng.range(0.15, 0.45) / fill_opacity),
                Paint::Invert,
            ));
        }
    }
    // The top layer carries the fill's opacity; the ones under it were scaled already.
    let top = layers.len() - 1;
    let layers: Vec<Layer> = layers
        .into_iter()
        .enumerate()
        .map(|(n, (alpha, paint))| Layer {
            alpha: if n == top {
                scaled(alpha, fill_opacity)
            } else {
                alpha
            },
            paint,
        })
        .collect();
    let opacity = layers[top].alpha.iter().fold(0f32, |m, &a| m.max(a));
    let (marked, mask) = composite(photo, &layers);
    Case {
        style,
        marked,
        clean: photo.clone(),
        mask,
        opacity,
    }
}

fn scaled(mut alpha: Vec<f32>, by: f32) -> Vec<f32> {
    for a in &mut alpha {
        *a = (*a * by).clamp(0.0, 1.0);
    }
    alpha
}

/// The gradient's axis across the covered pixels' bounding box, at `angle`: its start and
/// its extent.
fn gradient_axis(cover: &[f32], (w, _): (u32, u32), angle: f32) -> ((f32, f32), (f32, f32)) {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for (i, _) in cover.iter().enumerate().filter(|(_, c)| **c > 0.0) {
        let (x, y) = ((i as u32 % w) as f32, (i as u32 / w) as f32);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let (dx, dy) = (angle.cos(), angle.sin());
    let half = ((x1 - x0) * dx.abs() + (y1 - y0) * dy.abs()) / 2.0;
    let centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    (
        (centre.0 - dx * half, centre.1 - dy * half),
        (2.0 * half * dx, 2.0 * half * dy),
    )
}

/// `photo` under `layers`, bottom first, and the mask where any layer reaches half a level.
fn composite(photo: &Raster, layers: &[Layer]) -> (Raster, Mask) {
    let (w, h) = photo.size();
    let c = photo.channels as usize;
    let mut marked = photo.clone();
    let mut mask = Mask::new(w, h);
    for i in 0..(w * h) as usize {
        if layers.iter().all(|l| l.alpha[i] * 255.0 < 0.5) {
            continue;
        }
        mask.data[i] = 1;
        let (x, y) = ((i as u32 % w) as f32 + 0.5, (i as u32 / w) as f32 + 0.5);
        let mut v = [0, 1, 2].map(|k| photo.data[i * c + k] as f32);
        for layer in layers {
            let a = layer.alpha[i];
            let colour = match layer.paint {
                Paint::Colour(colour) => colour,
                Paint::Gradient {
                    from,
                    to,
                    origin,
                    span,
                } => {
                    let length = span.0 * span.0 + span.1 * span.1;
                    let t = (((x - origin.0) * span.0 + (y - origin.1) * span.1) / length.max(1.0))
                        .clamp(0.0, 1.0);
                    [0, 1, 2].map(|k| from[k] + t * (to[k] - from[k]))
                }
                Paint::Invert => v.map(|p| 255.0 - p),
            };
            v = [0, 1, 2].map(|k| (1.0 - a) * v[k] + a * colour[k]);
        }
        for (out, value) in marked.data[i * c..i * c + 3].iter_mut().zip(v) {
            *out = value.round().clamp(0.0, 255.0) as u8;
        }
    }
    (marked, mask)
}

/// A procedural photo `w` x `h` from `seed`: smooth colour gradients under waves of several
/// scales and directions, with fine grain; a stand-in for a photo where none is at hand.
pub fn texture(w: u32, h: u32, seed: u64) -> Raster {
    let mut rng = Rng::new(seed);
    let base = [0, 1, 2].map(|_| rng.range(60.0, 190.0));
    let tilt = [0, 1, 2].map(|_| (rng.range(-0.3, 0.3), rng.range(-0.3, 0.3)));
    let waves: Vec<(f32, f32, f32, [f32; 3])> = (0..6)
        .map(|_| {
            let period = rng.range(6.0, 80.0);
            let angle = rng.range(0.0, std::f32::consts::PI);
            let phase = rng.range(0.0, std::f32::consts::TAU);
            let amplitude = [0, 1, 2].map(|_| rng.range(4.0, 30.0));
            (std::f32::consts::TAU / period, angle, phase, amplitude)
        })
        .collect();
    let mut photo = Raster::filled(w, h, 3, 0);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let grain = (rng.next_u64() % 7) as f32 - 3.0;
            let v = [0, 1, 2].map(|k| {
                let mut v = base[k] + tilt[k].0 * fx + tilt[k].1 * fy + grain;
                for (freq, angle, phase, amplitude) in &waves {
                    v +=
                        amplitude[k] * (freq * (fx * angle.cos() + fy * angle.sin()) + phase).sin();
                }
                v.round().clamp(0.0, 255.0) as u8
            });
            photo.pixel_mut(x, y).copy_from_slice(&v);
        }
    }
    photo
}

/// A `w` x `h` crop of `photo` at an offset drawn from `seed` (the whole photo where it is
/// smaller).
pub fn crop(photo: &Raster, w: u32, h: u32, seed: u64) -> Raster {
    let mut rng = Rng::new(seed);
    let (w, h) = (w.min(photo.width), h.min(photo.height));
    let x0 = (rng.next_u64() % (photo.width - w + 1) as u64) as u32;
    let y0 = (rng.next_u64() % (photo.height - h + 1) as u64) as u32;
    let c = photo.channels;
    let mut out = Raster::filled(w, h, c, 0);
    for y in 0..h {
        let from = photo.offset(x0, y0 + y);
        let to = out.offset(0, y);
        let n = (w * c as u32) as usize;
        out.data[to..to + n].copy_from_slice(&photo.data[from..from + n]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_marks_inside_its_mask_only() {
        let photo = texture(200, 150, 3);
        for style in Style::ALL {
            for seed in 0..3 {
                let case = mark(&photo, style, seed);
                let marked = case.mask.count();
                assert!(marked > 50, "{style:?} {seed}: {marked} px");
                for i in 0..case.mask.data.len() {
                    if case.mask.data[i] == 0 {
                        assert_eq!(
                            case.marked.data[i * 3..i * 3 + 3],
                            photo.data[i * 3..i * 3 + 3]
                        );
                    }
                }
                let changed = (0..case.mask.data.len())
                    .filter(|&i| case.marked.data[i * 3..i * 3 + 3] != photo.data[i * 3..i * 3 + 3])
                    .count();
                assert!(
                    changed * 2 > marked,
                    "{style:?} {seed}: {changed} of {marked} changed"
                );
            }
        }
    }

    #[test]
    fn a_seed_draws_the_same_case() {
        let photo = texture(120, 90, 1);
        let (a, b) = (
            mark(&photo, Style::Gradient, 9),
            mark(&photo, Style::Gradient, 9),
        );
        assert_eq!(a.marked, b.marked);
        assert_ne!(a.marked, mark(&photo, Style::Gradient, 10).marked);
    }

    #[test]
    fn tiles_cover_the_whole_image() {
        let photo = texture(300, 200, 2);
        let case = mark(&photo, Style::Tiled, 4);
        // Every 50 px block holds part of the mark.
        for by in 0..4 {
            for bx in 0..6 {
                let any = (by * 50..by * 50 + 50)
                    .any(|y| (bx * 50..bx * 50 + 50).any(|x| case.mask.get(x, y)));
                assert!(any, "block {bx},{by}");
            }
        }
    }

    #[test]
    fn a_crop_is_part_of_the_photo() {
        let photo = texture(100, 80, 5);
        let part = crop(&photo, 40, 30, 1);
        assert_eq!(part.size(), (40, 30));
        let found = (0..=60).any(|x0| {
            (0..=50).any(|y0| (0..30).all(|y| part.pixel(0, y) == photo.pixel(x0, y0 + y)))
        });
        assert!(found);
    }
}
