//! The one strided convolution in ISNet (`conv_in`: 3x3, stride 2, on the RGB input), by
//! im2col and one burn `matmul`: with three input channels there is too little to gain from
//! Winograd, and the product is small next to the rest of the network.

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::map::FeatureMap;
use crate::ModelError;

/// A 3x3 convolution with padding 1 and a stride.
#[derive(Debug)]
pub(crate) struct Strided {
    input: usize,
    output: usize,
    stride: usize,
    /// `[9 * input, output]`, rows ordered `(ky, kx, in)` like the im2col columns.
    filters: Tensor<2>,
    bias: Vec<f32>,
    device: Device,
}

impl Strided {
    /// From PyTorch-layout weights `[output, input, 3, 3]` and a bias.
    pub(crate) fn new(
        weight: &[f32],
        bias: Vec<f32>,
        [output, input]: [usize; 2],
        stride: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        super::check_conv(weight, &bias, [output, input], stride)?;
        let mut w = vec![0.0f32; 9 * input * output];
        for o in 0..output {
            for i in 0..input {
                for k in 0..9 {
                    w[(k * input + i) * output + o] = weight[(o * input + i) * 9 + k];
                }
            }
        }
        Ok(Self {
            input,
            output,
            stride,
            filters: Tensor::from_data(TensorData::new(w, [9 * input, output]), device),
            bias,
            device: device.clone(),
        })
    }

    /// # Shapes
    /// - `x`: `[batch, height, width, input]`
    /// - output: `[batch, ceil(height / stride), ceil(width / stride), output]`
    pub(crate) fn forward(&self, x: &FeatureMap) -> FeatureMap {
        let s = self.stride;
        let (oh, ow) = ((x.height - 1) / s + 1, (x.width - 1) / s + 1);
        let k = 9 * self.input;
        let mut columns = vec![0.0f32; x.batch * oh * ow * k];
        columns
            .par_chunks_mut(ow * k)
            .enumerate()
            .for_each(|(row, out)| {
                let (n, oy) = (row / oh, row % oh);
                for (ox, px) in out.chunks_exact_mut(k).enumerate() {
                    for (tap, dst) in px.chunks_exact_mut(self.input).enumerate() {
                        let y = (oy * s + tap / 3).checked_sub(1).filter(|&y| y < x.height);
                        let xx = (ox * s + tap % 3).checked_sub(1).filter(|&v| v < x.width);
                        if let (Some(y), Some(xx)) = (y, xx) {
                            dst.copy_from_slice(x.pixel(n, y, xx));
                        }
                    }
                }
            });
        let rows = x.batch * oh * ow;
        let products = Tensor::<2>::from_data(TensorData::new(columns, [rows, k]), &self.device)
            .matmul(self.filters.clone())
            .into_data();
        let products = products
            .as_slice::<f32>()
            .unwrap_or_else(|e| unreachable!("matmul of f32 tensors gives f32: {e:?}"));
        let mut out = FeatureMap::zeros(x.batch, oh, ow, self.output);
        out.data
            .par_chunks_mut(self.output)
            .zip(products.par_chunks(self.output))
            .for_each(|(o, p)| {
                for ((o, p), b) in o.iter_mut().zip(p).zip(&self.bias) {
                    *o = p + b;
                }
            });
        out
    }
}
