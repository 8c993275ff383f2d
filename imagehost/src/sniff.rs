//! Content types from magic bytes (the upstream or stored Content-Type is never trusted).

/// Image types accepted for uploads and proxying (D7, D11).
pub const ACCEPTED_IMAGES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp", "image/avif"];

/// Bytes needed to recognise any type below.
pub const SNIFF_LEN: usize = 64;

/// The MIME type of a file starting with `head`, or `None` when unrecognised.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let starts = |sig: &[u8]| head.starts_with(sig);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        iso_bmff(head)
    } else if starts(b"BM") && head.len() >= 14 {
        Some("image/bmp")
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some("image/tiff")
    } else if starts(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

/// ISO-BMFF files: AVIF images, or MP4 video. The major and compatible brands tell them apart.
fn iso_bmff(head: &[u8]) -> Option<&'static str> {
    let box_len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = box_len.clamp(12, head.len());
    let brands: Vec<&[u8]> = std::iter::once(&head[8..12])
        .chain(head[16.min(end)..end].chunks_exact(4))
        .collect();
    if brands.iter().any(|b| *b == b"avif" || *b == b"avis") {
        Some("image/avif")
    } else if brands
        .iter()
        .any(|b| matches!(*b, b"isom" | b"mp41" | b"mp42" | b"iso2" | b"avc1" | b"M4V "))
    {
        Some("video/mp4")
    } else {
        None
    }
}

/// The type to serve a stored object with: sniffed, else `application/octet-stream` (§1.9).
pub fn serve_type(head: &[u8]) -> &'static str {
    sniff(head).unwrap_or("application/octet-stream")
}

/// The sniffed type, if it is one of [`ACCEPTED_IMAGES`].
pub fn accepted_image(head: &[u8]) -> Option<&'static str> {
    sniff(head).filter(|t| ACCEPTED_IMAGES.contains(t))
}

pub fn is_accepted_image(head: &[u8]) -> bool {
    accepted_image(head).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_table() {
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf";
        let avif_compat = b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf";
        let mp4 = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2";
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", Some("image/jpeg")),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("image/png")),
            (b"GIF89a\x01\0\x01\0", Some("image/gif")),
            (b"GIF87a\x01\0\x01\0", Some("image/gif")),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Some("image/webp")),
            (avif, Some("image/avif")),
            (avif_compat, Some("image/avif")),
            (mp4, Some("video/mp4")),
            (b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0", Some("image/bmp")),
            (b"%PDF-1.7", Some("application/pdf")),
            (b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", None),
            (b"hello world", None),
            (b"", None),
            (b"RIFF\x24\0\0\0WAVE", None),
        ];
        for (head, want) in cases {
            assert_eq!(sniff(head), *want, "{:?}", String::from_utf8_lossy(head));
        }
        assert!(
            is_accepted_image(avif)
                && !is_accepted_image(mp4)
                && !is_accepted_image(b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0")
        );
        assert_eq!(serve_type(b"text"), "application/octet-stream");
    }
}
