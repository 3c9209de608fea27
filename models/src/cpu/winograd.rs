//! 3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016), and the one strided convolution by
//! im2col. The matrix products of both run on burn's CPU backend.
//!
//! F(4x4, 3x3) computes a 4x4 block of outputs from a 6x6 patch with 36 multiplications per
//! input/output channel pair instead of 144: each patch is transformed (`B^T d B`), each
//! filter once at load (`G g G^T`), the 36 transformed positions become 36 independent
//! matrix products over channels (`[tiles, in] x [in, out]`), and each 6x6 result is
//! transformed back (`A^T m A`). A dilated convolution is the same computation on a grid
//! whose points are `dilation` pixels apart, so tiles are laid out on that grid.
//!
//! The transforms run over whole channel vectors (feature maps are channels last), in bands
//! of output rows that the threads share; the products are burn `matmul`s.

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::map::FeatureMap;
use crate::ModelError;

/// Outputs per tile side.
const TILE: usize = 4;
/// Input patch side (`TILE + 2`).
const PATCH: usize = 6;
/// Transformed positions per tile (`PATCH * PATCH`).
const POSITIONS: usize = PATCH * PATCH;
/// Tiles a thread takes at once: enough rows for an efficient matrix product, few enough that
/// the transformed patches stay near the cache (about 2 MiB of them).
const TILE_BYTES: usize = 2 << 20;

