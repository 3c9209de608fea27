//! The watermark detector's network, as burn modules: per-pixel logits (positive: a visible
//! watermark covers the pixel) for the detect stage (`unmark_stages::detect::auto`, which
//! owns the working sizes, the mirror pass and the thresholds).
//!
//! A four-level U-Net of 3x3 convolutions (about 250k weights): two layers of 16 channels at
//! full size, a 2x2 max-pool, two of 32 at half size, a max-pool, three of 48 at quarter size
//! (dilations 1, 2, 4), a max-pool, three of 64 at an eighth (dilations 1, 2, 4), then back up
//! three times (nearest-neighbour, concatenated with the skip connection, one layer each) and
//! a 1x1 head. Every layer but the head is followed by a ReLU; every convolution is
//! zero-padded to keep its input's size. The eighth-size level sees about 150 px around each
//! pixel, so the flat inside of a large logo is judged with its outline in view.
//!
//! It is trained by `models/watermark-detector/train.py` (PyTorch), which also writes a
//! parity fixture: the detect stage's tests hold these modules to PyTorch's logits.
//!
//! Weights file, little-endian: `b"UMWD"`, `u32` version (3), `u32` layer count (14), then per
//! layer `u32` in, out, kernel, dilation, the weights `[out][in][ky][kx]` and the biases, all
//! `f32`, in the order of [`LAYOUT`].

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::module::{interpolate, max_pool2d};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::isnet::rsu::loaded_conv;
use crate::{Backend, ModelError};

/// The layers, in file order: (name, in, out, kernel, dilation).
pub const LAYOUT: [(&str, usize, usize, usize, usize); 14] = [
    ("c1a", 3, 16, 3, 1),
    ("c1b", 16, 16, 3, 1),
    ("c2a", 16, 32, 3, 1),
    ("c2b", 32, 32, 3, 1),
    ("c3a", 32, 48, 3, 1),
    ("c3b", 48, 48, 3, 2),
    ("c3c", 48, 48, 3, 4),
    ("c4a", 48, 64, 3, 1),
    ("c4b", 64, 64, 3, 2),
    ("c4c", 64, 64, 3, 4),
    ("u3", 112, 48, 3, 1),
    ("u2", 80, 32, 3, 1),
    ("u1", 48, 16, 3, 1),
    ("head", 16, 1, 1, 1),
];

/// The weights file's version: 3 is the four-level network of [`LAYOUT`].
const VERSION: usize = 3;

/// The input's sides must be multiples of this (three 2x2 poolings).
pub const SIDE_MULTIPLE: usize = 8;

/// The detector network, loaded.
#[derive(Debug)]
pub struct Detector {
    net: Net,
}

/// How a [`Detector`] computes the network.
#[derive(Debug)]
enum Net {
    /// The burn modules ([`Modules`]), on any device.
    Burn(Modules),
    /// The CPU path: Winograd convolutions on channels-last maps ([`crate::cpu`]).
    #[cfg(feature = "flex")]
    Cpu(crate::cpu::Detector),
}

impl Detector {
    /// Reads a weights file onto `backend`, naming what is wrong with a bad file: the CPU
    /// path ([`crate::cpu`]) for [`Backend::Cpu`], the burn modules on the GPU backends.
    pub fn from_bytes(bytes: &[u8], backend: Backend) -> Result<Self, ModelError> {
        let layers = parse(bytes)?;
        let device = backend.device()?;
        let net = match backend {
            #[cfg(feature = "flex")]
            Backend::Cpu => Net::Cpu(crate::cpu::Detector::new(layers, &device)?),
            _ => Net::Burn(Modules::new(layers, device)),
        };
        Ok(Self { net })
    }

    /// The burn modules with a weights file's layers on `device`, whatever the device (on
    /// the CPU this runs burn's own kernels: slower than [`Detector::from_bytes`], kept to
    /// check the two against each other).
    pub fn burn_modules(bytes: &[u8], device: Device) -> Result<Self, ModelError> {
        Ok(Self {
            net: Net::Burn(Modules::new(parse(bytes)?, device)),
        })
    }

