//! Parameters of each built-in stage, and the user-facing options of the watermark pipeline.
//!
//! The doc comments here are the user documentation of each parameter: they are copied into the
//! published JSON Schemas. Every struct rejects unknown fields, so a typo is an error rather
//! than a silently ignored setting.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Default inpainting radius in pixels (chosen by measurement on the dev set, see docs/benchmarks.md).
pub const DEFAULT_RADIUS: u32 = 5;
/// Default mask dilation in pixels (chosen by measurement on the dev set, see docs/benchmarks.md).
pub const DEFAULT_MASK_DILATE: u32 = 0;
/// Default longest side of the working image (chosen by measurement, see docs/benchmarks.md).
pub const DEFAULT_WORK_MAX_SIDE: u32 = 4096;
/// Default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 95;
/// Default pixel limit in megapixels.
pub const DEFAULT_MAX_MEGAPIXELS: f64 = 50.0;
/// Default input size limit in bytes (32 MiB).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 32 * 1024 * 1024;

/// A parameter that is malformed or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The parameter's name.
    pub param: String,
    /// What was expected and what came.
    pub message: String,
}

impl ParamError {
    /// A new error about `param`; `message` must make sense on its own.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            message: message.into(),
        }
    }
}

pub(crate) fn check_range<T: PartialOrd + fmt::Display>(
    name: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ParamError> {
    if value < min || value > max {
        return Err(ParamError::new(
            name,
            format!("{name} must be from {min} to {max}, got {value}"),
        ));
    }
    Ok(())
}

/// `decode`: reads the input image (and the mask, where one was sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeParams {
    /// Largest accepted image, in megapixels (width x height / 1e6). Checked from the file
    /// header before any pixel is decoded.
    pub max_megapixels: f64,
    /// Largest accepted encoded input, in bytes.
    pub max_input_bytes: u64,
}

impl Default for DecodeParams {
    fn default() -> Self {
        Self {
            max_megapixels: DEFAULT_MAX_MEGAPIXELS,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

impl DecodeParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !(self.max_megapixels > 0.0 && self.max_megapixels <= 1000.0) {
            return Err(ParamError::new(
                "max_megapixels",
                format!(
                    "max_megapixels must be above 0 and at most 1000, got {}",
                    self.max_megapixels
                ),
            ));
        }
        check_range(
            "max_input_bytes",
            self.max_input_bytes,
            1,
            1024 * 1024 * 1024,
        )
    }
}

/// `prescale`: computes the working image the inpainter sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PrescaleParams {
    /// Longest side of the working image in pixels; larger images are downscaled for
    /// inpainting and the result is scaled back inside the mask only.
    pub work_max_side: u32,
}

impl Default for PrescaleParams {
    fn default() -> Self {
        Self {
            work_max_side: DEFAULT_WORK_MAX_SIDE,
        }
    }
}

impl PrescaleParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("work_max_side", self.work_max_side, 64, 16384)
    }
}

/// `detect`: turns the client's mask into the mask the inpainter uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DetectParams {
    /// Grow the mask by this many pixels (a disk), to cover anti-aliased or JPEG-smeared
    /// edges of the mark.
    pub mask_dilate: u32,
    /// With no mask and no profile, the built-in detector marks the pixels whose watermark
    /// probability is above this (0.01 to 0.99): lower finds more of a faint mark, higher
    /// touches less of the photo.
    pub threshold: f32,
}

/// The detector's default probability threshold.
pub const DEFAULT_DETECT_THRESHOLD: f32 = 0.5;

impl Default for DetectParams {
    fn default() -> Self {
        Self {
            mask_dilate: DEFAULT_MASK_DILATE,
            threshold: DEFAULT_DETECT_THRESHOLD,
        }
    }
}

impl DetectParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("mask_dilate", self.mask_dilate, 0, 64)?;
        check_range("threshold", self.threshold, 0.01, 0.99)
    }
}

/// Inpainting engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Telea's fast marching method (2004): fills from the mask's edge inwards, then a
    /// harmonic refinement.
    Telea,
    /// Unblends semi-transparent marks (estimates the mark's colour and alpha and inverts
    /// the blend), falling back to the `telea` fill where the mark is opaque. The default:
    /// on the dev set it is never more than 0.3 dB below `telea` and 2.5 dB above on average.
    #[default]
    Restore,
}

impl Engine {
    /// All engines, for error messages and health output.
    pub const ALL: [Engine; 2] = [Engine::Telea, Engine::Restore];

    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telea => "telea",
            Self::Restore => "restore",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Result<Self, ParamError> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| {
                ParamError::new(
                    "engine",
                    format!("engine must be telea or restore, got {name:?}"),
                )
            })
    }
}

