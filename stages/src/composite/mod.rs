//! `composite`: the model's alpha to the finished cut-out.
//!
//! The alpha (at the working size) is scaled to the photo, optionally hardened
//! ([`matting::post_process`]) or refined at the edge ([`matting::refine_alpha`]); the
//! subject's colours are optionally freed of the old background
//! ([`matting::estimate_foreground`]); then the result is the alpha alone, the RGBA cut-out,
//! or the subject over a colour, an image or its own blurred background, optionally cropped
//! to the subject.

pub mod filters;
pub mod matting;

use fast_image_resize::FilterType;
use unmark_schemas::background::{BackgroundMode, CompositeParams};
use unmark_schemas::params;

use crate::artifact::{self, DecodedImage, SourceFormat};
use crate::prescale::resize;
use crate::{Artifacts, Produced, Raster, Stage, StageError, StageOutput};
use filters::{Plane, box_mean, to_u8};
use matting::Trimap;

/// What the subject goes over.
enum Backdrop {
    /// Nothing: transparent.
    None,
    /// Colour planes (0..1) and their opacity per pixel.
    Planes(Vec<Plane>, Plane),
}

/// Scales `alpha` (one channel) to `size` if it is not that size already.
fn fit_alpha(alpha: &Raster, size: (u32, u32)) -> Result<Raster, StageError> {
    if alpha.size() == size {
        return Ok(alpha.clone());
    }
    resize(alpha, None, size.0, size.1, FilterType::Lanczos3)
}

/// A background image scaled to cover `size` (centre crop), as planes and opacity.
fn cover(background: &Raster, size: (u32, u32)) -> Result<(Vec<Plane>, Plane), StageError> {
    let (w, h) = (size.0 as f64, size.1 as f64);
    let (bw, bh) = (background.width as f64, background.height as f64);
    let scale = (w / bw).max(h / bh);
    let (cw, ch) = (w / scale, h / scale);
    let crop = ((bw - cw) / 2.0, (bh - ch) / 2.0, cw, ch);
    let fitted = resize(background, Some(crop), size.0, size.1, FilterType::Lanczos3)?;
    Ok(planes(&fitted))
}

/// The colour planes and the opacity of an 8-bit image (gray, gray+alpha, RGB or RGBA).
fn planes(r: &Raster) -> (Vec<Plane>, Plane) {
    let (w, h, c) = (r.width as usize, r.height as usize, r.channels as usize);
    let colour = |i: usize| Plane::from_u8(w, h, &r.data, c, if c < 3 { 0 } else { i });
    let opacity = match c {
        2 => Plane::from_u8(w, h, &r.data, c, 1),
        4 => Plane::from_u8(w, h, &r.data, c, 3),
        _ => Plane::new(w, h, vec![1.0; w * h]),
    };
    ((0..3).map(colour).collect(), opacity)
}

/// A blur of radius about `r` (three box passes approximate a Gaussian) of the background
/// only: pixels are weighted by `1 - alpha`, so the subject does not bleed into it.
fn blurred_background(colour: &[Plane], alpha: &Plane, r: usize) -> Vec<Plane> {
    let pass = (r / 2).max(1);
    let blur3 = |p: &Plane| box_mean(&box_mean(&box_mean(p, pass), pass), pass);
    let weight = blur3(&alpha.map(|a| 1.0 - a));
    colour
        .iter()
        .map(|c| {
            let weighted = blur3(&c.zip(alpha, |v, a| v * (1.0 - a)));
            weighted.zip(&weight, |s, w| if w > 1e-4 { s / w } else { 0.0 })
        })
        .collect()
}

/// Alpha at or below this is invisible for cropping: Lanczos scaling rings a few levels past
/// the subject's edge, and a crop should follow what can be seen (rembg's default `ab`).
const CROP_ALPHA: u8 = 10;