    /// The logits of one image given planar `[3, height, width]` (each value in -0.5..0.5:
    /// `byte / 255 - 0.5`), `height * width` values; both sides must be multiples of
    /// [`SIDE_MULTIPLE`].
    pub fn logits(
        &self,
        input: Vec<f32>,
        (width, height): (usize, usize),
    ) -> Result<Vec<f32>, ModelError> {
        if width == 0
            || height == 0
            || width % SIDE_MULTIPLE != 0
            || height % SIDE_MULTIPLE != 0
            || input.len() != 3 * width * height
        {
            return Err(ModelError::Input(format!(
                "the detector takes [3, height, width] with sides multiples of {SIDE_MULTIPLE}; \
                 got {} values for {width}x{height}",
                input.len()
            )));
        }
        match &self.net {
            Net::Burn(modules) => {
                let data = TensorData::new(input, [1, 3, height, width]);
                modules
                    .forward(Tensor::<4>::from_data(data, &modules.device))
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| ModelError::Backend(format!("reading the logits back: {e:?}")))
            }
            #[cfg(feature = "flex")]
            Net::Cpu(net) => Ok(net.forward(&crate::cpu::FeatureMap::from_planar_images(
                &[input],
                3,
                height,
                width,
            ))),
        }
    }
}

/// The network as burn modules: the definition, run on any device.
#[derive(Debug)]
struct Modules {
    /// The layers of [`LAYOUT`], in order.
    convs: Vec<Conv2d>,
    device: Device,
}

impl Modules {
    fn new(layers: Vec<Layer>, device: Device) -> Self {
        let convs = layers
            .into_iter()
            .map(|layer| layer.into_conv(&device))
            .collect();
        Self { convs, device }
    }

    /// # Shapes
    /// - `x`: `[batch, 3, height, width]`, sides multiples of [`SIDE_MULTIPLE`]
    /// - output: `[batch, 1, height, width]`
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let layer = |i: usize, x: Tensor<4>| relu(self.convs[i].forward(x));
        let e1 = layer(1, layer(0, x));
        let e2 = layer(3, layer(2, pool(e1.clone())));
        let e3 = layer(6, layer(5, layer(4, pool(e2.clone()))));
        let e4 = layer(9, layer(8, layer(7, pool(e3.clone()))));
        let u3 = layer(10, Tensor::cat(vec![double(e4), e3], 1));
        let u2 = layer(11, Tensor::cat(vec![double(u3), e2], 1));
        let u1 = layer(12, Tensor::cat(vec![double(u2), e1], 1));
        self.convs[13].forward(u1)
    }
}

/// 2x2 max-pool, stride 2 (the sides are even).
fn pool(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([2, 2]).with_stride([2, 2]))
}

/// Twice the size, each value repeated 2x2 (nearest neighbour).
fn double(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]),
    )
}

/// One layer as read from the file.
pub(crate) struct Layer {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    pub(crate) kernel: usize,
    pub(crate) dilation: usize,
    /// `[out][in][ky][kx]`.
    pub(crate) weights: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl Layer {
    /// The layer as a burn convolution, zero-padded to keep the input's size.
    fn into_conv(self, device: &Device) -> Conv2d {
        let (k, d) = (self.kernel, self.dilation);
        let pad = d * (k / 2);
        let config = Conv2dConfig::new([self.inputs, self.outputs], [k, k])
            .with_dilation([d, d])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad));
        loaded_conv(&config, self.weights, self.bias, device)
    }
}

