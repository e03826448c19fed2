//! Camera buffers into `source::convert` (and `RgbFrame`): any format, size, stride and bytes.
//!
//! Input: byte 0 picks the format (`% 7`) and the mode (`(b >> 4) % 4`):
//! * 0: width, height and bytes_per_line as three little-endian `u32`s, then the buffer: huge
//!   and overflowing headers;
//! * 1: width `b1 % 64`, height `b2 % 64`, bytes_per_line `b3` (0: tight), then the buffer: small
//!   frames whose buffers are a little too short, too long or oddly strided;
//! * 2: a real JPEG of `(b1 % 48 + 1) x (b2 % 48 + 1)` at quality `b3`, made from the rest, then
//!   damaged as the rest says (cut, bytes overwritten, Huffman tables stripped) and decoded as
//!   MJPEG at its own or another size;
//! * 3: `RgbFrame::new` / `RgbView::new` with a header and a buffer, and `RgbFrame::crop`.
//!
//! Properties beyond "no panic": a converted frame has the layout's size and `w * h * 3` bytes;
//! an uncompressed layout converts if and only if `required_bytes` says it can and the buffer is
//! at least that long.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocellus::RgbFrame;
use ocellus::source::convert::{Layout, PixelFormat, required_bytes, to_rgb};

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, slot) in b.iter_mut().enumerate() {
        *slot = data.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(b)
}

fn check(layout: &Layout, data: &[u8]) {
    let result = to_rgb(layout, data);
    if let Ok(frame) = &result {
        assert_eq!(
            (frame.width(), frame.height()),
            (layout.width, layout.height)
        );
        assert_eq!(
            frame.data().len() as u64,
            u64::from(layout.width) * u64::from(layout.height) * 3
        );
    }
    if layout.format == PixelFormat::Mjpeg {
        assert_eq!(required_bytes(layout), None);
        return;
    }
    match required_bytes(layout) {
        Some(needed) if data.len() >= needed => {
            assert!(
                result.is_ok(),
                "{layout:?} with {} bytes: {result:?}",
                data.len()
            );
        }
        _ => assert!(
            result.is_err(),
            "{layout:?} with {} bytes converted",
            data.len()
        ),
    }
}

/// The JPEG without its DHT segments (when it parses as a sequence of segments up to the scan).
fn strip_dht(jpeg: &[u8]) -> Option<Vec<u8>> {
    let mut out = jpeg.get(..2)?.to_vec();
    let mut at = 2usize;
    loop {
        let marker = *jpeg.get(at + 1)?;
        if marker == 0xDA {
            out.extend_from_slice(jpeg.get(at..)?);
            return Some(out);
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        let segment = jpeg.get(at..at + 2 + len)?;
        if marker != 0xC4 {
            out.extend_from_slice(segment);
        }
        at += 2 + len;
    }
}

fn jpeg_mode(format_byte: u8, data: &[u8]) {
    let w = u32::from(data.first().copied().unwrap_or(0) % 48) + 1;
    let h = u32::from(data.get(1).copied().unwrap_or(0) % 48) + 1;
    let quality = data.get(2).copied().unwrap_or(0) % 100 + 1;
    let ops = data.get(3).copied().unwrap_or(0);
    let rest = data.get(4..).unwrap_or_default();
    let grey = ops & 1 != 0;
    let channels = if grey { 1 } else { 3 };
    let n = (w * h) as usize * channels;
    let pixels: Vec<u8> = if rest.is_empty() {
        vec![128; n]
    } else {
        rest.iter().copied().cycle().take(n).collect()
    };
    let mut jpeg = Vec::new();
    let colour = if grey {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    if image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode(&pixels, w, h, colour)
        .is_err()
    {
        return;
    }
    let intact = jpeg.clone();
    if ops & 2 != 0
        && let Some(stripped) = strip_dht(&jpeg)
    {
        jpeg = stripped;
    }
    // Overwrite bytes: pairs (position, value) from the input.
    if ops & 4 != 0 {
        for pair in rest.chunks_exact(3).take(8) {
            let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % jpeg.len().max(1);
            if let Some(b) = jpeg.get_mut(at) {
                *b = pair[2];
            }
        }
    }
    if ops & 8 != 0 {
        let cut = usize::from(rest.first().copied().unwrap_or(0)) * jpeg.len() / 256;
        jpeg.truncate(cut);
    }
    // Decode at its own size, or at a size a byte away.
    let (lw, lh) = if ops & 16 != 0 {
        (
            w.wrapping_add(u32::from(format_byte)),
            h ^ u32::from(ops >> 5),
        )
    } else {
        (w, h)
    };
    let layout = Layout {
        format: PixelFormat::Mjpeg,
        width: lw,
        height: lh,
        bytes_per_line: 0,
    };
    check(&layout, &jpeg);
    if ops & 0x1E == 0 {
        // Neither stripped, damaged, cut nor resized: it must decode.
        assert!(to_rgb(&layout, &intact).is_ok(), "an intact {w}x{h} JPEG");
    }
}

fn frame_mode(data: &[u8]) {
    let (w, h) = (u32_at(data, 0), u32_at(data, 4));
    let bytes = data.get(8..).unwrap_or_default();
    // Small sizes too, so that some frames are valid.
    for (w, h) in [(w, h), (w % 97, h % 61)] {
        let rgb = RgbFrame::new(w, h, bytes.to_vec());
        let view = ocellus::RgbView::new(w, h, bytes);
        assert_eq!(rgb.is_ok(), view.is_ok());
        if let Ok(frame) = rgb {
            assert_eq!(frame.data().len() as u64, u64::from(w) * u64::from(h) * 3);
            let f = |i: usize| {
                let at = i * 4;
                f32::from_le_bytes([
                    bytes.get(at).copied().unwrap_or(0),
                    bytes.get(at + 1).copied().unwrap_or(0),
                    bytes.get(at + 2).copied().unwrap_or(0),
                    bytes.get(at + 3).copied().unwrap_or(0),
                ])
            };
            if let Ok(crop) = frame.crop([f(0), f(1), f(2), f(3)]) {
                assert!(crop.width() <= w && crop.height() <= h);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let format = PixelFormat::ALL[usize::from(head) % PixelFormat::ALL.len()];
    match (head >> 4) % 4 {
        0 => {
            let layout = Layout {
                format,
                width: u32_at(rest, 0),
                height: u32_at(rest, 4),
                bytes_per_line: u32_at(rest, 8),
            };
            check(&layout, rest.get(12..).unwrap_or_default());
        }
        1 => {
            let layout = Layout {
                format,
                width: u32::from(rest.first().copied().unwrap_or(0) % 64),
                height: u32::from(rest.get(1).copied().unwrap_or(0) % 64),
                bytes_per_line: u32::from(rest.get(2).copied().unwrap_or(0)),
            };
            check(&layout, rest.get(3..).unwrap_or_default());
        }
        2 => jpeg_mode(head, rest),
        _ => frame_mode(rest),
    }
});