/// The bounding box `(x0, y0, x1, y1)` of alpha above [`CROP_ALPHA`], grown by `margin`;
/// `None` if there is none.
fn subject_box(alpha: &[u8], width: u32, height: u32, margin: u32) -> Option<(u32, u32, u32, u32)> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (i, &a) in alpha.iter().enumerate() {
        if a > CROP_ALPHA {
            let (x, y) = ((i % width as usize) as u32, (i / width as usize) as u32);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    (x0 < x1).then(|| {
        (
            x0.saturating_sub(margin),
            y0.saturating_sub(margin),
            (x1 + margin).min(width),
            (y1 + margin).min(height),
        )
    })
}

fn crop_raster(r: &Raster, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> Raster {
    let c = r.channels as usize;
    let mut data = Vec::with_capacity((x1 - x0) as usize * (y1 - y0) as usize * c);
    for y in y0..y1 {
        let start = r.offset(x0, y);
        data.extend_from_slice(&r.data[start..start + (x1 - x0) as usize * c]);
    }
    Raster {
        width: x1 - x0,
        height: y1 - y0,
        channels: r.channels,
        data,
    }
}

/// The finished image for `image` and the model's `alpha`, with `background` the decoded
/// `bg_image` where one was sent.
pub fn composite(
    image: &DecodedImage,
    alpha: &Raster,
    background: Option<&Raster>,
    p: &CompositeParams,
) -> Result<Raster, StageError> {
    let photo = &image.raster;
    let size = photo.size();
    let (w, h) = (size.0 as usize, size.1 as usize);
    let alpha = fit_alpha(alpha, size)?;
    let mut a = Plane::from_u8(w, h, &alpha.data, 1, 0);
    if p.post_process_mask {
        a = matting::post_process(&a);
    }
    let channels = photo.channels as usize;
    if p.alpha_matting {
        let trimap = Trimap {
            foreground: p.foreground_threshold,
            background: p.background_threshold,
            erode: p.erode_size as usize,
        };
        a = matting::refine_alpha(&a, &matting::luma(&photo.data, w, h, channels), trimap);
    }
    let alpha8 = a.to_u8();
    let crop = p
        .crop
        .then(|| subject_box(&alpha8, size.0, size.1, p.crop_margin))
        .flatten();
    let finish = |r: Raster| match crop {
        Some(b) => crop_raster(&r, b),
        None => r,
    };
    if p.mode == BackgroundMode::Mask {
        return Ok(finish(Raster {
            width: size.0,
            height: size.1,
            channels: 1,
            data: alpha8,
        }));
    }
    let (colour, _) = planes(photo);
    let estimated;
    let fg: &[Plane] = if p.decontaminate || p.alpha_matting {
        estimated = matting::estimate_foreground(&colour, &a);
        &estimated
    } else {
        &colour
    };
    let backdrop = if let Some(bg) = background {
        let (c, o) = cover(bg, size)?;
        Backdrop::Planes(c, o)
    } else if let Some([r, g, b, o]) = p.bg_color {
        let flat = |v: u8| Plane::new(w, h, vec![f32::from(v) / 255.0; w * h]);
        Backdrop::Planes(vec![flat(r), flat(g), flat(b)], flat(o))
    } else if p.bg_blur > 0 {
        let blurred = blurred_background(&colour, &a, p.bg_blur as usize);
        Backdrop::Planes(blurred, Plane::new(w, h, vec![1.0; w * h]))
    } else if p.mode == BackgroundMode::Composite {
        let white = Plane::new(w, h, vec![1.0; w * h]);
        Backdrop::Planes(vec![white.clone(), white.clone(), white.clone()], white)
    } else {
        Backdrop::None
    };
    let mut out = Vec::with_capacity(w * h * 4);
    let opaque = match &backdrop {
        Backdrop::None => {
            for (i, &a) in alpha8.iter().enumerate() {
                out.extend_from_slice(&[
                    to_u8(fg[0].data[i]),
                    to_u8(fg[1].data[i]),
                    to_u8(fg[2].data[i]),
                    a,
                ]);
            }
            false
        }
        Backdrop::Planes(bg, bo) => {
            let mut opaque = true;
            for i in 0..w * h {
                let (fa, ba) = (a.data[i], bo.data[i] * (1.0 - a.data[i]));
                let oa = fa + ba;
                let mix = |c: usize| {
                    if oa > 0.0 {
                        (fg[c].data[i] * fa + bg[c].data[i] * ba) / oa
                    } else {
                        0.0
                    }
                };
                let alpha_out = to_u8(oa);
                opaque &= alpha_out == 255;
                out.extend_from_slice(&[to_u8(mix(0)), to_u8(mix(1)), to_u8(mix(2)), alpha_out]);
            }
            opaque
        }
    };
    let mut result = Raster {
        width: size.0,
        height: size.1,
        channels: 4,
        data: out,
    };
    if opaque && !p.keep_alpha {
        result.data = result
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        result.channels = 3;
    }
    Ok(finish(result))
}

/// The `composite` stage: `image` + `alpha` (+ `background`) to `composite`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CompositeStage;

impl Stage for CompositeStage {
    fn name(&self) -> &'static str {
        "composite"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["image", "alpha", "background"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let p: CompositeParams = params::parse("composite", params)?;
        p.validate()?;
        let image = artifact::read_image(inputs.require("image")?)?;
        let alpha = artifact::read_image(inputs.require("alpha")?)?;
        let background = inputs
            .optional("background")
            .map(|b| artifact::read_image(b))
            .transpose()?;
        let raster = composite(
            &image,
            &alpha.raster,
            background.as_ref().map(|b| &b.raster),
            &p,
        )?;
        // The result has an alpha channel (or is a mask): PNG unless the client asks
        // otherwise. The ICC profile and EXIF of the photo go with it.
        let out = DecodedImage {
            raster,
            format: SourceFormat::Png,
            icc: image.icc,
            exif: image.exif,
        };
        Ok(StageOutput::default().with("composite", Produced::Blob(artifact::write_image(&out))))
    }
}

#[cfg(test)]
mod tests;
