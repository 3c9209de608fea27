//! `detect`: the mask the inpainter uses.
//!
//! With a client mask (or a `detector` plugin's): check its size. With a watermark profile:
//! find the profile's mark and unblend it. With neither: find the watermark with the built-in
//! detector network ([`auto`]). Then grow the mask by `mask_dilate` (a disk) and make the
//! working resolution copy.

pub mod auto;
pub mod tiled;

use std::sync::Arc;

use unmark_schemas::FailureReason;
use unmark_schemas::params::{self, DetectParams};

use crate::artifact;
use crate::{Artifacts, Mask, Produced, Stage, StageError, StageOutput};

/// Grows `mask` by a disk of `radius` pixels.
pub fn dilate(mask: &Mask, radius: u32) -> Mask {
    if radius == 0 {
        return mask.clone();
    }
    let (w, h) = (mask.width as usize, mask.height as usize);
    let r = radius as i64;
    // Half-width of the disk on each row offset.
    let spans: Vec<usize> = (-r..=r)
        .map(|dy| (((r * r - dy * dy) as f64).sqrt().floor()) as usize)
        .collect();
    // Per source row, a prefix count of set pixels: a horizontal dilation is then O(1) a pixel.
    let prefix: Vec<Vec<u32>> = mask
        .data
        .chunks_exact(w)
        .map(|row| {
            let mut p = Vec::with_capacity(w + 1);
            p.push(0);
            let mut sum = 0;
            for &v in row {
                sum += u32::from(v != 0);
                p.push(sum);
            }
            p
        })
        .collect();
    let mut out = Mask::new(mask.width, mask.height);
    for y in 0..h {
        let row = &mut out.data[y * w..(y + 1) * w];
        for (k, &half) in spans.iter().enumerate() {
            let sy = y as i64 + k as i64 - r;
            if sy < 0 || sy >= h as i64 {
                continue;
            }
            let p = &prefix[sy as usize];
            if p[w] == 0 {
                continue;
            }
            for (x, v) in row.iter_mut().enumerate() {
                if *v == 0 {
                    let lo = x.saturating_sub(half);
                    let hi = (x + half + 1).min(w);
                    *v = u8::from(p[hi] > p[lo]);
                }
            }
        }
    }
    out
}

/// Shrinks `mask` to `width` x `height`: a working pixel is set when any full-resolution
/// pixel under it is, so the working mask always covers the mark.
pub fn shrink(mask: &Mask, width: u32, height: u32) -> Mask {
    let mut out = Mask::new(width, height);
    let sx = mask.width as f64 / width as f64;
    let sy = mask.height as f64 / height as f64;
    for y in 0..mask.height {
        let wy = ((y as f64 / sy) as u32).min(height - 1);
        for x in 0..mask.width {
            if mask.get(x, y) {
                let wx = ((x as f64 / sx) as u32).min(width - 1);
                out.set(wx, wy, true);
            }
        }
    }
    out
}

/// The mask at working size: shrunk so that it covers the mark, and grown by one working
/// pixel for what the resampling kernel smears across the edge.
pub fn working_mask(mask: &Mask, width: u32, height: u32) -> Mask {
    dilate(&shrink(mask, width, height), 1)
}

/// The client's mask, checked against the image size and grown by `dilate` pixels.
pub fn prepare_mask(
    user: &Mask,
    image_size: (u32, u32),
    dilate_px: u32,
) -> Result<Mask, StageError> {
    if user.size() != image_size {
        return Err(StageError::new(
            FailureReason::MaskSizeMismatch,
            format!(
                "mask is {}x{} but image is {}x{}",
                user.width, user.height, image_size.0, image_size.1
            ),
        ));
    }
    Ok(dilate(user, dilate_px))
}

/// The `detect` stage: `user_mask` to `mask` (full size) and `work_mask` (working size).
/// With no mask, it runs the built-in detector: on the CPU ([`DetectStage::default`]), or on
/// the network it was given ([`DetectStage::with_network`], the weights on another device).
#[derive(Debug, Default, Clone)]
pub struct DetectStage {
    network: Option<Arc<auto::Network>>,
}

impl DetectStage {
    /// The stage running the detector `network` (the built-in weights on a chosen device:
    /// [`auto::Network::builtin_on`]).
    pub fn with_network(network: Arc<auto::Network>) -> Self {
        Self {
            network: Some(network),
        }
    }

    fn network(&self) -> &auto::Network {
        self.network
            .as_deref()
            .unwrap_or_else(|| auto::Network::builtin())
    }
}

