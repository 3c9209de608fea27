//! Hostile inputs, built byte by byte, for unmark's own tests and for anyone fuzzing it.

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A well-formed PNG of a few dozen bytes whose header claims `width` x `height` RGB pixels:
/// the classic decompression bomb, refused by `decode` from its header.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut header = width.to_be_bytes().to_vec();
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    let empty_zlib = b"\x78\x9c\x03\x00\x00\x00\x00\x01".to_vec();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, body) in [
        (b"IHDR", header),
        (b"IDAT", empty_zlib),
        (b"IEND", Vec::new()),
    ] {
        let chunk = [&kind[..], &body].concat();
        png.extend((body.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}
