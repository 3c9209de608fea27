//! ISNet on the CPU, fast: the same network as [`crate::isnet::IsNet`], computed on
//! channels-last feature maps with Winograd F(4x4, 3x3) convolutions whose matrix products run
//! on burn's `flex` backend.
//!
//! Why not burn's own `conv2d` here: on the CPU it lowers every convolution to im2col (nine
//! copies of the input) and a GEMM, plus a layout copy in and out of NCHW, and spends about as
//! long moving data as multiplying. ISNet is 114 3x3 convolutions (319 GFLOP at 1024x1024),
//! so a quarter of the multiplications (Winograd) and no im2col is what beats onnxruntime.
//! The burn modules stay the definition and run on the GPU backends; the parity tests hold
//! both to onnxruntime.

mod detector;
mod map;
mod strided;
mod winograd;

pub(crate) use detector::Detector;
pub use map::FeatureMap;

use burn::tensor::Device;

use crate::ModelError;
use crate::isnet::{ConvSpec, IsNetConfig, RsuShape};
use crate::weights::Weights;
use strided::Strided;
use winograd::{Epilogue, Winograd};

/// Checks PyTorch-layout 3x3 weights (`[output, input, 3, 3]`), a bias, and a stride or
/// dilation (at least 1).
fn check_conv(
    weight: &[f32],
    bias: &[f32],
    [output, input]: [usize; 2],
    step: usize,
) -> Result<(), ModelError> {
    if weight.len() != output * input * 9 || bias.len() != output || step == 0 {
        return Err(ModelError::Layout(format!(
            "a 3x3 convolution {input} -> {output} needs {} weights and {output} biases, \
             got {} and {}",
            output * input * 9,
            weight.len(),
            bias.len()
        )));
    }
    Ok(())
}

/// Takes `spec`'s weights from the file as a stride-1 Winograd convolution.
fn winograd(spec: &ConvSpec, weights: &Weights, device: &Device) -> Result<Winograd, ModelError> {
    let (weight, bias) = spec.take(weights)?;
    Winograd::new(
        &weight,
        bias,
        [spec.output, spec.input],
        spec.dilation,
        device,
    )
}

const RELU: Epilogue<'static> = Epilogue {
    relu: true,
    residual: None,
};

/// A residual U-block ([`crate::isnet::Rsu`]) on the CPU path.
#[derive(Debug)]
struct Rsu {
    input: Winograd,
    encoder: Vec<Winograd>,
    top: Winograd,
    decoder: Vec<Winograd>,
    dilated: bool,
}

impl Rsu {
    fn load(
        shape: &RsuShape,
        prefix: &str,
        weights: &Weights,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let mut convs = shape
            .convs(prefix)
            .iter()
            .map(|spec| winograd(spec, weights, device))
            .collect::<Result<Vec<_>, _>>()?;
        // rebnconvin, rebnconv1..L-1, rebnconvL, rebnconv(L-1)d..1d.
        let h = shape.height;
        let decoder = convs.split_off(h + 1);
        let top = convs
            .pop()
            .ok_or_else(|| ModelError::Layout("short RSU".into()))?;
        let encoder = convs.split_off(1);
        let input = convs
            .pop()
            .ok_or_else(|| ModelError::Layout("short RSU".into()))?;
        Ok(Self {
            input,
            encoder,
            top,
            decoder,
            dilated: shape.dilated,
        })
    }

