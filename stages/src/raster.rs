/// An 8-bit image: `channels` interleaved samples per pixel (1, 2, 3 or 4), rows top to bottom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raster {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel.
    pub channels: u8,
    /// `width * height * channels` samples.
    pub data: Vec<u8>,
}

impl Raster {
    /// Wraps samples; `None` if the length does not match the size.
    pub fn from_data(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Option<Self> {
        let expected = width as usize * height as usize * channels as usize;
        (data.len() == expected && (1..=4).contains(&channels)).then_some(Self {
            width,
            height,
            channels,
            data,
        })
    }

    /// An image with every sample set to `value`.
    pub fn filled(width: u32, height: u32, channels: u8, value: u8) -> Self {
        let len = width as usize * height as usize * channels as usize;
        Self {
            width,
            height,
            channels,
            data: vec![value; len],
        }
    }

    /// Offset of the first sample of pixel (x, y).
    #[inline]
    pub fn offset(&self, x: u32, y: u32) -> usize {
        (y as usize * self.width as usize + x as usize) * self.channels as usize
    }

    /// The samples of pixel (x, y).
    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let at = self.offset(x, y);
        &self.data[at..at + self.channels as usize]
    }

    /// The samples of pixel (x, y), mutable.
    #[inline]
    pub fn pixel_mut(&mut self, x: u32, y: u32) -> &mut [u8] {
        let at = self.offset(x, y);
        let n = self.channels as usize;
        &mut self.data[at..at + n]
    }

    /// `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

/// A binary mask: `true` where pixels are to be removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// One byte per pixel, 0 (keep) or 1 (remove).
    pub data: Vec<u8>,
}

impl Mask {
    /// An empty mask (nothing to remove).
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; width as usize * height as usize],
        }
    }

    /// Whether (x, y) is to be removed.
    #[inline]
    pub fn get(&self, x: u32, y: u32) -> bool {
        self.data[y as usize * self.width as usize + x as usize] != 0
    }

    /// Marks (x, y).
    #[inline]
    pub fn set(&mut self, x: u32, y: u32, on: bool) {
        self.data[y as usize * self.width as usize + x as usize] = u8::from(on);
    }

    /// Number of marked pixels.
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&v| v != 0).count()
    }

    /// `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}
