//! The binary form of intermediate artifacts passed between stages through the blob store.
//!
//! Layout: the magic `UMA1`, a little-endian `u32` length and a JSON [`Header`], then the
//! sections (pixels, ICC profile, EXIF), each a `u32` length and its bytes. Pixels are raw,
//! so that decoding an artifact is one copy, never a re-decode.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::{Mask, Raster, StageError};

const MAGIC: &[u8; 4] = b"UMA1";

/// The container format an image was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
    /// BMP.
    Bmp,
    /// TIFF.
    Tiff,
    /// GIF (first frame).
    Gif,
}

/// A decoded image with what the encoder needs to keep of its source.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// Pixels, orientation applied.
    pub raster: Raster,
    /// Source container.
    pub format: SourceFormat,
    /// ICC profile, kept on output.
    pub icc: Option<Vec<u8>>,
    /// EXIF block, kept on output only on request.
    pub exif: Option<Vec<u8>>,
}

/// The JSON header of an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// `image` or `mask`.
    pub kind: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel.
    pub channels: u8,
    /// Source container, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SourceFormat>,
}

fn corrupt(what: &str) -> StageError {
    StageError::internal(format!("intermediate artifact is damaged: {what}"))
}

fn write(header: &Header, sections: &[&[u8]]) -> Bytes {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let total: usize = 8 + json.len() + sections.iter().map(|s| 4 + s.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(total);
    out.put_slice(MAGIC);
    out.put_u32_le(json.len() as u32);
    out.put_slice(&json);
    for section in sections {
        out.put_u32_le(section.len() as u32);
        out.put_slice(section);
    }
    out.freeze()
}

fn take<'a>(bytes: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], StageError> {
    if bytes.len() < n {
        return Err(corrupt(what));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn take_u32(bytes: &mut &[u8], what: &str) -> Result<usize, StageError> {
    let raw = take(bytes, 4, what)?;
    Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
}

/// Reads only the header: cheap, for stages that need sizes but not pixels.
pub fn read_header(bytes: &[u8]) -> Result<Header, StageError> {
    read(bytes).map(|(header, _)| header)
}

fn read(mut bytes: &[u8]) -> Result<(Header, Vec<&[u8]>), StageError> {
    if take(&mut bytes, 4, "magic")? != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let len = take_u32(&mut bytes, "header length")?;
    let header: Header = serde_json::from_slice(take(&mut bytes, len, "header")?)
        .map_err(|e| corrupt(&e.to_string()))?;
    let mut sections = Vec::new();
    while !bytes.is_empty() {
        let len = take_u32(&mut bytes, "section length")?;
        sections.push(take(&mut bytes, len, "section")?);
    }
    Ok((header, sections))
}

/// Serialises a decoded image.
pub fn write_image(image: &DecodedImage) -> Bytes {
    let r = &image.raster;
    let header = Header {
        kind: "image".into(),
        width: r.width,
        height: r.height,
        channels: r.channels,
        format: Some(image.format),
    };
    let icc = image.icc.as_deref().unwrap_or_default();
    let exif = image.exif.as_deref().unwrap_or_default();
    write(&header, &[&r.data, icc, exif])
}

/// Deserialises a decoded image.
pub fn read_image(bytes: &[u8]) -> Result<DecodedImage, StageError> {
    let (h, sections) = read(bytes)?;
    let [pixels, icc, exif] = sections[..] else {
        return Err(corrupt("expected 3 sections in an image"));
    };
    if h.kind != "image" {
        return Err(corrupt(&format!("expected an image, got a {}", h.kind)));
    }
    let raster = Raster::from_data(h.width, h.height, h.channels, pixels.to_vec())
        .ok_or_else(|| corrupt("pixel count does not match the size"))?;
    let nonempty = |s: &[u8]| (!s.is_empty()).then(|| s.to_vec());
    Ok(DecodedImage {
        raster,
        format: h.format.ok_or_else(|| corrupt("image without a format"))?,
        icc: nonempty(icc),
        exif: nonempty(exif),
    })
}

/// Serialises a mask.
pub fn write_mask(mask: &Mask) -> Bytes {
    let header = Header {
        kind: "mask".into(),
        width: mask.width,
        height: mask.height,
        channels: 1,
        format: None,
    };
    write(&header, &[&mask.data])
}

/// Deserialises a mask.
pub fn read_mask(bytes: &[u8]) -> Result<Mask, StageError> {
    let (h, sections) = read(bytes)?;
    let [pixels] = sections[..] else {
        return Err(corrupt("expected 1 section in a mask"));
    };
    if h.kind != "mask" || pixels.len() != h.width as usize * h.height as usize {
        return Err(corrupt("mask size does not match its pixels"));
    }
    Ok(Mask {
        width: h.width,
        height: h.height,
        data: pixels.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_round_trip() {
        let image = DecodedImage {
            raster: Raster::filled(3, 2, 4, 7),
            format: SourceFormat::Webp,
            icc: Some(vec![1, 2, 3]),
            exif: None,
        };
        assert_eq!(read_image(&write_image(&image)).expect("read"), image);
    }

    #[test]
    fn mask_round_trip_and_damage() {
        let mut mask = Mask::new(4, 4);
        mask.set(1, 2, true);
        let bytes = write_mask(&mask);
        assert_eq!(read_mask(&bytes).expect("read"), mask);
        assert!(read_mask(&bytes[..bytes.len() - 1]).is_err());
        assert!(read_image(&bytes).is_err());
    }
}
