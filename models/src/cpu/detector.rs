//! The watermark detector ([`crate::detector`]) on the CPU path: its 3x3 convolutions as
//! Winograd F(4x4, 3x3) on channels-last maps, the decoder's skip connections read in place by
//! the convolution that follows (no concatenated copy), and the 1x1 head as one dot product
//! per pixel.

use burn::tensor::Device;

use super::winograd::Winograd;
use super::{FeatureMap, RELU};
use crate::ModelError;
use crate::detector::Layer;

/// The network on the CPU path.
#[derive(Debug)]
pub(crate) struct Detector {
    /// The thirteen 3x3 layers, in file order.
    convs: Vec<Winograd>,
    /// The 1x1 head's weights (one per channel of the last layer) and bias.
    head: (Vec<f32>, f32),
}

impl Detector {
    /// From the layers of a weights file (checked against the layout by its reader): every
    /// one a 3x3 convolution but the last, a 1x1 to one channel.
    pub(crate) fn new(mut layers: Vec<Layer>, device: &Device) -> Result<Self, ModelError> {
        let head = layers
            .pop()
            .filter(|l| l.kernel == 1 && l.outputs == 1 && l.bias.len() == 1)
            .ok_or_else(|| ModelError::Layout("the detector's head is not 1x1 to one".into()))?;
        let convs = layers
            .into_iter()
            .map(|l| {
                Winograd::new(
                    &l.weights,
                    l.bias,
                    [l.outputs, l.inputs],
                    l.dilation,
                    device,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            convs,
            head: (head.weights, head.bias[0]),
        })
    }

    /// Per-pixel logits, row by row.
    ///
    /// # Shapes
    /// - `x`: `[1, height, width, 3]`, sides multiples of [`crate::detector::SIDE_MULTIPLE`]
    /// - output: `height * width` values
    pub(crate) fn forward(&self, x: &FeatureMap) -> Vec<f32> {
        let c = &self.convs;
        let layer = |i: usize, inputs: &[&FeatureMap]| c[i].forward(inputs, RELU);
        let e1 = layer(1, &[&layer(0, &[x])]);
        let e2 = layer(3, &[&layer(2, &[&e1.max_pool()])]);
        let e3 = layer(4, &[&e2.max_pool()]);
        let e3 = layer(6, &[&layer(5, &[&e3])]);
        let e4 = layer(7, &[&e3.max_pool()]);
        let e4 = layer(9, &[&layer(8, &[&e4])]);
        let u3 = layer(10, &[&e4.double(), &e3]);
        let u2 = layer(11, &[&u3.double(), &e2]);
        let u1 = layer(12, &[&u2.double(), &e1]);
        let (weights, bias) = &self.head;
        u1.data
            .chunks_exact(u1.channels)
            .map(|px| bias + px.iter().zip(weights).map(|(v, w)| v * w).sum::<f32>())
            .collect()
    }
}