/// `inpaint`: fills the masked pixels of the working image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct InpaintParams {
    /// The inpainting engine.
    pub engine: Engine,
    /// Neighbourhood radius in pixels of the working image: how far from a pixel the engine
    /// looks for known pixels.
    pub radius: u32,
}

impl Default for InpaintParams {
    fn default() -> Self {
        Self {
            engine: Engine::default(),
            radius: DEFAULT_RADIUS,
        }
    }
}

impl InpaintParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("radius", self.radius, 1, 32)
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// PNG, lossless.
    Png,
    /// JPEG at `quality`; an alpha channel is flattened onto white.
    Jpeg,
    /// WebP, lossless.
    Webp,
}

impl OutputFormat {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
        }
    }

    /// The media type of encoded output.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// Parses a wire name (`jpg` is accepted for `jpeg`).
    pub fn parse(name: &str) -> Result<Self, ParamError> {
        match name.to_ascii_lowercase().as_str() {
            "png" => Ok(Self::Png),
            "jpeg" | "jpg" => Ok(Self::Jpeg),
            "webp" => Ok(Self::Webp),
            _ => Err(ParamError::new(
                "format",
                format!("format must be png, jpeg or webp, got {name:?}"),
            )),
        }
    }
}

/// `encode`: pastes the inpainted pixels into the original and encodes the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeParams {
    /// Output format; by default the input's format where unmark can write it, else PNG.
    pub format: Option<OutputFormat>,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
    /// Keep the input's EXIF block (its orientation reset, since it is already applied).
    /// The ICC profile is always kept.
    pub keep_metadata: bool,
    /// What the job returns: the finished image, or the mask that was removed.
    #[serde(rename = "return")]
    pub returns: ReturnKind,
}

/// What a watermark job returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReturnKind {
    /// The image with the watermark removed.
    #[default]
    Image,
    /// The mask that was removed (detected or sent, grown by `mask_dilate`), a grayscale PNG
    /// at the image's size, white where the watermark is.
    Mask,
}

impl ReturnKind {
    /// Parses `image` or `mask`.
    pub fn parse(name: &str) -> Result<Self, ParamError> {
        match name.to_ascii_lowercase().as_str() {
            "image" => Ok(Self::Image),
            "mask" => Ok(Self::Mask),
            _ => Err(ParamError::new(
                "return",
                format!("return must be image or mask, got {name:?}"),
            )),
        }
    }
}

impl Default for EncodeParams {
    fn default() -> Self {
        Self {
            format: None,
            quality: DEFAULT_QUALITY,
            keep_metadata: false,
            returns: ReturnKind::Image,
        }
    }
}

impl EncodeParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("quality", self.quality, 1, 100)
    }
}

/// Everything a client may set on a watermark removal, gathered from a form or a CLI.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WatermarkOptions {
    /// Limits of the decode step.
    pub decode: DecodeParams,
    /// Working image size.
    pub prescale: PrescaleParams,
    /// Mask preparation.
    pub detect: DetectParams,
    /// Inpainting.
    pub inpaint: InpaintParams,
    /// Output.
    pub encode: EncodeParams,
    /// WASM plugin steps around the built-in ones.
    pub plugins: PluginSteps,
}

impl WatermarkOptions {
    /// Checks every parameter.
    pub fn validate(&self) -> Result<(), ParamError> {
        self.decode.validate()?;
        self.prescale.validate()?;
        self.detect.validate()?;
        self.inpaint.validate()?;
        self.encode.validate()?;
        self.plugins.validate()
    }
}

/// Most plugin steps on each side of the built-in pipeline.
pub const MAX_PLUGIN_STEPS: usize = 8;
/// Largest `params` object of a plugin step, as JSON bytes.
pub const MAX_PLUGIN_PARAMS_BYTES: usize = 16 * 1024;

/// Where a plugin step runs in the watermark pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginRole {
    /// A filter after decode, before pre-scale: it sees the original image (and the mask,
    /// where one was sent) and replaces the image.
    Pre,
    /// A mask detector before the mask step: its mask is added to the client's (if any).
    Detector,
    /// A filter after inpaint: it sees the finished image at full size and replaces it.
    Post,
}

impl PluginRole {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Detector => "detector",
            Self::Post => "post",
        }
    }
}