impl Stage for DetectStage {
    fn name(&self) -> &'static str {
        "detect"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["image", "work", "user_mask", "profile"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let p: DetectParams = params::parse("detect", params)?;
        p.validate()?;
        let profile = inputs
            .optional("profile")
            .map(|b| crate::profile::Profile::from_json(b))
            .transpose()?;
        let user = inputs.optional("user_mask");
        let profiled = profile.is_some();
        let image = artifact::read_header(inputs.require("image")?)?;
        let work = artifact::read_header(inputs.require("work")?)?;
        let mut out = StageOutput::default();
        // A profile's mark is found and unblended here, at full size; a mask sent with it is
        // inpainted as usual.
        if let Some(profile) = profile {
            let mut decoded = artifact::read_image(inputs.require("image")?)?;
            let at = crate::profile::locate(&profile, &decoded.raster).ok_or_else(|| {
                StageError::new(
                    FailureReason::MaskRequired,
                    "the profile's watermark does not fit in this image",
                )
            })?;
            crate::profile::unblend(&mut decoded.raster, &profile, at);
            out = out.with("image", Produced::Blob(artifact::write_image(&decoded)));
        }
        let mask = match user {
            Some(user) => prepare_mask(
                &artifact::read_mask(user)?,
                (image.width, image.height),
                p.mask_dilate,
            )?,
            None if profiled => Mask::new(image.width, image.height),
            None => {
                let decoded = artifact::read_image(inputs.require("image")?)?;
                let found = auto::detect(self.network(), &decoded.raster, p.threshold)?;
                tracing::info!(pixels = found.count(), "detected the watermark");
                // The inpainter restores a loose mask of the detector's region by region.
                out = out.with(
                    crate::inpaint::DETECTED_ARTIFACT,
                    Produced::Blob(bytes::Bytes::from_static(crate::inpaint::DETECTED)),
                );
                dilate(&found, p.mask_dilate + auto::GROWTH)
            }
        };
        let out = out.with("mask", Produced::Blob(artifact::write_mask(&mask)));
        if (work.width, work.height) == mask.size() {
            return Ok(out.with("work_mask", Produced::Alias("mask")));
        }
        let work_mask = working_mask(&mask, work.width, work.height);
        Ok(out.with(
            "work_mask",
            Produced::Blob(artifact::write_mask(&work_mask)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dilation_is_a_disk() {
        let mut m = Mask::new(9, 9);
        m.set(4, 4, true);
        let d = dilate(&m, 2);
        // Offsets with dx*dx + dy*dy <= 4: 13 of them.
        assert_eq!(d.count(), 13);
        assert!(d.get(4, 2) && d.get(2, 4) && d.get(3, 3));
        assert!(!d.get(2, 2) && !d.get(3, 2));
        assert_eq!(dilate(&m, 0), m);
    }

    #[test]
    fn shrinking_keeps_every_marked_pixel_covered() {
        let mut m = Mask::new(100, 50);
        m.set(99, 49, true);
        m.set(0, 0, true);
        let s = shrink(&m, 33, 17);
        assert!(s.get(32, 16) && s.get(0, 0));
        assert_eq!(s.count(), 2);
    }

    /// The detect stage's outputs for a flat 48 x 32 image, with or without a client's mask.
    fn detect_outputs(user_mask: bool) -> Vec<&'static str> {
        let image = artifact::write_image(&artifact::DecodedImage {
            raster: crate::Raster::filled(48, 32, 3, 120),
            format: artifact::SourceFormat::Png,
            icc: None,
            exif: None,
        });
        let mut inputs = Artifacts::default();
        inputs.0.insert("image".into(), image.clone());
        inputs.0.insert("work".into(), image);
        if user_mask {
            let mask = artifact::write_mask(&Mask::new(48, 32));
            inputs.0.insert("user_mask".into(), mask);
        }
        let out = DetectStage::default()
            .run(&inputs, &serde_json::json!({}))
            .expect("detect");
        out.artifacts.iter().map(|(name, _)| *name).collect()
    }

    /// The inpainter learns who drew the mask: the stage marks the built-in detector's masks,
    /// and not a client's.
    #[test]
    fn the_detectors_mask_is_marked_as_found() {
        let detected = crate::inpaint::DETECTED_ARTIFACT;
        assert!(detect_outputs(false).contains(&detected));
        let drawn = detect_outputs(true);
        assert!(drawn.contains(&"mask") && !drawn.contains(&detected));
    }

    #[test]
    fn size_mismatch_names_both_sizes() {
        let err = prepare_mask(&Mask::new(640, 480), (1024, 768), 2).expect_err("mismatch");
        assert_eq!(err.reason, FailureReason::MaskSizeMismatch);
        assert_eq!(err.message, "mask is 640x480 but image is 1024x768");
    }
}
