//! ISNet's building blocks: a 3x3 convolution with its batch norm folded in, followed by a
//! ReLU ([`ConvRelu`], "REBNCONV" in the DIS code), and the residual U-blocks built from them
//! ([`Rsu`], "RSU-L" and "RSU-4F").

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::module::{interpolate, max_pool2d};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::ModelError;
use crate::weights::Weights;

/// One 3x3 convolution of the network, as the weight layout names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSpec {
    /// Dotted path, for example `stage1.rebnconv6d`; weights are `<path>.weight`/`.bias`.
    pub path: String,
    /// Input channels.
    pub input: usize,
    /// Output channels.
    pub output: usize,
    /// Dilation (and padding) of the 3x3 kernel.
    pub dilation: usize,
    /// Stride.
    pub stride: usize,
}

impl ConvSpec {
    /// The shape of `<path>.weight`: `[output, input, 3, 3]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.output, self.input, 3, 3]
    }

    /// Takes this convolution's `<path>.weight` and `<path>.bias` from `weights`, shapes
    /// checked.
    pub(crate) fn take(&self, weights: &Weights) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let weight = weights.take(&format!("{}.weight", self.path), &self.weight_shape())?;
        let bias = weights.take(&format!("{}.bias", self.path), &[self.output])?;
        Ok((weight, bias))
    }
}

/// Where a network's convolutions come from: fresh random weights or a weight file.
pub(crate) enum ConvSource<'a> {
    /// Kaiming-uniform initialisation (for tests and benches without a weight file).
    Random,
    /// Loaded weights; every tensor's shape is checked.
    Loaded(&'a Weights),
}

impl ConvSource<'_> {
    pub(crate) fn conv(&self, spec: &ConvSpec, device: &Device) -> Result<Conv2d, ModelError> {
        let d = spec.dilation;
        let config = Conv2dConfig::new([spec.input, spec.output], [3, 3])
            .with_stride([spec.stride, spec.stride])
            .with_dilation([d, d])
            .with_padding(PaddingConfig2d::Explicit(d, d, d, d));
        let ConvSource::Loaded(weights) = self else {
            return Ok(config.init(device));
        };
        // Built straight from the file: no random initialisation to throw away (44 M weights
        // at start-up).
        let (weight, bias) = spec.take(weights)?;
        Ok(loaded_conv(&config, weight, bias, device))
    }
}

/// The convolution `config` describes with the given weights (PyTorch's layout,
/// `[output, input, ky, kx]`) and bias, built straight from them on `device`.
pub(crate) fn loaded_conv(
    config: &Conv2dConfig,
    weight: Vec<f32>,
    bias: Vec<f32>,
    device: &Device,
) -> Conv2d {
    let [input, output] = config.channels;
    let [ky, kx] = config.kernel_size;
    Conv2d {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [output, input / config.groups, ky, kx]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [output]),
            device,
        ))),
        stride: config.stride,
        kernel_size: config.kernel_size,
        dilation: config.dilation,
        groups: config.groups,
        padding: config.padding.clone(),
    }
}

/// A 3x3 convolution (batch norm folded into its weights and bias) and a ReLU.
#[derive(Module, Debug)]
pub struct ConvRelu {
    conv: Conv2d,
}

impl ConvRelu {
    /// # Shapes
    /// - `x`: `[batch, input, height, width]`
    /// - output: `[batch, output, height / stride, width / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.conv.forward(x))
    }
}

/// The shape of one residual U-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsuShape {
    /// Number of encoder levels, `L` in "RSU-L" (4 to 7).
    pub height: usize,
    /// Input channels.
    pub input: usize,
    /// Channels inside the block.
    pub mid: usize,
    /// Output channels.
    pub output: usize,
    /// `false` for RSU-L (max-pool between levels, bilinear upsampling on the way back),
    /// `true` for RSU-4F (full resolution throughout, growing dilations instead).
    pub dilated: bool,
}

