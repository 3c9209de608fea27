//! Channels-last feature maps and the cheap layers between the networks' convolutions: 2x2
//! ceil-mode max-pooling, bilinear resizing with half-pixel centres, nearest-neighbour
//! doubling, the sigmoid.
//!
//! Channels last (`[batch, height, width, channels]`) keeps each pixel's channels in one
//! contiguous run, so every layer here, and the Winograd transforms in
//! [`super::winograd`], run over whole channel vectors that the compiler vectorises.

use rayon::prelude::*;

/// A batch of feature maps, channels last: `[batch, height, width, channels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    /// Images in the batch.
    pub batch: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels per pixel.
    pub channels: usize,
    /// `batch * height * width * channels` values, channels fastest.
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// A map of zeros.
    pub fn zeros(batch: usize, height: usize, width: usize, channels: usize) -> Self {
        Self {
            batch,
            height,
            width,
            channels,
            data: vec![0.0; batch * height * width * channels],
        }
    }

    /// From planar images (`[batch, channels, height, width]`, as burn and ONNX lay them out).
    pub fn from_planar(
        data: &[f32],
        batch: usize,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Self {
        let images: Vec<&[f32]> = data.chunks_exact(channels * height * width).collect();
        debug_assert_eq!(images.len(), batch);
        Self::from_planar_images(&images, channels, height, width)
    }

    /// From a batch of planar images, each `[channels, height, width]`.
    pub fn from_planar_images<I: AsRef<[f32]>>(
        images: &[I],
        channels: usize,
        height: usize,
        width: usize,
    ) -> Self {
        let plane = height * width;
        let mut out = Self::zeros(images.len(), height, width, channels);
        for (image, planes) in out.data.chunks_exact_mut(plane * channels).zip(images) {
            let planes = planes.as_ref();
            for (i, px) in image.chunks_exact_mut(channels).enumerate() {
                for (c, v) in px.iter_mut().enumerate() {
                    *v = planes[c * plane + i];
                }
            }
        }
        out
    }

    /// Back to planar `[batch, channels, height, width]`.
    pub fn to_planar(&self) -> Vec<f32> {
        let plane = self.height * self.width;
        let mut out = vec![0.0; self.data.len()];
        for (n, image) in self.data.chunks_exact(plane * self.channels).enumerate() {
            let planes = &mut out[n * plane * self.channels..(n + 1) * plane * self.channels];
            for (i, px) in image.chunks_exact(self.channels).enumerate() {
                for (c, v) in px.iter().enumerate() {
                    planes[c * plane + i] = *v;
                }
            }
        }
        out
    }

    /// The channel vector of pixel `(y, x)` of image `n`.
    pub(crate) fn pixel(&self, n: usize, y: usize, x: usize) -> &[f32] {
        let at = ((n * self.height + y) * self.width + x) * self.channels;
        &self.data[at..at + self.channels]
    }

    fn row_len(&self) -> usize {
        self.width * self.channels
    }

    /// 2x2 max-pooling with stride 2, rounding the output size up (PyTorch's
    /// `ceil_mode=True`): windows that hang over the edge take the maximum of what is inside.
    pub fn max_pool(&self) -> Self {
        let (h, w, c) = (
            self.height.div_ceil(2),
            self.width.div_ceil(2),
            self.channels,
        );
        Self::by_pixel([self.batch, h, w, c], |n, y, x, px| {
            px.fill(f32::NEG_INFINITY);
            for sy in 2 * y..(2 * y + 2).min(self.height) {
                for sx in 2 * x..(2 * x + 2).min(self.width) {
                    for (o, v) in px.iter_mut().zip(self.pixel(n, sy, sx)) {
                        *o = o.max(*v);
                    }
                }
            }
        })
    }

    /// Twice the size, each pixel repeated 2x2 (nearest neighbour), as the watermark
    /// detector's decoder upsamples.
    pub fn double(&self) -> Self {
        let size = [self.batch, 2 * self.height, 2 * self.width, self.channels];
        Self::by_pixel(size, |n, y, x, px| {
            px.copy_from_slice(self.pixel(n, y / 2, x / 2));
        })
    }

    /// A `[batch, height, width, channels]` map whose every pixel `fill(n, y, x, channels)`
    /// writes, rows in parallel.
    fn by_pixel(
        [batch, height, width, channels]: [usize; 4],
        fill: impl Fn(usize, usize, usize, &mut [f32]) + Sync,
    ) -> Self {
        let mut out = Self::zeros(batch, height, width, channels);
        out.data
            .par_chunks_mut(width * channels)
            .enumerate()
            .for_each(|(row, out_row)| {
                let (n, y) = (row / height, row % height);
                for (x, px) in out_row.chunks_exact_mut(channels).enumerate() {
                    fill(n, y, x, px);
                }
            });
        out
    }

    /// Bilinear resize to `height` x `width` with half-pixel centres (PyTorch's
    /// `align_corners=False`, ONNX's `half_pixel`); the map itself when the size agrees.
    pub fn resize(self, height: usize, width: usize) -> Self {
        if (self.height, self.width) == (height, width) {
            return self;
        }
        let c = self.channels;
        let ys = taps(self.height, height);
        let xs = taps(self.width, width);
        let mut out = Self::zeros(self.batch, height, width, c);
        out.data
            .par_chunks_mut(width * c)
            .enumerate()
            .for_each(|(row, out_row)| {
                let (n, y) = (row / height, row % height);
                let (y0, y1, ly) = ys[y];
                let base = n * self.height;
                let r0 = &self.data[(base + y0) * self.row_len()..][..self.row_len()];
                let r1 = &self.data[(base + y1) * self.row_len()..][..self.row_len()];
                for (x, px) in out_row.chunks_exact_mut(c).enumerate() {
                    let (x0, x1, lx) = xs[x];
                    let (a, b) = (&r0[x0 * c..][..c], &r0[x1 * c..][..c]);
                    let (d, e) = (&r1[x0 * c..][..c], &r1[x1 * c..][..c]);
                    for k in 0..c {
                        let top = (1.0 - lx) * a[k] + lx * b[k];
                        let bottom = (1.0 - lx) * d[k] + lx * e[k];
                        px[k] = (1.0 - ly) * top + ly * bottom;
                    }
                }
            });
        out
    }

    /// This map resized to `like`'s height and width.
    pub fn resize_like(self, like: &FeatureMap) -> Self {
        self.resize(like.height, like.width)
    }

    /// The logistic function of every value.
    pub fn sigmoid(mut self) -> Self {
        self.data
            .par_iter_mut()
            .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
        self
    }
}

