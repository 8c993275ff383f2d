//! EXIF orientation from a JPEG's APP1 segment, pure and bounds-checked: the one tag the
//! pipeline applies before stripping all metadata (D10).

/// The orientation tag (1–8) of a JPEG, or 1 when absent or unreadable.
pub fn jpeg_orientation(jpeg: &[u8]) -> u8 {
    let mut i = 2; // after SOI
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan: metadata is over
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let seg = jpeg.get(i + 4..i + 2 + len).unwrap_or(&[]);
        if marker == 0xE1 && seg.starts_with(b"Exif\0\0") {
            return tiff_orientation(&seg[6..]).unwrap_or(1);
        }
        i += 2 + len.max(2);
    }
    1
}

/// Orientation from a TIFF header (as found in EXIF blocks and PNG/WebP `eXIf` chunks).
pub fn tiff_orientation(tiff: &[u8]) -> Option<u8> {
    let le = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => true,
        [b'M', b'M', 0, 42] => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b = tiff.get(o..o + 2)?;
        Some(if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let b = tiff.get(4..8)?;
    let ifd = if le {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    } else {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    } as usize;
    let count = u16_at(ifd)? as usize;
    for n in 0..count.min(256) {
        let entry = ifd.checked_add(2 + n * 12)?;
        if u16_at(entry)? == 0x0112 {
            let v = u16_at(entry + 8)?;
            return (1..=8).contains(&v).then_some(v as u8);
        }
    }
    None
}

/// An APP1 EXIF segment carrying only an orientation tag (for tests and tools).
pub fn app1_with_orientation(orientation: u8) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, orientation, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    let mut seg = vec![0xFF, 0xE1];
    let len = (2 + 6 + tiff.len()) as u16;
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&tiff);
    seg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_with(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        for s in segments {
            j.extend_from_slice(s);
        }
        j.extend_from_slice(&[0xFF, 0xDA, 0, 2, 0xFF, 0xD9]);
        j
    }

    #[test]
    fn orientation_table() {
        let app0 = vec![0xFF, 0xE0, 0, 4, 0, 0];
        for o in 1..=8 {
            assert_eq!(
                jpeg_orientation(&jpeg_with(&[app0.clone(), app1_with_orientation(o)])),
                o
            );
        }
        assert_eq!(jpeg_orientation(&jpeg_with(std::slice::from_ref(&app0))), 1);
        assert_eq!(jpeg_orientation(&jpeg_with(&[app1_with_orientation(9)])), 1);
        // Truncated and hostile inputs never panic.
        let full = jpeg_with(&[app1_with_orientation(6)]);
        for cut in 0..full.len() {
            let _ = jpeg_orientation(&full[..cut]);
        }
        let mut lying = app1_with_orientation(6);
        lying[2] = 0xFF; // length past the end
        assert_eq!(jpeg_orientation(&jpeg_with(&[lying])), 1);
        assert_eq!(tiff_orientation(b"II\x2a\0\xff\xff\xff\xff"), None);
    }
}
