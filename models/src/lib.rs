//! unmark's neural networks, on [burn](https://burn.dev).
//!
//! - [`isnet`]: ISNet (DIS), the background-segmentation network behind rembg's
//!   `isnet-general-use`, as burn modules ([`isnet::IsNet`], [`isnet::IsNetConfig`]).
//! - [`detector`]: the watermark detector's U-Net, for the detect stage's jobs with no mask.
//! - [`import`]: published ONNX weights (rembg's float32 file, IMG.LY's float16 chunks)
//!   into unmark's own weight files ([`weights::Weights`]), read back at run time.
//! - [`preprocess`]: rembg's exact pre- and post-processing.
//! - [`Segmenter`]: a loaded network on a chosen [`Backend`], turning batches of photos
//!   into alpha masks.
//!
//! ```no_run
//! use unmark_models::{Backend, Segmenter};
//!
//! let segmenter = Segmenter::load("unmark-data/models/isnet.umw".as_ref(), Backend::Cpu)?;
//! let rgb = vec![128u8; 64 * 48 * 3];
//! let masks = segmenter.masks(&[(&rgb[..], (64, 48))])?;
//! assert_eq!(masks[0].len(), 64 * 48);
//! # Ok::<(), unmark_models::ModelError>(())
//! ```

pub mod batch;
#[cfg(feature = "flex")]
pub mod cpu;
pub mod detector;
pub mod import;
pub mod isnet;
pub mod onnx;
pub mod preprocess;
pub mod weights;

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use isnet::{IsNet, IsNetConfig};
use weights::Weights;

/// What went wrong loading or running a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// An ONNX file is malformed or not what it claims.
    #[error("onnx: {0}")]
    Onnx(String),
    /// A weight file is malformed or truncated.
    #[error("weight file: {0}")]
    Format(String),
    /// Weights do not fit the network: a tensor missing, extra, or of the wrong shape.
    #[error("{0}")]
    Layout(String),
    /// The backend asked for is not compiled in or has no device.
    #[error("{0}")]
    Backend(String),
    /// An input the model cannot take.
    #[error("{0}")]
    Input(String),
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The CPU, through burn's pure-Rust `flex` backend (feature `flex`, the default).
    #[default]
    Cpu,
    /// A GPU through wgpu: Vulkan, Metal or DX12 (feature `wgpu`).
    Wgpu,
    /// An NVIDIA GPU through CUDA (feature `cuda`).
    Cuda,
}

impl Backend {
    /// Parses a config value: `cpu`, `wgpu` or `cuda`.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(ModelError::Backend(format!(
                "unknown device {other:?}: expected cpu, wgpu or cuda"
            ))),
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// The burn device, checked by running one small operation on it (a GPU backend with
    /// no adapter fails here with a clear error instead of in the first job).
    pub fn device(self) -> Result<Device, ModelError> {
        let device = self.unchecked_device()?;
        let probe = device.clone();
        std::panic::catch_unwind(move || {
            Tensor::<1>::ones([4], &probe)
                .sum()
                .into_data()
                .try_to_vec::<f32>()
        })
        .ok()
        .and_then(|r| r.ok())
        .filter(|v| v.first() == Some(&4.0))
        .map(|_| device)
        .ok_or_else(|| {
            ModelError::Backend(format!(
                "device {:?} did not come up (no adapter found, or a driver error; \
                 see the log above)",
                self.as_str()
            ))
        })
    }

    fn unchecked_device(self) -> Result<Device, ModelError> {
        let missing = |feature: &str| {
            ModelError::Backend(format!(
                "device {:?} is not compiled into this build: rebuild with \
                 `--features {feature}`",
                self.as_str()
            ))
        };
        match self {
            #[cfg(feature = "flex")]
            Self::Cpu => Ok(Device::flex()),
            #[cfg(not(feature = "flex"))]
            Self::Cpu => Err(missing("flex")),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "wgpu"))]
            Self::Wgpu => Err(missing("wgpu")),
            #[cfg(feature = "cuda")]
            Self::Cuda => Ok(Device::cuda(0)),
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => Err(missing("cuda")),
        }
    }
}

/// How a [`Segmenter`] computes the network.
#[derive(Debug)]
enum Net {
    /// The burn modules, on any device (the GPU backends, or burn's own CPU kernels).
    Burn { net: Box<IsNet>, device: Device },
    /// The CPU path: Winograd convolutions on channels-last maps, products on burn's `flex`.
    #[cfg(feature = "flex")]
    Cpu(Box<cpu::IsNet>),
}

/// An ISNet on a device: photos in, alpha masks out.
#[derive(Debug)]
pub struct Segmenter {
    net: Net,
    side: u32,
}