/// For each of `to` output positions: the two source positions and the weight of the second,
/// with PyTorch's half-pixel mapping (`src = (dst + 0.5) * from / to - 0.5`, clamped at 0).
fn taps(from: usize, to: usize) -> Vec<(usize, usize, f32)> {
    let scale = from as f32 / to as f32;
    (0..to)
        .map(|i| {
            let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src as usize).min(from - 1);
            let i1 = (i0 + 1).min(from - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(batch: usize, h: usize, w: usize, c: usize) -> FeatureMap {
        let mut m = FeatureMap::zeros(batch, h, w, c);
        for (i, v) in m.data.iter_mut().enumerate() {
            *v = ((i * 37) % 101) as f32 - 50.0;
        }
        m
    }

    #[test]
    fn planar_round_trip() {
        let m = ramp(2, 3, 5, 4);
        let planar = m.to_planar();
        // Image 1, channel 2, pixel (1, 3).
        assert_eq!(planar[(4 + 2) * 15 + 5 + 3], m.pixel(1, 1, 3)[2]);
        assert_eq!(FeatureMap::from_planar(&planar, 2, 4, 3, 5), m);
    }

    #[test]
    fn ceil_mode_pool_keeps_the_last_odd_row_and_column() {
        let m = ramp(1, 5, 3, 2);
        let p = m.max_pool();
        assert_eq!((p.height, p.width), (3, 2));
        // The bottom-right window holds the single pixel (4, 2).
        assert_eq!(p.pixel(0, 2, 1), m.pixel(0, 4, 2));
        let top_left = (0..2)
            .flat_map(|y| (0..2).map(move |x| (y, x)))
            .map(|(y, x)| m.pixel(0, y, x)[1])
            .fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(p.pixel(0, 0, 0)[1], top_left);
    }

    #[test]
    fn upsampling_by_two_interpolates_between_neighbours() {
        let mut m = FeatureMap::zeros(1, 1, 2, 1);
        m.data = vec![0.0, 4.0];
        let r = m.resize(1, 4);
        // Half-pixel centres: 0.25 and 0.75 of the way between the two source pixels,
        // clamped at the edges.
        assert_eq!(r.data, vec![0.0, 1.0, 3.0, 4.0]);
    }
}