impl RsuShape {
    /// The block's convolutions in forward order, named as in the DIS code:
    /// `rebnconvin`, `rebnconv1`..`rebnconvL`, then `rebnconv(L-1)d`..`rebnconv1d`.
    pub fn convs(&self, prefix: &str) -> Vec<ConvSpec> {
        let h = self.height;
        let spec = |name: String, input, output, dilation| ConvSpec {
            path: format!("{prefix}.{name}"),
            input,
            output,
            dilation,
            stride: 1,
        };
        // Encoder level i (1-based) and the top: dilation 1 with pooling between levels, or
        // 1, 2, 4, ... without; the top level is dilated twice as far as the one below.
        let dilation = |i: usize| if self.dilated { 1 << (i - 1) } else { 1 };
        let top = if self.dilated { 1 << (h - 1) } else { 2 };
        let mut out = vec![spec("rebnconvin".into(), self.input, self.output, 1)];
        out.push(spec("rebnconv1".into(), self.output, self.mid, 1));
        for i in 2..h {
            out.push(spec(
                format!("rebnconv{i}"),
                self.mid,
                self.mid,
                dilation(i),
            ));
        }
        out.push(spec(format!("rebnconv{h}"), self.mid, self.mid, top));
        for i in (2..h).rev() {
            out.push(spec(
                format!("rebnconv{i}d"),
                2 * self.mid,
                self.mid,
                dilation(i),
            ));
        }
        out.push(spec("rebnconv1d".into(), 2 * self.mid, self.output, 1));
        out
    }
}

/// A residual U-block: an inner U-Net whose output is added to its input convolution's.
#[derive(Module, Debug)]
pub struct Rsu {
    input: ConvRelu,
    /// Levels 1..L-1.
    encoder: Vec<ConvRelu>,
    top: ConvRelu,
    /// Levels L-1..1 (the last one maps back to the output channels).
    decoder: Vec<ConvRelu>,
    dilated: bool,
}

impl Rsu {
    pub(crate) fn new(
        shape: &RsuShape,
        prefix: &str,
        source: &ConvSource<'_>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let mut convs = shape
            .convs(prefix)
            .iter()
            .map(|spec| {
                Ok(ConvRelu {
                    conv: source.conv(spec, device)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?
            .into_iter();
        let mut next = || {
            convs
                .next()
                .ok_or_else(|| ModelError::Layout("short RSU".into()))
        };
        let input = next()?;
        let encoder = (1..shape.height)
            .map(|_| next())
            .collect::<Result<_, _>>()?;
        let top = next()?;
        let decoder = (1..shape.height)
            .map(|_| next())
            .collect::<Result<_, _>>()?;
        Ok(Self {
            input,
            encoder,
            top,
            decoder,
            dilated: shape.dilated,
        })
    }

    /// # Shapes
    /// - `x`: `[batch, input, height, width]`
    /// - output: `[batch, output, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let hxin = self.input.forward(x);
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut hx = hxin.clone();
        for (i, conv) in self.encoder.iter().enumerate() {
            if i > 0 && !self.dilated {
                hx = pool(hx);
            }
            hx = conv.forward(hx);
            skips.push(hx.clone());
        }
        let mut d = self.top.forward(hx);
        for conv in &self.decoder {
            let skip = skips
                .pop()
                .unwrap_or_else(|| unreachable!("one skip per level"));
            if !self.dilated {
                d = upsample_like(d, &skip);
            }
            d = conv.forward(Tensor::cat(vec![d, skip], 1));
        }
        d + hxin
    }
}

/// 2x2 max-pool, stride 2, rounding the output size up (PyTorch's `ceil_mode=True`).
pub(crate) fn pool(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(
        x,
        MaxPoolOptions::new([2, 2])
            .with_stride([2, 2])
            .with_ceil_mode(true),
    )
}

/// Bilinear resize of `x` to `like`'s height and width (half-pixel centres, PyTorch's
/// `align_corners=False`); a no-op when the sizes already agree.
pub(crate) fn upsample_like(x: Tensor<4>, like: &Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = like.dims();
    upsample_to(x, [h, w])
}

/// Bilinear resize to `[height, width]`, half-pixel centres.
pub(crate) fn upsample_to(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size(size),
    )
}