/// A plugin step as a client asks for it: `{"plugin": "blur@1", "params": {"sigma": 2}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginCall {
    /// `name@version`, or `name` for its newest version.
    pub plugin: String,
    /// The plugin's own parameters, a JSON object (numbers reach C plugins through
    /// `unmark_param`, the whole object through `params_json`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    /// SHA-256 of the module, filled in by the server when it resolves `plugin`; a client
    /// may set it to pin the exact module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl PluginCall {
    /// A call of `plugin` with no parameters.
    pub fn new(plugin: impl Into<String>) -> Self {
        Self {
            plugin: plugin.into(),
            params: serde_json::Value::Null,
            sha256: None,
        }
    }

    /// Checks the reference and the parameters' shape.
    pub fn validate(&self) -> Result<(), ParamError> {
        parse_plugin_ref(&self.plugin)?;
        check_plugin_params(&self.params)?;
        if let Some(sha) = &self.sha256 {
            check_sha256(sha)?;
        }
        Ok(())
    }

    /// Parses a form field or CLI flag: a JSON object, a JSON array of objects, or
    /// comma-separated `name@version` references.
    pub fn parse_list(field: &str, text: &str) -> Result<Vec<Self>, ParamError> {
        let text = text.trim();
        let calls = if text.starts_with('[') {
            serde_json::from_str(text)
                .map_err(|e| ParamError::new(field, format!("{field}: bad JSON: {e}")))?
        } else if text.starts_with('{') {
            vec![
                serde_json::from_str(text)
                    .map_err(|e| ParamError::new(field, format!("{field}: bad JSON: {e}")))?,
            ]
        } else {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Self::new)
                .collect()
        };
        for call in &calls {
            call.validate()?;
        }
        Ok(calls)
    }
}

/// The plugin steps of a watermark removal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginSteps {
    /// Filters before pre-scale, in order.
    pub pre: Vec<PluginCall>,
    /// A mask detector.
    pub detector: Option<PluginCall>,
    /// Filters after inpaint, in order.
    pub post: Vec<PluginCall>,
}

impl PluginSteps {
    /// Every call with its role, in pipeline order.
    pub fn calls(&self) -> impl Iterator<Item = (PluginRole, &PluginCall)> {
        let pre = self.pre.iter().map(|c| (PluginRole::Pre, c));
        let detector = self.detector.iter().map(|c| (PluginRole::Detector, c));
        let post = self.post.iter().map(|c| (PluginRole::Post, c));
        pre.chain(detector).chain(post)
    }

    /// Every call with its role, mutable (to resolve references).
    pub fn calls_mut(&mut self) -> impl Iterator<Item = (PluginRole, &mut PluginCall)> {
        let pre = self.pre.iter_mut().map(|c| (PluginRole::Pre, c));
        let detector = self.detector.iter_mut().map(|c| (PluginRole::Detector, c));
        let post = self.post.iter_mut().map(|c| (PluginRole::Post, c));
        pre.chain(detector).chain(post)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.calls().next().is_none()
    }

    /// Checks counts and every call.
    pub fn validate(&self) -> Result<(), ParamError> {
        for (name, n) in [("pre", self.pre.len()), ("post", self.post.len())] {
            if n > MAX_PLUGIN_STEPS {
                return Err(ParamError::new(
                    name,
                    format!("at most {MAX_PLUGIN_STEPS} {name} plugin steps, got {n}"),
                ));
            }
        }
        self.calls().try_for_each(|(_, call)| call.validate())
    }
}

/// Splits `name@version` (or `name`) and checks both parts: a name is 1 to 40 of
/// `[a-z0-9_-]` starting with a letter or digit (it becomes a NATS subject token), a
/// version 1 to 32 of `[A-Za-z0-9._-]`.
pub fn parse_plugin_ref(reference: &str) -> Result<(&str, Option<&str>), ParamError> {
    let (name, version) = match reference.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (reference, None),
    };
    check_plugin_name(name)?;
    if let Some(v) = version {
        check_plugin_version(v)?;
    }
    Ok((name, version))
}

/// Checks a plugin name (see [`parse_plugin_ref`]).
pub fn check_plugin_name(name: &str) -> Result<(), ParamError> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ParamError::new(
            "plugin",
            format!(
                "a plugin name is 1 to 40 of [a-z0-9_-], starting with a letter or digit; got {name:?}"
            ),
        ))
    }
}

/// Checks a plugin version (see [`parse_plugin_ref`]).
pub fn check_plugin_version(version: &str) -> Result<(), ParamError> {
    let ok = (1..=32).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !version.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ParamError::new(
            "plugin",
            format!("a plugin version is 1 to 32 of [A-Za-z0-9._-]; got {version:?}"),
        ))
    }
}

