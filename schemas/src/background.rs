//! Parameters of the background-removal pipeline: `segment` (the model stage) and
//! `composite` (alpha, mask refinement and backgrounds). `decode`, `prescale` and `encode`
//! are the watermark pipeline's stages with their own parameters.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::params::{
    DecodeParams, EncodeParams, OutputFormat, ParamError, PrescaleParams, check_range,
};

/// `segment`: runs the segmentation network over the working image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentParams {
    /// The network: `isnet` (ISNet general use, rembg's `isnet-general-use`).
    pub model: String,
}

impl Default for SegmentParams {
    fn default() -> Self {
        Self {
            model: "isnet".into(),
        }
    }
}

impl SegmentParams {
    /// Checks the model name.
    pub fn validate(&self) -> Result<(), ParamError> {
        match self.model.as_str() {
            "isnet" | "isnet-general-use" => Ok(()),
            other => Err(ParamError::new(
                "model",
                format!("model must be isnet, got {other:?}"),
            )),
        }
    }
}

/// What a background removal returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackgroundMode {
    /// The photo with the background transparent (RGBA), or over `bg_color`/`bg_image`/
    /// `bg_blur` where one is given.
    #[default]
    Rgba,
    /// Only the alpha mask, a grayscale image (rembg's `only_mask`).
    Mask,
    /// The subject over a background: `bg_color` (white by default), `bg_image` or the
    /// photo blurred by `bg_blur`.
    Composite,
}

impl BackgroundMode {
    /// Parses `rgba`, `mask` or `composite`.
    pub fn parse(name: &str) -> Result<Self, ParamError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "rgba" => Ok(Self::Rgba),
            "mask" => Ok(Self::Mask),
            "composite" => Ok(Self::Composite),
            _ => Err(ParamError::new(
                "mode",
                format!("mode must be rgba, mask or composite, got {name:?}"),
            )),
        }
    }
}

/// A colour `[r, g, b, a]`, written `#RRGGBB` or `#RRGGBBAA` (or rembg's `r,g,b,a`).
pub type Rgba = [u8; 4];

/// Parses `#RRGGBB`, `#RRGGBBAA`, `RRGGBB[AA]`, or rembg's `bgcolor` forms `r,g,b,a` and
/// `[r, g, b, a]`.
pub fn parse_color(name: &str, text: &str) -> Result<Rgba, ParamError> {
    let t = text.trim();
    let bad = || {
        ParamError::new(
            name,
            format!("{name} must be #RRGGBB, #RRGGBBAA or r,g,b,a, got {text:?}"),
        )
    };
    if t.contains(',') {
        let parts: Vec<u8> = t
            .trim_start_matches(['[', '('])
            .trim_end_matches([']', ')'])
            .split(',')
            .map(|p| p.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        return match parts[..] {
            [r, g, b] => Ok([r, g, b, 255]),
            [r, g, b, a] => Ok([r, g, b, a]),
            _ => Err(bad()),
        };
    }
    let hex = t.strip_prefix('#').unwrap_or(t);
    if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    let a = if hex.len() == 8 { byte(6)? } else { 255 };
    Ok([byte(0)?, byte(2)?, byte(4)?, a])
}

/// `composite`: turns the model's alpha into the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CompositeParams {
    /// What to return.
    pub mode: BackgroundMode,
    /// A background colour to put the subject on.
    pub bg_color: Option<Rgba>,
    /// Blur the photo's own background by this radius (pixels at full size) instead of
    /// removing it; 0 is off.
    pub bg_blur: u32,
    /// Crop the output to the subject's bounding box.
    pub crop: bool,
    /// Pixels kept around the subject when cropping.
    pub crop_margin: u32,
    /// rembg's `post_process_mask`: a morphological opening, a Gaussian blur and a threshold,
    /// which give a hard, clean-edged mask.
    pub post_process_mask: bool,
    /// Refine the alpha inside the uncertain band at the subject's edge, guided by the photo
    /// (rembg's `alpha_matting`, computed with a guided filter in linear time).
    pub alpha_matting: bool,
    /// Alpha above this (0..255) is sure foreground (rembg's `af`).
    pub foreground_threshold: u8,
    /// Alpha below this (0..255) is sure background (rembg's `ab`).
    pub background_threshold: u8,
    /// The sure regions are eroded by this many pixels before matting (rembg's `ae`).
    pub erode_size: u32,
    /// Estimate the subject's own colours where it is semi-transparent, so that edges do not
    /// carry a halo of the old background (rembg's `dc`).
    pub decontaminate: bool,
    /// Keep the alpha channel even when every pixel is opaque (a colour background); by
    /// default such an image is written as RGB. rembg always answers RGBA.
    pub keep_alpha: bool,
}