impl Segmenter {
    /// Loads an imported weight file onto `backend`.
    pub fn load(path: &Path, backend: Backend) -> Result<Self, ModelError> {
        let weights = Weights::open(path)?;
        Self::from_weights(&weights, backend)
    }

    /// The network with `weights` on `backend`: the CPU path ([`cpu`]) for
    /// [`Backend::Cpu`], the burn modules on the GPU backends.
    pub fn from_weights(weights: &Weights, backend: Backend) -> Result<Self, ModelError> {
        check_model(weights)?;
        let device = backend.device()?;
        match backend {
            #[cfg(feature = "flex")]
            Backend::Cpu => Ok(Self::with(Net::Cpu(Box::new(cpu::IsNet::load(
                weights, &device,
            )?)))),
            _ => Self::burn_modules(weights, device),
        }
    }

    /// The burn modules ([`IsNet`]) with `weights` on `device`, whatever the device (on the
    /// CPU this runs burn's own kernels: slower than [`Segmenter::from_weights`], kept to
    /// check the two against each other).
    pub fn burn_modules(weights: &Weights, device: Device) -> Result<Self, ModelError> {
        check_model(weights)?;
        let net = IsNetConfig::new().load(weights, &device)?;
        Ok(Self::with(Net::Burn {
            net: Box::new(net),
            device,
        }))
    }

    fn with(net: Net) -> Self {
        Self {
            net,
            side: isnet::INPUT_SIZE as u32,
        }
    }

    /// The same network run at `side` x `side` instead of 1024 (smaller is faster and
    /// coarser; for tests and small devices).
    pub fn with_input_side(mut self, side: u32) -> Self {
        self.side = side.max(32);
        self
    }

    /// The side of the square the network runs at.
    pub fn input_side(&self) -> u32 {
        self.side
    }

    /// One forward pass over normalised inputs, each planar `[3, side, side]`; returns each
    /// input's probability map (`side * side` values).
    pub fn predict(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let side = self.side as usize;
        let plane = side * side;
        if let Some(bad) = inputs.iter().find(|i| i.len() != 3 * plane) {
            return Err(ModelError::Input(format!(
                "input of {} values is not [3, {side}, {side}]",
                bad.len()
            )));
        }
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let batch = inputs.len();
        let values = match &self.net {
            Net::Burn { net, device } => {
                let data = TensorData::new(inputs.concat(), [batch, 3, side, side]);
                let x = Tensor::<4>::from_data(data, device);
                net.forward(x)
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| ModelError::Backend(format!("reading the output back: {e:?}")))?
            }
            #[cfg(feature = "flex")]
            Net::Cpu(net) => {
                // One channel: channels-last is already planar.
                net.forward(&cpu::FeatureMap::from_planar_images(inputs, 3, side, side))
                    .data
            }
        };
        Ok(values.chunks_exact(plane).map(<[f32]>::to_vec).collect())
    }

    /// Alpha masks (8-bit, photo size) for a batch of RGB photos given as
    /// `(interleaved RGB bytes, (width, height))`, in one forward pass.
    pub fn masks(&self, photos: &[(&[u8], (u32, u32))]) -> Result<Vec<Vec<u8>>, ModelError> {
        let inputs = photos
            .iter()
            .map(|(rgb, size)| preprocess::normalize(rgb, *size, self.side))
            .collect::<Result<Vec<_>, _>>()?;
        let preds = self.predict(&inputs)?;
        preds
            .iter()
            .zip(photos)
            .map(|(pred, (_, size))| preprocess::mask_from_prediction(pred, self.side, *size))
            .collect()
    }

    /// Runs one pass at the working size so that the first real request does not pay for
    /// allocation and kernel set-up.
    pub fn warm_up(&self) -> Result<(), ModelError> {
        let plane = (self.side * self.side) as usize;
        self.predict(&[vec![0.0; 3 * plane]]).map(|_| ())
    }
}

fn check_model(weights: &Weights) -> Result<(), ModelError> {
    if weights.header.model != "isnet" {
        return Err(ModelError::Layout(format!(
            "the weight file holds {:?}, not isnet",
            weights.header.model
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_and_missing_ones_are_named() {
        assert_eq!(
            Backend::parse("cpu").expect("valid test input"),
            Backend::Cpu
        );
        assert!(
            Backend::parse("tpu")
                .expect_err("must fail")
                .to_string()
                .contains("cpu, wgpu or cuda")
        );
        #[cfg(not(feature = "cuda"))]
        {
            let err = Backend::Cuda.device().expect_err("must fail").to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
