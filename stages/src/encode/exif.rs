//! The one EXIF edit unmark makes: orientation back to 1, since pixels are already rotated.

/// Sets the orientation tag (0x0112) of IFD0 to 1 ("top-left") in place. `exif` is a TIFF
/// structure, optionally behind the `Exif\0\0` marker. Malformed data is left as it is.
pub fn reset_orientation(exif: &mut [u8]) {
    let start = if exif.starts_with(b"Exif\0\0") { 6 } else { 0 };
    let tiff = &mut exif[start..];
    let big = match tiff.get(..2) {
        Some(b"MM") => true,
        Some(b"II") => false,
        _ => return,
    };
    let u16_at = |b: &[u8], at: usize| -> Option<u16> {
        let s = b.get(at..at + 2)?;
        Some(if big {
            u16::from_be_bytes([s[0], s[1]])
        } else {
            u16::from_le_bytes([s[0], s[1]])
        })
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let s = b.get(at..at + 4)?;
        let a = [s[0], s[1], s[2], s[3]];
        Some(if big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    };
    let Some(ifd) = u32_at(tiff, 4).map(|v| v as usize) else {
        return;
    };
    let Some(count) = u16_at(tiff, ifd) else {
        return;
    };
    for n in 0..count as usize {
        let entry = ifd + 2 + n * 12;
        if u16_at(tiff, entry) == Some(0x0112) && u16_at(tiff, entry + 2) == Some(3) {
            let one = if big { [0, 1] } else { [1, 0] };
            if let Some(slot) = tiff.get_mut(entry + 8..entry + 10) {
                slot.copy_from_slice(&one);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_byte_orders() {
        let mut be = [
            &b"MM\x00\x2a\x00\x00\x00\x08"[..],
            &[0, 1],
            &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0],
        ]
        .concat();
        reset_orientation(&mut be);
        assert_eq!(be[8 + 2 + 8..8 + 2 + 10], [0, 1]);
        let mut le = [
            &b"Exif\0\0II\x2a\x00\x08\x00\x00\x00"[..],
            &[1, 0],
            &[0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0],
        ]
        .concat();
        reset_orientation(&mut le);
        assert_eq!(le[6 + 8 + 2 + 8..6 + 8 + 2 + 10], [1, 0]);
        let mut junk = b"nonsense".to_vec();
        reset_orientation(&mut junk);
        assert_eq!(junk, b"nonsense");
    }
}