fn check_sha256(sha: &str) -> Result<(), ParamError> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ParamError::new(
            "sha256",
            format!("sha256 must be 64 lowercase hex digits, got {sha:?}"),
        ))
    }
}

fn check_plugin_params(params: &serde_json::Value) -> Result<(), ParamError> {
    if !(params.is_null() || params.is_object()) {
        return Err(ParamError::new(
            "params",
            format!("plugin params must be a JSON object, got {params}"),
        ));
    }
    let size = serde_json::to_vec(params)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_PLUGIN_PARAMS_BYTES {
        return Err(ParamError::new(
            "params",
            format!("plugin params are {size} bytes of JSON; at most {MAX_PLUGIN_PARAMS_BYTES}"),
        ));
    }
    Ok(())
}

/// The parameters of a plugin step (stage `plugin.<name>`), as the pipeline builds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginStepParams {
    /// `name@version`, resolved.
    pub plugin: String,
    /// SHA-256 of the module; the worker refuses a module with another digest.
    pub sha256: String,
    /// Where the step sits, which decides what it reads and writes.
    pub role: PluginRole,
    /// The plugin's own parameters.
    #[serde(default)]
    pub params: serde_json::Value,
}

impl Default for PluginStepParams {
    fn default() -> Self {
        Self {
            plugin: String::new(),
            sha256: String::new(),
            role: PluginRole::Pre,
            params: serde_json::Value::Null,
        }
    }
}

impl PluginStepParams {
    /// Checks the step against the stage that runs it (`plugin.<name>`).
    pub fn validate(&self, stage_plugin: &str) -> Result<(), ParamError> {
        let (name, version) = parse_plugin_ref(&self.plugin)?;
        if name != stage_plugin || version.is_none() {
            return Err(ParamError::new(
                "plugin",
                format!(
                    "stage plugin.{stage_plugin} runs {stage_plugin}@<version>, got {:?}",
                    self.plugin
                ),
            ));
        }
        check_sha256(&self.sha256)?;
        check_plugin_params(&self.params)
    }
}

/// Prefix of the stage names of plugin steps: `plugin.<name>`.
pub const PLUGIN_STAGE_PREFIX: &str = "plugin.";

/// Parses a step's parameters as `T`, rejecting unknown fields.
pub fn parse<T: DeserializeOwned + Default>(
    stage: &str,
    value: &serde_json::Value,
) -> Result<T, ParamError> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(value.clone())
        .map_err(|e| ParamError::new(stage, format!("bad {stage} parameters: {e}")))
}

/// Checks a step's parameters against its stage's schema; unknown stages are an error.
pub fn validate_step(stage: &str, value: &serde_json::Value) -> Result<(), ParamError> {
    match stage {
        "decode" => parse::<DecodeParams>(stage, value)?.validate(),
        "prescale" => parse::<PrescaleParams>(stage, value)?.validate(),
        "detect" => parse::<DetectParams>(stage, value)?.validate(),
        "inpaint" => parse::<InpaintParams>(stage, value)?.validate(),
        "encode" => parse::<EncodeParams>(stage, value)?.validate(),
        "segment" => parse::<crate::background::SegmentParams>(stage, value)?.validate(),
        "composite" => parse::<crate::background::CompositeParams>(stage, value)?.validate(),
        other if other.starts_with(PLUGIN_STAGE_PREFIX) => {
            let name = &other[PLUGIN_STAGE_PREFIX.len()..];
            check_plugin_name(name)?;
            let p: PluginStepParams = serde_json::from_value(value.clone())
                .map_err(|e| ParamError::new(stage, format!("bad {stage} parameters: {e}")))?;
            p.validate(name)
        }
        other => Err(ParamError::new("stage", format!("unknown stage {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let err = validate_step("inpaint", &serde_json::json!({"radius": 3, "radios": 4}))
            .expect_err("typo must fail");
        assert!(err.message.contains("radios"), "{err}");
    }

    #[test]
    fn ranges_name_the_value() {
        let err =
            validate_step("inpaint", &serde_json::json!({"radius": 40})).expect_err("out of range");
        assert_eq!(err.message, "radius must be from 1 to 32, got 40");
    }

    #[test]
    fn null_params_take_defaults() {
        let p: EncodeParams = parse("encode", &serde_json::Value::Null).expect("defaults");
        assert_eq!(p, EncodeParams::default());
    }

    #[test]
    fn format_names() {
        assert_eq!(OutputFormat::parse("JPG"), Ok(OutputFormat::Jpeg));
        assert!(OutputFormat::parse("gif").is_err());
    }
}
