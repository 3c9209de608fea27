//! ISNet (Qin et al., "Highly Accurate Dichotomous Image Segmentation", ECCV 2022), the
//! network behind rembg's `isnet-general-use` and IMG.LY's background removal.
//!
//! A stride-2 input convolution, six residual U-blocks going down (max-pooled between them),
//! five coming back up (each fed the upsampled block below and the matching encoder block),
//! and a 3x3 side convolution to one channel. Of the six side outputs only the finest is used
//! at inference (the others exist for deep supervision in training), so [`IsNet::forward`]
//! computes only that one. Batch norm is folded into the convolutions' weights at import.
//!
//! Any batch size and any input size work; the published weights were trained at 1024x1024.

pub(crate) mod rsu;

pub use rsu::{ConvRelu, ConvSpec, Rsu, RsuShape};

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use crate::ModelError;
use crate::weights::Weights;
use rsu::{ConvSource, pool, upsample_like, upsample_to};

/// The resolution the published weights were trained at (rembg's input size).
pub const INPUT_SIZE: usize = 1024;

/// Configuration of [`IsNet`]: the published architecture, with the input channels open.
#[derive(Config, Debug)]
pub struct IsNetConfig {
    /// Input channels (3: RGB).
    #[config(default = 3)]
    pub input_channels: usize,
}

impl IsNetConfig {
    /// The encoder blocks `stage1`..`stage6`, then the decoder blocks `stage5d`..`stage1d`.
    pub fn blocks(&self) -> Vec<(&'static str, RsuShape)> {
        let rsu = |height, input, mid, output| RsuShape {
            height,
            input,
            mid,
            output,
            dilated: false,
        };
        let rsu4f = |input, mid, output| RsuShape {
            height: 4,
            input,
            mid,
            output,
            dilated: true,
        };
        vec![
            ("stage1", rsu(7, 64, 32, 64)),
            ("stage2", rsu(6, 64, 32, 128)),
            ("stage3", rsu(5, 128, 64, 256)),
            ("stage4", rsu(4, 256, 128, 512)),
            ("stage5", rsu4f(512, 256, 512)),
            ("stage6", rsu4f(512, 256, 512)),
            ("stage5d", rsu4f(1024, 256, 512)),
            ("stage4d", rsu(4, 1024, 128, 256)),
            ("stage3d", rsu(5, 512, 64, 128)),
            ("stage2d", rsu(6, 256, 32, 64)),
            ("stage1d", rsu(7, 128, 16, 64)),
        ]
    }

    /// The side convolutions `side1`..`side6` (64, 64, 128, 256, 512, 512 channels in).
    fn sides(&self) -> Vec<ConvSpec> {
        [64, 64, 128, 256, 512, 512]
            .iter()
            .enumerate()
            .map(|(i, &input)| ConvSpec {
                path: format!("side{}", i + 1),
                input,
                output: 1,
                dilation: 1,
                stride: 1,
            })
            .collect()
    }

    fn conv_in(&self) -> ConvSpec {
        ConvSpec {
            path: "conv_in".into(),
            input: self.input_channels,
            output: 64,
            dilation: 1,
            stride: 2,
        }
    }

    /// Every convolution in the order a PyTorch export runs them: `conv_in`, the blocks, the
    /// sides. 119 in all; the weight file holds `<path>.weight` and `<path>.bias` for each.
    pub fn layout(&self) -> Vec<ConvSpec> {
        let mut out = vec![self.conv_in()];
        for (name, shape) in self.blocks() {
            out.extend(shape.convs(name));
        }
        out.extend(self.sides());
        out
    }

    /// A network with random weights (for shape tests and benches).
    pub fn init(&self, device: &Device) -> IsNet {
        self.build(&ConvSource::Random, device)
            .unwrap_or_else(|e| unreachable!("random weights always fit: {e}"))
    }

    /// The network with `weights`, each tensor's name and shape checked against
    /// [`layout`](Self::layout); extra or missing tensors are errors.
    pub fn load(&self, weights: &Weights, device: &Device) -> Result<IsNet, ModelError> {
        let net = self.build(&ConvSource::Loaded(weights), device)?;
        weights.check_all_used()?;
        Ok(net)
    }

    fn build(&self, source: &ConvSource<'_>, device: &Device) -> Result<IsNet, ModelError> {
        let conv_in = source.conv(&self.conv_in(), device)?;
        let mut blocks = Vec::new();
        for (name, shape) in self.blocks() {
            blocks.push(Rsu::new(&shape, name, source, device)?);
        }
        // Only side1 is used at inference; the others are read (so a file is checked whole)
        // but not kept.
        let mut side1 = None;
        for spec in self.sides() {
            let conv = source.conv(&spec, device)?;
            side1.get_or_insert(conv);
        }
        let side1 = side1.ok_or_else(|| ModelError::Layout("no side convolution".into()))?;
        Ok(IsNet {
            conv_in,
            blocks,
            side1,
        })
    }
}

/// ISNet with batch norm folded in. Build it with [`IsNetConfig::load`].
#[derive(Module, Debug)]
pub struct IsNet {
    conv_in: Conv2d,
    /// `stage1`..`stage6`, then `stage5d`..`stage1d`.
    blocks: Vec<Rsu>,
    side1: Conv2d,
}

impl IsNet {
    /// The foreground probability of every pixel.
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, height, width]`, normalised as [`crate::preprocess`] does
    /// - output: `[batch, 1, height, width]`, in 0..1
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let (encoder, decoder) = self.blocks.split_at(6);
        let mut hx = self.conv_in.forward(x);
        let mut skips = Vec::with_capacity(6);
        for (i, block) in encoder.iter().enumerate() {
            if i > 0 {
                hx = pool(hx);
            }
            hx = block.forward(hx);
            skips.push(hx.clone());
        }
        // The deepest block's output starts the decoder.
        let mut d = skips
            .pop()
            .unwrap_or_else(|| unreachable!("six encoder blocks"));
        for block in decoder {
            let skip = skips
                .pop()
                .unwrap_or_else(|| unreachable!("one skip per decoder block"));
            d = block.forward(Tensor::cat(vec![upsample_like(d, &skip), skip], 1));
        }
        sigmoid(upsample_to(self.side1.forward(d), [h, w]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_the_published_119_convolutions() {
        let layout = IsNetConfig::new().layout();
        assert_eq!(layout.len(), 119);
        assert_eq!(layout[0].path, "conv_in");
        assert_eq!(layout[1].path, "stage1.rebnconvin");
        assert_eq!(layout[8].path, "stage1.rebnconv7");
        assert_eq!(layout[8].dilation, 2);
        let f = layout
            .iter()
            .find(|c| c.path == "stage5.rebnconv4")
            .expect("valid test input");
        assert_eq!((f.dilation, f.input, f.output), (8, 256, 256));
        let params: usize = layout
            .iter()
            .map(|c| c.input * c.output * 9 + c.output)
            .sum();
        // The published ONNX (batch norm folded in) holds exactly this many.
        assert_eq!(params, 44_017_990);
    }

    #[test]
    fn any_batch_and_odd_sizes_come_back_at_input_size() {
        let device = Device::flex();
        let net = IsNetConfig::new().init(&device);
        let x = Tensor::<4>::ones([2, 3, 45, 37], &device);
        let y = net.forward(x);
        assert_eq!(y.dims(), [2, 1, 45, 37]);
        let values = y.into_data().try_to_vec::<f32>().expect("valid test input");
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