impl Default for CompositeParams {
    fn default() -> Self {
        Self {
            mode: BackgroundMode::Rgba,
            bg_color: None,
            bg_blur: 0,
            crop: false,
            crop_margin: 0,
            post_process_mask: false,
            alpha_matting: false,
            foreground_threshold: 240,
            background_threshold: 10,
            erode_size: 10,
            decontaminate: false,
            keep_alpha: false,
        }
    }
}

impl CompositeParams {
    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("bg_blur", self.bg_blur, 0, 500)?;
        check_range("crop_margin", self.crop_margin, 0, 4096)?;
        check_range("erode_size", self.erode_size, 0, 255)?;
        if self.background_threshold >= self.foreground_threshold {
            return Err(ParamError::new(
                "background_threshold",
                format!(
                    "background_threshold ({}) must be below foreground_threshold ({})",
                    self.background_threshold, self.foreground_threshold
                ),
            ));
        }
        if self.mode == BackgroundMode::Mask && (self.bg_color.is_some() || self.bg_blur > 0) {
            return Err(ParamError::new(
                "mode",
                "bg_color and bg_blur need mode rgba or composite, not mask",
            ));
        }
        if self.bg_color.is_some() && self.bg_blur > 0 {
            return Err(ParamError::new(
                "bg_color",
                "give one background: bg_color, bg_blur or bg_image",
            ));
        }
        Ok(())
    }
}

/// Everything a client may set on a background removal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackgroundOptions {
    /// Limits of the decode step.
    pub decode: DecodeParams,
    /// Working image size (the model runs at 1024x1024 whatever it is).
    pub prescale: PrescaleParams,
    /// The network.
    pub segment: SegmentParams,
    /// Alpha and background.
    pub composite: CompositeParams,
    /// Output (PNG by default: the result has an alpha channel).
    pub encode: EncodeParams,
}

impl BackgroundOptions {
    /// Checks every parameter.
    pub fn validate(&self) -> Result<(), ParamError> {
        self.decode.validate()?;
        self.prescale.validate()?;
        self.segment.validate()?;
        self.composite.validate()?;
        self.encode.validate()
    }
}

/// Optional settings of a background removal; each absent one takes the server's default.
/// The HTTP form, the rembg-compatible endpoint and the CLI fill one of these and call
/// [`BackgroundParams::apply`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BackgroundParams {
    /// `rgba`, `mask` or `composite`.
    pub mode: Option<BackgroundMode>,
    /// Background colour.
    pub bg_color: Option<Rgba>,
    /// Blur radius of the photo's own background.
    pub bg_blur: Option<u32>,
    /// Crop to the subject.
    pub crop: Option<bool>,
    /// Margin kept when cropping.
    pub crop_margin: Option<u32>,
    /// rembg's `post_process_mask`.
    pub post_process_mask: Option<bool>,
    /// rembg's `alpha_matting`.
    pub alpha_matting: Option<bool>,
    /// rembg's `alpha_matting_foreground_threshold` (`af`).
    pub foreground_threshold: Option<u8>,
    /// rembg's `alpha_matting_background_threshold` (`ab`).
    pub background_threshold: Option<u8>,
    /// rembg's `alpha_matting_erode_size` (`ae`).
    pub erode_size: Option<u32>,
    /// Estimate foreground colours at the edges (rembg's `dc`).
    pub decontaminate: Option<bool>,
    /// Keep the alpha channel of an opaque result.
    pub keep_alpha: Option<bool>,
    /// Output format: `png` (default) or `webp` (lossless); `jpeg` flattens onto white.
    pub format: Option<OutputFormat>,
    /// Longest side of the working image the network's input is made from.
    pub work_max_side: Option<u32>,
}

