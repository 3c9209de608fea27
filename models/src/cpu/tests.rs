use burn::tensor::{Device, Tensor, TensorData};

use super::IsNet;
use super::map::FeatureMap;
use super::strided::Strided;
use super::winograd::{Epilogue, Winograd};
use crate::isnet::IsNetConfig;
use crate::weights::Weights;

/// Deterministic values in -1..1.
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn map(batch: usize, h: usize, w: usize, c: usize, seed: u64) -> FeatureMap {
    let mut m = FeatureMap::zeros(batch, h, w, c);
    m.data = noise(m.data.len(), seed);
    m
}

/// The definition: a direct 3x3 convolution with zero padding.
fn direct(
    x: &FeatureMap,
    weight: &[f32],
    bias: &[f32],
    out: usize,
    (stride, dilation): (usize, usize),
) -> FeatureMap {
    let cin = x.channels;
    let (oh, ow) = ((x.height - 1) / stride + 1, (x.width - 1) / stride + 1);
    let mut y = FeatureMap::zeros(x.batch, oh, ow, out);
    for n in 0..x.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..out {
                    let mut acc = f64::from(bias[o]);
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let sy = (oy * stride + dilation * ky) as isize - dilation as isize;
                            let sx = (ox * stride + dilation * kx) as isize - dilation as isize;
                            if sy < 0 || sx < 0 || sy >= x.height as isize || sx >= x.width as isize
                            {
                                continue;
                            }
                            let px = x.pixel(n, sy as usize, sx as usize);
                            for c in 0..cin {
                                acc += f64::from(weight[((o * cin + c) * 3 + ky) * 3 + kx])
                                    * f64::from(px[c]);
                            }
                        }
                    }
                    y.data[((n * oh + oy) * ow + ox) * out + o] = acc as f32;
                }
            }
        }
    }
    y
}

fn concat(a: &FeatureMap, b: &FeatureMap) -> FeatureMap {
    let mut out = FeatureMap::zeros(a.batch, a.height, a.width, a.channels + b.channels);
    for (i, px) in out
        .data
        .chunks_exact_mut(a.channels + b.channels)
        .enumerate()
    {
        px[..a.channels].copy_from_slice(&a.data[i * a.channels..(i + 1) * a.channels]);
        px[a.channels..].copy_from_slice(&b.data[i * b.channels..(i + 1) * b.channels]);
    }
    out
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn winograd_matches_the_direct_convolution_at_every_dilation_and_edge() {
    let device = Device::flex();
    // Sizes that are not multiples of the 4x4 tile (or of the dilated block), batches of two,
    // a decoder's two concatenated inputs, ReLU and a residual.
    for (h, w, ca, cb, out, d) in [
        (13, 10, 5, 0, 7, 1),
        (9, 17, 3, 4, 6, 2),
        (11, 7, 6, 2, 5, 3),
        (5, 6, 4, 0, 3, 4),
        (16, 16, 8, 8, 4, 8),
    ] {
        let cin = ca + cb;
        let a = map(2, h, w, ca, 1);
        let b = map(2, h, w, cb.max(1), 2);
        let weight = noise(out * cin * 9, 3);
        let bias = noise(out, 4);
        let conv =
            Winograd::new(&weight, bias.clone(), [out, cin], d, &device).expect("valid test input");
        let (inputs, whole) = if cb == 0 {
            (vec![&a], a.clone())
        } else {
            (vec![&a, &b], concat(&a, &b))
        };
        let expected = direct(&whole, &weight, &bias, out, (1, d));
        let plain = conv.forward(
            &inputs,
            Epilogue {
                relu: false,
                residual: None,
            },
        );
        let diff = max_diff(&plain.data, &expected.data);
        assert!(diff < 1e-4, "{h}x{w} dilation {d}: max difference {diff}");

        let residual = map(2, h, w, out, 5);
        let fused = conv.forward(
            &inputs,
            Epilogue {
                relu: true,
                residual: Some(&residual),
            },
        );
        let want: Vec<f32> = expected
            .data
            .iter()
            .zip(&residual.data)
            .map(|(v, r)| v.max(0.0) + r)
            .collect();
        assert!(max_diff(&fused.data, &want) < 1e-4);
    }
}

#[test]
fn strided_convolution_matches_the_direct_one() {
    let device = Device::flex();
    for (h, w) in [(9, 12), (8, 7)] {
        let x = map(2, h, w, 3, 7);
        let weight = noise(5 * 3 * 9, 8);
        let bias = noise(5, 9);
        let conv =
            Strided::new(&weight, bias.clone(), [5, 3], 2, &device).expect("valid test input");
        let got = conv.forward(&x);
        let expected = direct(&x, &weight, &bias, 5, (2, 1));
        assert_eq!((got.height, got.width), (expected.height, expected.width));
        assert!(max_diff(&got.data, &expected.data) < 1e-5);
    }
}

/// ISNet weights scaled so that activations stay in a sensible range through 100 layers.
fn random_weights() -> Weights {
    let tensors = IsNetConfig::new()
        .layout()
        .iter()
        .enumerate()
        .flat_map(|(i, spec)| {
            let scale = (2.0 / (spec.input * 9) as f32).sqrt();
            let weight = noise(spec.output * spec.input * 9, 100 + i as u64)
                .into_iter()
                .map(|v| v * scale)
                .collect();
            let bias = noise(spec.output, 1000 + i as u64)
                .into_iter()
                .map(|v| v * 0.1)
                .collect();
            [
                (
                    format!("{}.weight", spec.path),
                    spec.weight_shape().to_vec(),
                    weight,
                ),
                (format!("{}.bias", spec.path), vec![spec.output], bias),
            ]
        })
        .collect();
    Weights::new("isnet", "test", "", tensors)
}

#[test]
fn the_cpu_path_computes_the_same_network_as_the_burn_modules() {
    let device = Device::flex();
    let burn_net = IsNetConfig::new()
        .load(&random_weights(), &device)
        .expect("valid test input");
    let cpu_net = IsNet::load(&random_weights(), &device).expect("valid test input");
    // Odd sizes: every pooling level rounds up and every upsampling is uneven.
    let (batch, h, w) = (2, 70, 45);
    let planar = noise(batch * 3 * h * w, 11);
    let expected = burn_net
        .forward(Tensor::<4>::from_data(
            TensorData::new(planar.clone(), [batch, 3, h, w]),
            &device,
        ))
        .into_data()
        .try_to_vec::<f32>()
        .expect("valid test input");
    let got = cpu_net.forward(&FeatureMap::from_planar(&planar, batch, 3, h, w));
    assert_eq!(
        (got.batch, got.height, got.width, got.channels),
        (batch, h, w, 1)
    );
    let diff = max_diff(&got.data, &expected);
    assert!(diff < 1e-4, "max difference {diff}");
    // Not a degenerate network: the map varies.
    let spread = expected.iter().fold(0.0f32, |m, v| m.max(*v))
        - expected.iter().fold(1.0f32, |m, v| m.min(*v));
    assert!(spread > 0.05, "spread {spread}");
}

#[test]
fn weights_for_another_network_are_refused() {
    let device = Device::flex();
    let weights = random_weights();
    weights
        .take("stage1.rebnconvin.weight", &[64, 64, 3, 3])
        .expect("valid test input");
    let err = IsNet::load(&weights, &device)
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("stage1.rebnconvin.weight"), "{err}");
}