/// `B^T x` for six channel vectors at once, into `out`.
fn transform_input(x: [&[f32]; 6], out: [&mut [f32]; 6]) {
    let [o0, o1, o2, o3, o4, o5] = out;
    let n = o0.len();
    let [x0, x1, x2, x3, x4, x5] = x.map(|s| &s[..n]);
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    for k in 0..n {
        let (d0, d1, d2, d3, d4, d5) = (x0[k], x1[k], x2[k], x3[k], x4[k], x5[k]);
        o0[k] = 4.0 * d0 - 5.0 * d2 + d4;
        o1[k] = d3 + d4 - 4.0 * (d1 + d2);
        o2[k] = d4 - d3 + 4.0 * (d1 - d2);
        o3[k] = d4 - d2 + 2.0 * (d3 - d1);
        o4[k] = d4 - d2 + 2.0 * (d1 - d3);
        o5[k] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// `A^T m` for six channel vectors at once, into four.
fn transform_output(m: [&[f32]; 6], out: [&mut [f32]; 4]) {
    let [y0, y1, y2, y3] = out;
    let n = y0.len();
    let [m0, m1, m2, m3, m4, m5] = m.map(|s| &s[..n]);
    let (y1, y2, y3) = (&mut y1[..n], &mut y2[..n], &mut y3[..n]);
    for k in 0..n {
        let (a, b) = (m1[k] + m2[k], m1[k] - m2[k]);
        let (c, d) = (m3[k] + m4[k], m3[k] - m4[k]);
        y0[k] = m0[k] + a + c;
        y1[k] = b + 2.0 * d;
        y2[k] = a + 4.0 * c;
        y3[k] = b + 8.0 * d + m5[k];
    }
}

/// `G g` for one 3-vector of filter taps.
fn transform_filter(g: [f32; 3]) -> [f32; 6] {
    let [g0, g1, g2] = g;
    [
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    ]
}

/// `N` equal runs of `range` inside consecutive `stride`-long chunks of `block`.
fn runs<const N: usize>(
    block: &mut [f32],
    stride: usize,
    range: std::ops::Range<usize>,
) -> [&mut [f32]; N] {
    let mut chunks = block.chunks_mut(stride).map(|c| &mut c[range.clone()]);
    std::array::from_fn(|_| {
        chunks
            .next()
            .unwrap_or_else(|| unreachable!("callers pass N chunks"))
    })
}

/// What a convolution adds after the product: its bias, then optionally a ReLU, then
/// optionally a residual map (ISNet's RSU blocks add their input branch after the last ReLU).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub(crate) relu: bool,
    pub(crate) residual: Option<&'a FeatureMap>,
}

/// A stride-1 3x3 convolution (padding = dilation, so the size is kept), by F(4x4, 3x3).
#[derive(Debug)]
pub(crate) struct Winograd {
    input: usize,
    output: usize,
    dilation: usize,
    /// The filters transformed once: `[36, input, output]`, position `p = 6 * col + row`.
    filters: Tensor<3>,
    bias: Vec<f32>,
    device: Device,
}

impl Winograd {
    /// From PyTorch-layout weights `[output, input, 3, 3]` and a bias.
    pub(crate) fn new(
        weight: &[f32],
        bias: Vec<f32>,
        [output, input]: [usize; 2],
        dilation: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        super::check_conv(weight, &bias, [output, input], dilation)?;
        let mut v = vec![0.0f32; POSITIONS * input * output];
        for o in 0..output {
            for i in 0..input {
                let g = &weight[(o * input + i) * 9..][..9];
                // Rows first (`G g`, one 3-vector per filter column), then columns.
                let cols: [[f32; 6]; 3] =
                    std::array::from_fn(|kx| transform_filter([g[kx], g[3 + kx], g[6 + kx]]));
                for row in 0..PATCH {
                    let t = transform_filter([cols[0][row], cols[1][row], cols[2][row]]);
                    for (col, value) in t.into_iter().enumerate() {
                        v[((col * PATCH + row) * input + i) * output + o] = value;
                    }
                }
            }
        }
        let filters =
            Tensor::<3>::from_data(TensorData::new(v, [POSITIONS, input, output]), device);
        Ok(Self {
            input,
            output,
            dilation,
            filters,
            bias,
            device: device.clone(),
        })
    }

    /// Convolves the channel-wise concatenation of `inputs` (one map, or a decoder's
    /// upsampled map and its skip, all of one size).
    ///
    /// # Shapes
    /// - `inputs`: `[batch, height, width, c_i]` with `sum(c_i) = input`
    /// - output: `[batch, height, width, output]`
    pub(crate) fn forward(&self, inputs: &[&FeatureMap], epilogue: Epilogue<'_>) -> FeatureMap {
        let first = inputs[0];
        let (batch, height, width) = (first.batch, first.height, first.width);
        debug_assert!(
            inputs
                .iter()
                .all(|m| (m.batch, m.height, m.width) == (batch, height, width))
        );
        debug_assert_eq!(inputs.iter().map(|m| m.channels).sum::<usize>(), self.input);
        let block = TILE * self.dilation;
        let tiles_per_block_row = self.dilation * self.dilation * width.div_ceil(block);
        let per_chunk = (TILE_BYTES / (4 * POSITIONS * self.input)).max(16);
        let band_rows = block * per_chunk.div_ceil(tiles_per_block_row);
        let mut out = FeatureMap::zeros(batch, height, width, self.output);
        let row = width * self.output;
        out.data
            .par_chunks_mut(height * row)
            .enumerate()
            .for_each(|(n, image)| {
                image
                    .par_chunks_mut(band_rows * row)
                    .enumerate()
                    .for_each(|(band, rows)| {
                        let top = band * band_rows;
                        let tiles = self.tiles(top..(top + band_rows).min(height), width);
                        let mut band = Band {
                            rows,
                            top,
                            width,
                            channels: self.output,
                        };
                        for chunk in tiles.chunks(per_chunk) {
                            self.run(inputs, n, chunk, &mut band, epilogue);
                        }
                    });
            });
        out
    }

    /// Tile origins whose outputs fall in `rows`: per block of `4 * dilation` rows and
    /// columns, one tile per residue of the dilation grid.
    fn tiles(&self, rows: std::ops::Range<usize>, width: usize) -> Vec<(usize, usize)> {
        let (d, block) = (self.dilation, TILE * self.dilation);
        let mut out = Vec::new();
        for block_top in rows.clone().step_by(block) {
            for y0 in (block_top..block_top + d).filter(|&y| y < rows.end) {
                for block_left in (0..width).step_by(block) {
                    for x0 in (block_left..block_left + d).filter(|&x| x < width) {
                        out.push((y0, x0));
                    }
                }
            }
        }
        out
    }

    /// Transforms, multiplies and writes back one chunk of tiles of image `n`.
    fn run(
        &self,
        inputs: &[&FeatureMap],
        n: usize,
        tiles: &[(usize, usize)],
        band: &mut Band<'_>,
        epilogue: Epilogue<'_>,
    ) {
        let cin = self.input;
        let mut patches = vec![0.0f32; tiles.len() * POSITIONS * cin];
        let mut scratch = vec![0.0f32; POSITIONS * cin];
        // What a patch reads beyond the image's edge (no input has more than `cin` channels).
        let zeros = vec![0.0f32; cin];
        for (&origin, patch) in tiles.iter().zip(patches.chunks_exact_mut(POSITIONS * cin)) {
            self.transform_patch(inputs, n, origin, (&mut scratch, &zeros), patch);
        }
        // [tiles, 36, in] viewed as [36, tiles, in], times [36, in, out].
        let products = Tensor::<3>::from_data(
            TensorData::new(patches, [tiles.len(), POSITIONS, cin]),
            &self.device,
        )
        .swap_dims(0, 1)
        .matmul(self.filters.clone())
        .into_data();
        let products = products
            .as_slice::<f32>()
            .unwrap_or_else(|e| unreachable!("matmul of f32 tensors gives f32: {e:?}"));
        let mut columns = vec![0.0f32; PATCH * TILE * self.output];
        let mut values = vec![0.0f32; TILE * self.output];
        for (t, &origin) in tiles.iter().enumerate() {
            let position =
                |p: usize| &products[(p * tiles.len() + t) * self.output..][..self.output];
            self.write_tile(
                position,
                origin,
                (&mut columns, &mut values),
                band,
                (n, epilogue),
            );
        }
    }

    /// `B^T d B` of the 6x6 patch at `origin` (its top-left output), laid out `[col][row][in]`.
    fn transform_patch(
        &self,
        inputs: &[&FeatureMap],
        n: usize,
        (y0, x0): (usize, usize),
        (scratch, zeros): (&mut [f32], &[f32]),
        patch: &mut [f32],
    ) {
        let (cin, d) = (self.input, self.dilation);
        let at = |origin: usize, i: usize, limit: usize| {
            (origin + d * i).checked_sub(d).filter(|&v| v < limit)
        };
        // Along each patch row: scratch[row][col][in].
        for i in 0..PATCH {
            let y = at(y0, i, inputs[0].height);
            let mut offset = 0;
            for map in inputs {
                let c = map.channels;
                let xs: [&[f32]; 6] = std::array::from_fn(|j| match (y, at(x0, j, map.width)) {
                    (Some(y), Some(x)) => map.pixel(n, y, x),
                    _ => &zeros[..c],
                });
                let block = &mut scratch[i * PATCH * cin..(i + 1) * PATCH * cin];
                transform_input(xs, runs(block, cin, offset..offset + c));
                offset += c;
            }
        }
        // Down each column: patch[col][row][in].
        for col in 0..PATCH {
            let xs: [&[f32]; 6] =
                std::array::from_fn(|i| &scratch[(i * PATCH + col) * cin..][..cin]);
            let block = &mut patch[col * PATCH * cin..(col + 1) * PATCH * cin];
            transform_input(xs, runs(block, cin, 0..cin));
        }
    }

    /// `A^T m A` of one tile (`position(p)` is its product at transformed position `p`), plus
    /// the epilogue, into the output band.
    fn write_tile<'p>(
        &self,
        position: impl Fn(usize) -> &'p [f32],
        (y0, x0): (usize, usize),
        (columns, values): (&mut [f32], &mut [f32]),
        band: &mut Band<'_>,
        (n, epilogue): (usize, Epilogue<'_>),
    ) {
        let (cout, d) = (self.output, self.dilation);
        // Down each column: columns[col][out_row][out].
        for col in 0..PATCH {
            let ms: [&[f32]; 6] = std::array::from_fn(|row| position(col * PATCH + row));
            let block = &mut columns[col * TILE * cout..(col + 1) * TILE * cout];
            transform_output(ms, runs(block, cout, 0..cout));
        }
        for r in 0..TILE {
            let y = y0 + d * r;
            if y >= band.bottom() {
                break;
            }
            let ms: [&[f32]; 6] =
                std::array::from_fn(|col| &columns[(col * TILE + r) * cout..][..cout]);
            transform_output(ms, runs(values, cout, 0..cout));
            for (q, value) in values.chunks_exact(cout).enumerate() {
                let x = x0 + d * q;
                if x >= band.width {
                    break;
                }
                let residual = epilogue.residual.map(|m| m.pixel(n, y, x));
                finish(band.pixel(y, x), value, &self.bias, epilogue.relu, residual);
            }
        }
    }
}

/// Rows `top..` of one output image.
pub(crate) struct Band<'a> {
    rows: &'a mut [f32],
    top: usize,
    width: usize,
    channels: usize,
}

impl Band<'_> {
    fn bottom(&self) -> usize {
        self.top + self.rows.len() / (self.width * self.channels)
    }

    fn pixel(&mut self, y: usize, x: usize) -> &mut [f32] {
        let at = ((y - self.top) * self.width + x) * self.channels;
        &mut self.rows[at..at + self.channels]
    }
}

/// `out = [relu](value + bias) [+ residual]`.
fn finish(out: &mut [f32], value: &[f32], bias: &[f32], relu: bool, residual: Option<&[f32]>) {
    let n = out.len();
    let (value, bias) = (&value[..n], &bias[..n]);
    for k in 0..n {
        let v = value[k] + bias[k];
        out[k] = if relu { v.max(0.0) } else { v };
    }
    if let Some(residual) = residual {
        for (o, r) in out.iter_mut().zip(residual) {
            *o += r;
        }
    }
}