impl BackgroundParams {
    /// `defaults` with these settings applied, validated.
    pub fn apply(&self, defaults: &BackgroundOptions) -> Result<BackgroundOptions, ParamError> {
        let mut o = defaults.clone();
        let c = &mut o.composite;
        macro_rules! set {
            ($($field:ident => $target:expr),* $(,)?) => {
                $(if let Some(v) = self.$field.clone() { $target = v; })*
            };
        }
        set!(
            mode => c.mode,
            bg_blur => c.bg_blur,
            crop => c.crop,
            crop_margin => c.crop_margin,
            post_process_mask => c.post_process_mask,
            alpha_matting => c.alpha_matting,
            foreground_threshold => c.foreground_threshold,
            background_threshold => c.background_threshold,
            erode_size => c.erode_size,
            decontaminate => c.decontaminate,
            keep_alpha => c.keep_alpha,
            work_max_side => o.prescale.work_max_side,
        );
        if self.bg_color.is_some() {
            o.composite.bg_color = self.bg_color;
        }
        if self.format.is_some() {
            o.encode.format = self.format;
        }
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_in_every_accepted_form() {
        assert_eq!(
            parse_color("bg_color", "#ff8000").expect("valid test input"),
            [255, 128, 0, 255]
        );
        assert_eq!(
            parse_color("bg_color", "FF800080").expect("valid test input"),
            [255, 128, 0, 128]
        );
        assert_eq!(
            parse_color("bgc", "255, 0, 0, 100").expect("valid test input"),
            [255, 0, 0, 100]
        );
        assert_eq!(
            parse_color("bgc", "[1,2,3]").expect("valid test input"),
            [1, 2, 3, 255]
        );
        let err = parse_color("bg_color", "red").expect_err("must fail");
        assert!(
            err.message.contains("#RRGGBB") && err.message.contains("\"red\""),
            "{err}"
        );
        assert!(parse_color("bgc", "1,2,300").is_err());
    }

    #[test]
    fn params_apply_over_defaults() {
        let p = BackgroundParams {
            mode: Some(BackgroundMode::Composite),
            bg_color: Some([1, 2, 3, 255]),
            erode_size: Some(4),
            ..Default::default()
        };
        let o = p
            .apply(&BackgroundOptions::default())
            .expect("valid test input");
        assert_eq!(o.composite.mode, BackgroundMode::Composite);
        assert_eq!(o.composite.bg_color, Some([1, 2, 3, 255]));
        assert_eq!(o.composite.erode_size, 4);
        assert_eq!(o.composite.foreground_threshold, 240);
        let bad = BackgroundParams {
            bg_blur: Some(501),
            ..Default::default()
        };
        assert!(bad.apply(&BackgroundOptions::default()).is_err());
    }

    #[test]
    fn contradictions_are_named() {
        let p = CompositeParams {
            background_threshold: 200,
            foreground_threshold: 100,
            ..Default::default()
        };
        assert!(
            p.validate()
                .expect_err("must fail")
                .message
                .contains("below")
        );
        let p = CompositeParams {
            mode: BackgroundMode::Mask,
            bg_blur: 3,
            ..Default::default()
        };
        assert!(
            p.validate()
                .expect_err("must fail")
                .message
                .contains("mode rgba or composite")
        );
        assert!(BackgroundMode::parse("alpha").is_err());
    }
}