/// Reads the layers of a weights file, checked against [`LAYOUT`].
fn parse(bytes: &[u8]) -> Result<Vec<Layer>, ModelError> {
    let bad = |why: String| ModelError::Format(format!("detector weights: {why}"));
    let mut at = 0usize;
    let mut take = |n: usize, what: &str| -> Result<&[u8], ModelError> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad(format!("truncated in {what} at byte {at}")))?;
        let s = &bytes[at..end];
        at = end;
        Ok(s)
    };
    if take(4, "the magic")? != b"UMWD" {
        return Err(bad("not a detector weights file (no UMWD magic)".into()));
    }
    let u32_at = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let version = u32_at(take(4, "the version")?);
    if version != VERSION {
        return Err(bad(format!("version {version}, expected {VERSION}")));
    }
    let count = u32_at(take(4, "the layer count")?);
    if count != LAYOUT.len() {
        return Err(bad(format!("{count} layers, expected {}", LAYOUT.len())));
    }
    let floats = |s: &[u8]| -> Vec<f32> {
        s.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let mut layers = Vec::with_capacity(count);
    for (name, inputs, outputs, kernel, dilation) in LAYOUT {
        let head = take(16, "a layer header")?;
        let got = [0, 4, 8, 12].map(|o| u32_at(&head[o..o + 4]));
        if got != [inputs, outputs, kernel, dilation] {
            return Err(bad(format!(
                "layer {name} is {}->{} kernel {} dilation {}, expected \
                 {inputs}->{outputs} kernel {kernel} dilation {dilation}",
                got[0], got[1], got[2], got[3]
            )));
        }
        let weights = floats(take(4 * outputs * inputs * kernel * kernel, "weights")?);
        let bias = floats(take(4 * outputs, "biases")?);
        if weights.iter().chain(&bias).any(|v| !v.is_finite()) {
            return Err(bad(format!("layer {name} has a weight that is not finite")));
        }
        layers.push(Layer {
            inputs,
            outputs,
            kernel,
            dilation,
            weights,
            bias,
        });
    }
    if at != bytes.len() {
        return Err(bad(format!(
            "{} bytes after the last layer",
            bytes.len() - at
        )));
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    static WEIGHTS: &[u8] = include_bytes!("../watermark-detector/detector.bin");

    /// A planar `[3, h, w]` input in -0.5..0.5 with edges and flat parts.
    fn input(w: usize, h: usize) -> Vec<f32> {
        (0..3 * w * h)
            .map(|i| {
                let (c, y, x) = (i / (w * h), i / w % h, i % w);
                (((x * 7 + y * 13 + c * 29) % 256) as f32 / 255.0 - 0.5) * f32::from(x % 11 > 3)
            })
            .collect()
    }

    #[cfg(feature = "flex")]
    #[test]
    fn the_cpu_path_gives_the_burn_modules_logits() {
        let (w, h) = (40, 24);
        let fast = Detector::from_bytes(WEIGHTS, Backend::Cpu).expect("cpu path");
        let device = Backend::Cpu.device().expect("cpu device");
        let modules = Detector::burn_modules(WEIGHTS, device).expect("modules");
        let (a, b) = (
            fast.logits(input(w, h), (w, h)).expect("cpu logits"),
            modules.logits(input(w, h), (w, h)).expect("burn logits"),
        );
        assert_eq!(a.len(), w * h);
        let spread = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(spread > 1.0, "the logits vary: max |logit| {spread}");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-3 * (1.0 + y.abs()),
                "logit {i}: {x} vs {y}"
            );
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn inputs_of_the_wrong_shape_are_refused() {
        let net = Detector::from_bytes(WEIGHTS, Backend::Cpu).expect("cpu path");
        for (len, size) in [
            (3 * 12 * 8, (12, 8)),
            (3 * 16 * 8 - 1, (16, 8)),
            (0, (0, 0)),
        ] {
            let err = net.logits(vec![0.0; len], size).expect_err("refused");
            assert!(err.to_string().contains("multiples of 8"), "{err}");
        }
    }

    #[test]
    fn bad_weight_files_name_the_problem() {
        // The file is read before any device is asked for.
        let err = |bytes: &[u8]| {
            Detector::from_bytes(bytes, Backend::Cpu)
                .expect_err("bad file")
                .to_string()
        };
        assert!(err(b"PK\x03\x04").contains("magic"));
        assert!(err(&WEIGHTS[..WEIGHTS.len() - 3]).contains("truncated"));
        let mut longer = WEIGHTS.to_vec();
        longer.push(0);
        assert!(err(&longer).contains("after the last layer"));
        let mut wrong = WEIGHTS.to_vec();
        wrong[16] = 4; // c1a's output count
        assert!(
            err(&wrong).contains(
                "layer c1a is 3->4 kernel 3 dilation 1, expected 3->16 kernel 3 dilation 1"
            )
        );
    }
}