    /// # Shapes
    /// - `inputs`: maps `[batch, height, width, c_i]`, concatenated along channels
    /// - output: `[batch, height, width, output]`
    fn forward(&self, inputs: &[&FeatureMap]) -> FeatureMap {
        let hxin = self.input.forward(inputs, RELU);
        let mut skips: Vec<FeatureMap> = Vec::with_capacity(self.encoder.len());
        for conv in &self.encoder {
            let next = match skips.last() {
                None => conv.forward(&[&hxin], RELU),
                Some(prev) if self.dilated => conv.forward(&[prev], RELU),
                Some(prev) => conv.forward(&[&prev.max_pool()], RELU),
            };
            skips.push(next);
        }
        let deepest = skips
            .last()
            .unwrap_or_else(|| unreachable!("RSU blocks have encoder levels"));
        let mut d = self.top.forward(&[deepest], RELU);
        let last = self.decoder.len() - 1;
        for (i, conv) in self.decoder.iter().enumerate() {
            let skip = skips
                .pop()
                .unwrap_or_else(|| unreachable!("one skip per level"));
            let up = if self.dilated {
                d
            } else {
                d.resize_like(&skip)
            };
            // The block's output is its last convolution plus its input branch.
            let epilogue = Epilogue {
                relu: true,
                residual: (i == last).then_some(&hxin),
            };
            d = conv.forward(&[&up, &skip], epilogue);
        }
        d
    }
}

/// ISNet on the CPU path, loaded from the same weight files as [`crate::isnet::IsNet`].
#[derive(Debug)]
pub struct IsNet {
    conv_in: Strided,
    /// `stage1`..`stage6`, then `stage5d`..`stage1d`.
    blocks: Vec<Rsu>,
    side1: Winograd,
}

impl IsNet {
    /// The network with `weights` (every tensor's name and shape checked, none left over);
    /// matrix products run on `device`, which must be burn's CPU device.
    pub fn load(weights: &Weights, device: &Device) -> Result<Self, ModelError> {
        let config = IsNetConfig::new();
        let layout = config.layout();
        let conv_in = layout
            .first()
            .ok_or_else(|| ModelError::Layout("empty layout".into()))?;
        let (weight, bias) = conv_in.take(weights)?;
        let conv_in = Strided::new(
            &weight,
            bias,
            [conv_in.output, conv_in.input],
            conv_in.stride,
            device,
        )?;
        let blocks = config
            .blocks()
            .iter()
            .map(|(name, shape)| Rsu::load(shape, name, weights, device))
            .collect::<Result<Vec<_>, _>>()?;
        // Only side1 is used at inference; the others are read so that the file is checked
        // whole, then dropped.
        let mut side1 = None;
        for spec in layout.iter().filter(|s| s.path.starts_with("side")) {
            let conv = winograd(spec, weights, device)?;
            side1.get_or_insert(conv);
        }
        let side1 = side1.ok_or_else(|| ModelError::Layout("no side convolution".into()))?;
        weights.check_all_used()?;
        Ok(Self {
            conv_in,
            blocks,
            side1,
        })
    }

    /// The foreground probability of every pixel.
    ///
    /// # Shapes
    /// - `x`: `[batch, height, width, 3]`, normalised as [`crate::preprocess`] does
    /// - output: `[batch, height, width, 1]`, in 0..1
    pub fn forward(&self, x: &FeatureMap) -> FeatureMap {
        let (height, width) = (x.height, x.width);
        let (encoder, decoder) = self.blocks.split_at(6);
        let stem = self.conv_in.forward(x);
        let mut skips: Vec<FeatureMap> = Vec::with_capacity(6);
        for block in encoder {
            let next = match skips.last() {
                None => block.forward(&[&stem]),
                Some(prev) => block.forward(&[&prev.max_pool()]),
            };
            skips.push(next);
        }
        // The deepest block's output starts the decoder.
        let mut d = skips
            .pop()
            .unwrap_or_else(|| unreachable!("six encoder blocks"));
        for block in decoder {
            let skip = skips
                .pop()
                .unwrap_or_else(|| unreachable!("one skip per decoder block"));
            d = block.forward(&[&d.resize_like(&skip), &skip]);
        }
        let side = self.side1.forward(
            &[&d],
            Epilogue {
                relu: false,
                residual: None,
            },
        );
        side.resize(height, width).sigmoid()
    }
}

#[cfg(test)]
mod tests;
