use super::*;

/// The 75% colour bars (EBU 100/0/75/0), left to right: the published BT.601 limited-range
/// Y'CbCr of each bar, and its R'G'B' (191 = 0.75 * 255 per lit channel).
const BARS_75: [([u8; 3], [u8; 3]); 8] = [
    ([180, 128, 128], [191, 191, 191]), // white
    ([162, 44, 142], [191, 191, 0]),    // yellow
    ([131, 156, 44], [0, 191, 191]),    // cyan
    ([112, 72, 58], [0, 191, 0]),       // green
    ([84, 184, 198], [191, 0, 191]),    // magenta
    ([65, 100, 212], [191, 0, 0]),      // red
    ([35, 212, 114], [0, 0, 191]),      // blue
    ([16, 128, 128], [0, 0, 0]),        // black
];

/// Bytes that stand for driver padding.
const GARBAGE: u8 = 0xAB;

fn layout(format: PixelFormat, width: u32, height: u32, bytes_per_line: u32) -> Layout {
    Layout {
        format,
        width,
        height,
        bytes_per_line,
    }
}

/// A YUYV (or, with `uyvy`, UYVY) frame whose pixel (x, y) has the Y'CbCr `ycc(x, y)`; a
/// pair's chroma is that of its left pixel. Each row is followed by `pad` garbage bytes.
fn packed_frame(
    uyvy: bool,
    width: usize,
    height: usize,
    pad: usize,
    ycc: impl Fn(usize, usize) -> [u8; 3],
) -> Vec<u8> {
    let mut data = Vec::new();
    for y in 0..height {
        for x in (0..width).step_by(2) {
            let [y0, cb, cr] = ycc(x, y);
            let [y1, _, _] = ycc(x + 1, y);
            if uyvy {
                data.extend_from_slice(&[cb, y0, cr, y1]);
            } else {
                data.extend_from_slice(&[y0, cb, y1, cr]);
            }
        }
        data.extend(std::iter::repeat_n(GARBAGE, pad));
    }
    data
}

/// An NV12 frame like [`packed_frame`]: chroma from the top-left pixel of each 2x2 block;
/// both planes' rows padded by `pad` garbage bytes.
fn nv12_frame(
    width: usize,
    height: usize,
    pad: usize,
    ycc: impl Fn(usize, usize) -> [u8; 3],
) -> Vec<u8> {
    let mut data = Vec::new();
    for y in 0..height {
        data.extend((0..width).map(|x| ycc(x, y)[0]));
        data.extend(std::iter::repeat_n(GARBAGE, pad));
    }
    for y in (0..height).step_by(2) {
        for x in (0..width).step_by(2) {
            let [_, cb, cr] = ycc(x, y);
            data.extend_from_slice(&[cb, cr]);
        }
        data.extend(std::iter::repeat_n(GARBAGE, pad));
    }
    data
}

/// The Y'CbCr of pixel x of a frame of bars two pixels wide.
fn bars_ycc(x: usize, _y: usize) -> [u8; 3] {
    BARS_75[(x / 2) % 8].0
}

fn pixel_at(frame: &RgbFrame, x: usize, y: usize) -> [u8; 3] {
    let view = frame.as_view();
    let at = (y * view.width() as usize + x) * 3;
    view.data()[at..at + 3].try_into().unwrap()
}

fn assert_close(got: [u8; 3], want: [u8; 3], tolerance: u8, what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.abs_diff(w) <= tolerance,
            "{what}: got {got:?}, want {want:?} (within {tolerance})"
        );
    }
}

/// Every pixel of a 16 x `height` bar frame is its bar's RGB within 2.
fn assert_bars(frame: &RgbFrame, height: usize, what: &str) {
    for y in 0..height {
        for x in 0..16 {
            let want = BARS_75[x / 2].1;
            assert_close(
                pixel_at(frame, x, y),
                want,
                2,
                &format!("{what} ({x}, {y})"),
            );
        }
    }
}

fn frame_error_message(result: Result<RgbFrame>) -> String {
    match result {
        Err(Error::Frame(message)) => message,
        Err(other) => panic!("expected Error::Frame, got {other:?}"),
        Ok(frame) => panic!(
            "expected an error, got a {:?} frame",
            frame.as_view().width()
        ),
    }
}

#[test]
fn fourcc_and_name_round_trip() {
    for format in PixelFormat::ALL {
        assert_eq!(PixelFormat::from_fourcc(format.fourcc()), Some(format));
        assert_eq!(PixelFormat::from_name(format.name()), Some(format));
        assert_eq!(format.to_string(), format.name());
    }
    assert_eq!(PixelFormat::from_fourcc(*b"JPEG"), Some(PixelFormat::Mjpeg));
    assert_eq!(PixelFormat::from_fourcc(*b"MJPG"), Some(PixelFormat::Mjpeg));
    assert_eq!(PixelFormat::from_fourcc(*b"H264"), None);
    assert_eq!(PixelFormat::from_name("YUYV"), None);
}

#[test]
fn required_bytes_of_layouts() {
    let yuyv = layout(PixelFormat::Yuyv, 640, 480, 0);
    assert_eq!(required_bytes(&yuyv), Some(614_400));
    assert_eq!(
        required_bytes(&layout(PixelFormat::Yuyv, 640, 480, 1280)),
        Some(614_400)
    );
    // Padded rows: the last row's padding is not needed.
    assert_eq!(
        required_bytes(&layout(PixelFormat::Yuyv, 640, 480, 1536)),
        Some(1536 * 479 + 1280)
    );
    assert_eq!(required_bytes(&layout(PixelFormat::Uyvy, 2, 1, 0)), Some(4));
    assert_eq!(
        required_bytes(&layout(PixelFormat::Nv12, 640, 480, 0)),
        Some(460_800)
    );
    assert_eq!(
        required_bytes(&layout(PixelFormat::Nv12, 640, 480, 704)),
        Some(704 * 480 + 704 * 239 + 640)
    );
    assert_eq!(
        required_bytes(&layout(PixelFormat::Rgb24, 3, 2, 0)),
        Some(18)
    );
    assert_eq!(
        required_bytes(&layout(PixelFormat::Bgr24, 3, 2, 12)),
        Some(21)
    );
    assert_eq!(required_bytes(&layout(PixelFormat::Grey, 3, 2, 0)), Some(6));

    assert_eq!(
        required_bytes(&layout(PixelFormat::Mjpeg, 640, 480, 0)),
        None
    );
    assert_eq!(
        required_bytes(&layout(PixelFormat::Yuyv, 641, 480, 0)),
        None
    );
    assert_eq!(
        required_bytes(&layout(PixelFormat::Nv12, 640, 481, 0)),
        None
    );
    assert_eq!(
        required_bytes(&layout(PixelFormat::Yuyv, 640, 480, 1279)),
        None
    );
    assert_eq!(required_bytes(&layout(PixelFormat::Grey, 0, 480, 0)), None);
    assert_eq!(
        required_bytes(&layout(PixelFormat::Grey, 16_385, 1, 0)),
        None
    );
    assert_eq!(
        required_bytes(&layout(PixelFormat::Rgb24, 16_384, 4_096, u32::MAX)),
        u32::MAX
            .try_into()
            .ok()
            .and_then(|s: usize| s.checked_mul(4_095)?.checked_add(16_384 * 3))
    );
    // More pixels than MAX_FRAME_PIXELS, though each side is allowed.
    assert_eq!(
        required_bytes(&layout(PixelFormat::Grey, 16_384, 16_384, 0)),
        None
    );
}

#[test]
fn yuyv_colour_bars() {
    let data = packed_frame(false, 16, 4, 0, bars_ycc);
    let frame = to_rgb(&layout(PixelFormat::Yuyv, 16, 4, 0), &data).unwrap();
    assert_bars(&frame, 4, "yuyv");
}

#[test]
fn uyvy_colour_bars() {
    let data = packed_frame(true, 16, 4, 0, bars_ycc);
    let frame = to_rgb(&layout(PixelFormat::Uyvy, 16, 4, 0), &data).unwrap();
    assert_bars(&frame, 4, "uyvy");
}

#[test]
fn nv12_colour_bars() {
    let data = nv12_frame(16, 4, 0, bars_ycc);
    assert_eq!(data.len(), 16 * 4 + 16 * 2);
    let frame = to_rgb(&layout(PixelFormat::Nv12, 16, 4, 0), &data).unwrap();
    assert_bars(&frame, 4, "nv12");
}

#[test]
fn nv12_colour_bars_vary_by_row() {
    // Each pair of rows its own bar, so a mix-up of chroma rows shows.
    let ycc = |x: usize, y: usize| BARS_75[(x / 2 + y / 2) % 8].0;
    let frame = to_rgb(
        &layout(PixelFormat::Nv12, 16, 8, 0),
        &nv12_frame(16, 8, 0, ycc),
    )
    .unwrap();
    for y in 0..8 {
        for x in 0..16 {
            let want = BARS_75[(x / 2 + y / 2) % 8].1;
            assert_close(pixel_at(&frame, x, y), want, 2, &format!("({x}, {y})"));
        }
    }
}

#[test]
fn full_white_black_and_clamping() {
    // (Y', expected grey level): 100% white and black, then superwhite and superblack.
    let cases = [(235, 255), (16, 0), (255, 255), (0, 0), (254, 255), (1, 0)];
    for (luma, want) in cases {
        let ycc = |_: usize, _: usize| [luma, 128, 128];
        let frames = [
            (PixelFormat::Yuyv, packed_frame(false, 4, 2, 0, ycc)),
            (PixelFormat::Uyvy, packed_frame(true, 4, 2, 0, ycc)),
            (PixelFormat::Nv12, nv12_frame(4, 2, 0, ycc)),
        ];
        for (format, data) in frames {
            let frame = to_rgb(&layout(format, 4, 2, 0), &data).unwrap();
            let expected: Vec<u8> = vec![want; 4 * 2 * 3];
            assert_eq!(frame.as_view().data(), expected, "{format} Y'={luma}");
        }
    }
    // Chroma far out of range saturates instead of wrapping; the reference says how far.
    let extremes = [[235, 255, 255], [16, 0, 0], [128, 255, 0], [128, 0, 255]];
    for [y, cb, cr] in extremes {
        let data = [y, cb, y, cr];
        let frame = to_rgb(&layout(PixelFormat::Yuyv, 2, 1, 0), &data).unwrap();
        let want = reference_rgb(y, cb, cr);
        assert_close(pixel_at(&frame, 0, 0), want, 1, &format!("{y},{cb},{cr}"));
    }
    assert_eq!(reference_rgb(235, 255, 255), [255, 102, 255]);
}

/// BT.601 limited range to R'G'B' in floating point, derived here from the standard's forward
/// equations (Y' = Kr R + Kg G + Kb B, Cb = (B - Y') / (2 (1 - Kb)), Cr = (R - Y') / (2 (1 - Kr)),
/// with Y' coded as 16 + 219 Y' and Cb, Cr as 128 + 224 Cb, Cr), not from the code's constants.
fn reference_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (kr, kb) = (0.299, 0.114);
    let kg = 1.0 - kr - kb;
    let luma = (f64::from(y) - 16.0) / 219.0;
    let pb = (f64::from(cb) - 128.0) / 224.0;
    let pr = (f64::from(cr) - 128.0) / 224.0;
    let r = luma + 2.0 * (1.0 - kr) * pr;
    let b = luma + 2.0 * (1.0 - kb) * pb;
    let g = (luma - kr * r - kb * b) / kg;
    [r, g, b].map(|c| (c * 255.0).round().clamp(0.0, 255.0) as u8)
}

#[test]
fn matches_the_floating_point_reference() {
    // Every Y' with a spread of Cb, Cr, in all three YUV layouts: within 1 of the reference.
    let chroma: Vec<u8> = (0..=255).step_by(15).collect();
    for &cb in &chroma {
        for &cr in &chroma {
            let ycc = |x: usize, _: usize| [(x / 2) as u8, cb, cr];
            let ycc_nv12 = |x: usize, _: usize| [x as u8, cb, cr];
            let yuyv = packed_frame(false, 512, 1, 0, ycc);
            let uyvy = packed_frame(true, 512, 1, 0, ycc);
            let nv12 = nv12_frame(256, 2, 0, ycc_nv12);
            let yuyv = to_rgb(&layout(PixelFormat::Yuyv, 512, 1, 0), &yuyv).unwrap();
            let uyvy = to_rgb(&layout(PixelFormat::Uyvy, 512, 1, 0), &uyvy).unwrap();
            let nv12 = to_rgb(&layout(PixelFormat::Nv12, 256, 2, 0), &nv12).unwrap();
            for y in 0..=255u8 {
                let want = reference_rgb(y, cb, cr);
                let what = format!("{y},{cb},{cr}");
                let x = usize::from(y);
                assert_close(pixel_at(&yuyv, 2 * x, 0), want, 1, &what);
                assert_close(pixel_at(&uyvy, 2 * x + 1, 0), want, 1, &what);
                assert_close(pixel_at(&nv12, x, 1), want, 1, &what);
            }
        }
    }
}

#[test]
fn neutral_greys_are_proportional() {
    // With Cb = Cr = 128 every channel is (Y' - 16) * 255 / 219, rounded.
    let data: Vec<u8> = (16..=235u8).flat_map(|y| [y, 128, y, 128]).collect();
    let width = u32::try_from(data.len() / 2).unwrap();
    let frame = to_rgb(&layout(PixelFormat::Yuyv, width, 1, 0), &data).unwrap();
    for (i, y) in (16..=235u8).enumerate() {
        let want = ((f64::from(y) - 16.0) * 255.0 / 219.0).round() as u8;
        assert_eq!(pixel_at(&frame, 2 * i, 0), [want; 3], "Y'={y}");
        assert_eq!(pixel_at(&frame, 2 * i + 1, 0), [want; 3], "Y'={y}");
    }
}

#[test]
fn nv12_stride_padding_is_ignored() {
    let tight = to_rgb(
        &layout(PixelFormat::Nv12, 16, 4, 0),
        &nv12_frame(16, 4, 0, bars_ycc),
    )
    .unwrap();
    let padded_data = nv12_frame(16, 4, 8, bars_ycc);
    let padded = to_rgb(&layout(PixelFormat::Nv12, 16, 4, 24), &padded_data).unwrap();
    assert_eq!(padded, tight);
    // Without the padding after the last chroma row, too.
    let cut = &padded_data[..padded_data.len() - 8];
    assert_eq!(
        cut.len(),
        required_bytes(&layout(PixelFormat::Nv12, 16, 4, 24)).unwrap()
    );
    assert_eq!(
        to_rgb(&layout(PixelFormat::Nv12, 16, 4, 24), cut).unwrap(),
        tight
    );
}

#[test]
fn yuyv_and_uyvy_stride_padding_is_ignored() {
    for uyvy in [false, true] {
        let format = if uyvy {
            PixelFormat::Uyvy
        } else {
            PixelFormat::Yuyv
        };
        let tight = to_rgb(
            &layout(format, 16, 4, 0),
            &packed_frame(uyvy, 16, 4, 0, bars_ycc),
        )
        .unwrap();
        let padded = packed_frame(uyvy, 16, 4, 12, bars_ycc);
        let converted = to_rgb(&layout(format, 16, 4, 44), &padded).unwrap();
        assert_eq!(converted, tight, "{format}");
        assert_bars(&converted, 4, &format!("{format} padded"));
    }
}

#[test]
fn longer_buffers_are_fine() {
    let mut data = packed_frame(false, 16, 2, 0, bars_ycc);
    let tight = to_rgb(&layout(PixelFormat::Yuyv, 16, 2, 0), &data).unwrap();
    data.extend_from_slice(&[GARBAGE; 100]);
    assert_eq!(
        to_rgb(&layout(PixelFormat::Yuyv, 16, 2, 0), &data).unwrap(),
        tight
    );
}

#[test]
fn rgb24_is_copied() {
    let data: Vec<u8> = (0..2 * 3 * 3).collect();
    let frame = to_rgb(&layout(PixelFormat::Rgb24, 3, 2, 0), &data).unwrap();
    assert_eq!(frame.as_view().data(), data);
    // 3 pixels of 3 bytes and 2 bytes of padding per row.
    let padded = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, GARBAGE, GARBAGE, 11, 12, 13, 14, 15, 16, 17, 18, 19,
    ];
    let frame = to_rgb(&layout(PixelFormat::Rgb24, 3, 2, 11), &padded).unwrap();
    assert_eq!(
        frame.as_view().data(),
        [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19
        ]
    );
}

#[test]
fn bgr24_swaps_red_and_blue() {
    // Pixels: pure blue, pure green, pure red, then (B 1, G 2, R 3), in B G R order.
    let data = [255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3];
    let frame = to_rgb(&layout(PixelFormat::Bgr24, 2, 2, 0), &data).unwrap();
    assert_eq!(
        frame.as_view().data(),
        [0, 0, 255, 0, 255, 0, 255, 0, 0, 3, 2, 1]
    );
    let padded = [255, 0, 0, 0, 255, 0, GARBAGE, 0, 0, 255, 1, 2, 3];
    let frame = to_rgb(&layout(PixelFormat::Bgr24, 2, 2, 7), &padded).unwrap();
    assert_eq!(
        frame.as_view().data(),
        [0, 0, 255, 0, 255, 0, 255, 0, 0, 3, 2, 1]
    );
}

#[test]
fn grey_is_full_range() {
    let data = [0, 16, 128, 235, 255, 7];
    let frame = to_rgb(&layout(PixelFormat::Grey, 3, 2, 0), &data).unwrap();
    let want: Vec<u8> = data.iter().flat_map(|&y| [y, y, y]).collect();
    assert_eq!(frame.as_view().data(), want);
    let padded = [0, 16, 128, GARBAGE, 235, 255, 7];
    let frame = to_rgb(&layout(PixelFormat::Grey, 3, 2, 4), &padded).unwrap();
    assert_eq!(frame.as_view().data(), want);
}

#[test]
fn short_buffers_are_errors() {
    let message = frame_error_message(to_rgb(
        &layout(PixelFormat::Yuyv, 640, 480, 0),
        &vec![0; 614_399],
    ));
    assert_eq!(message, "yuyv 640x480: 614399 bytes, need 614400");
    for format in PixelFormat::ALL {
        if format == PixelFormat::Mjpeg {
            continue;
        }
        for bytes_per_line in [0, 64] {
            let layout = layout(format, 16, 4, bytes_per_line);
            let needed = required_bytes(&layout).unwrap();
            for len in [0, 1, needed / 2, needed - 1] {
                let message = frame_error_message(to_rgb(&layout, &vec![0; len]));
                assert!(
                    message.starts_with(&format!("{format} 16x4: {len} bytes, need {needed}")),
                    "{message}"
                );
            }
            assert!(to_rgb(&layout, &vec![0; needed]).is_ok(), "{format}");
        }
    }
}

#[test]
fn impossible_layouts_are_errors() {
    let big = vec![0u8; 1 << 16];
    let cases = [
        (
            layout(PixelFormat::Yuyv, 15, 4, 0),
            "yuyv 15x4: width must be even",
        ),
        (
            layout(PixelFormat::Uyvy, 1, 1, 0),
            "uyvy 1x1: width must be even",
        ),
        (
            layout(PixelFormat::Nv12, 15, 4, 0),
            "nv12 15x4: width and height must be even",
        ),
        (
            layout(PixelFormat::Nv12, 16, 3, 0),
            "nv12 16x3: width and height must be even",
        ),
        (
            layout(PixelFormat::Yuyv, 16, 4, 31),
            "yuyv 16x4: bytes_per_line 31 is less than the 32 bytes a row needs",
        ),
        (
            layout(PixelFormat::Rgb24, 16, 4, 47),
            "rgb24 16x4: bytes_per_line 47 is less than the 48 bytes a row needs",
        ),
        (
            layout(PixelFormat::Nv12, 16, 4, 15),
            "nv12 16x4: bytes_per_line 15 is less than the 16 bytes a row needs",
        ),
        (
            layout(PixelFormat::Grey, 0, 4, 0),
            "grey 0x4: size is outside",
        ),
        (
            layout(PixelFormat::Bgr24, 4, 0, 0),
            "bgr24 4x0: size is outside",
        ),
        (
            layout(PixelFormat::Grey, 20_000, 1, 0),
            "grey 20000x1: size is outside",
        ),
    ];
    for (layout, start) in cases {
        let message = frame_error_message(to_rgb(&layout, &big));
        assert!(message.starts_with(start), "{message}");
        assert_eq!(required_bytes(&layout), None, "{message}");
    }
}

/// A `width` x `height` image of the eight 100% colour bars, left to right.
fn full_bars(width: u32, height: u32) -> (Vec<u8>, [[u8; 3]; 8]) {
    let colours = [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ];
    let bar = width / 8;
    let data = (0..height)
        .flat_map(|_| (0..width).flat_map(move |x| colours[(x / bar) as usize]))
        .collect();
    (data, colours)
}

fn encode_jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    jpeg
}

/// The JPEG without its DHT segments, the DHT segments' payloads (after the length) in order,
/// and the offset of the start-of-scan marker in the stripped JPEG.
fn strip_dht(jpeg: &[u8]) -> (Vec<u8>, Vec<u8>, usize) {
    assert_eq!(jpeg[..2], [0xFF, 0xD8]);
    let mut stripped = jpeg[..2].to_vec();
    let mut tables = Vec::new();
    let mut at = 2;
    loop {
        assert_eq!(jpeg[at], 0xFF, "segment at {at}");
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            let sos = stripped.len();
            stripped.extend_from_slice(&jpeg[at..]);
            return (stripped, tables, sos);
        }
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let segment = &jpeg[at..at + 2 + length];
        if marker == 0xC4 {
            tables.extend_from_slice(&segment[4..]);
        } else {
            stripped.extend_from_slice(segment);
        }
        at += 2 + length;
    }
}

#[test]
fn mjpeg_colour_bars() {
    let (rgb, colours) = full_bars(64, 32);
    let jpeg = encode_jpeg(&rgb, 64, 32, 95);
    let frame = to_rgb(&layout(PixelFormat::Mjpeg, 64, 32, 0), &jpeg).unwrap();
    for (i, want) in colours.into_iter().enumerate() {
        assert_close(
            pixel_at(&frame, i * 8 + 4, 16),
            want,
            10,
            &format!("bar {i}"),
        );
    }
}

#[test]
fn mjpeg_of_another_size_is_an_error() {
    let (rgb, _) = full_bars(64, 32);
    let jpeg = encode_jpeg(&rgb, 64, 32, 90);
    let message = frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, 32, 32, 0), &jpeg));
    assert_eq!(
        message,
        "mjpeg 32x32: the JPEG is 64x32, not the negotiated size"
    );
}

/// The JPEG with the size in its frame header (SOF0) replaced.
fn with_header_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    let mut patched = jpeg.to_vec();
    // FF C0, length (2), precision (1), height (2), width (2).
    patched[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    patched[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    patched
}

#[test]
fn mjpeg_header_claiming_a_huge_size_is_refused_before_decoding() {
    let (rgb, _) = full_bars(64, 32);
    let jpeg = encode_jpeg(&rgb, 64, 32, 90);
    let huge = with_header_size(&jpeg, 65_535, 65_535);
    // Compared with the negotiated size from the header alone: the decoder is never asked
    // for 12 GiB (without the check `image` reports its allocation limit instead).
    let message = frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, 64, 32, 0), &huge));
    assert_eq!(
        message,
        "mjpeg 64x32: the JPEG is 65535x65535, not the negotiated size"
    );
    // The same without Huffman tables: the retry with the standard tables checks it too.
    let (stripped, _, _) = strip_dht(&huge);
    let message = frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, 64, 32, 0), &stripped));
    assert!(message.contains("65535x65535"), "{message}");
    // A negotiated size beyond the bounds is refused before the JPEG is looked at.
    for (w, h) in [(65_535, 65_535), (16_384, 16_384), (0, 32)] {
        let message = frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, w, h, 0), &huge));
        assert!(
            message.starts_with(&format!("mjpeg {w}x{h}: ")) && message.contains("size")
                || message.contains("pixels"),
            "{message}"
        );
        assert!(!message.contains("JPEG is"), "{message}");
    }
}

#[test]
fn huge_uncompressed_headers_are_errors_without_allocating() {
    // 65535x65535 and friends: refused by their size, whatever the buffer.
    let data = vec![0u8; 1024];
    for format in PixelFormat::ALL {
        for (w, h, stride) in [
            (65_535, 65_535, 0),
            (u32::MAX, u32::MAX, u32::MAX),
            (16_384, 16_384, 0),
            (16_384, 4_096, u32::MAX),
            (2, 2, u32::MAX),
        ] {
            let l = layout(format, w, h, stride);
            let message = frame_error_message(to_rgb(&l, &data));
            assert!(
                message.starts_with(&format!("{format} {w}x{h}: ")),
                "{message}"
            );
        }
    }
}

#[test]
fn mjpeg_garbage_is_an_error() {
    let mjpeg = layout(PixelFormat::Mjpeg, 64, 32, 0);
    for data in [
        &b""[..],
        b"not a jpeg",
        &[0xFF, 0xD8],
        &[0xFF, 0xD8, 0xFF, 0xDA, 0, 2],
    ] {
        let message = frame_error_message(to_rgb(&mjpeg, data));
        assert!(message.starts_with("mjpeg 64x32: "), "{message}");
    }
    // Pseudo-random bodies after a JPEG start, and cut-off real JPEGs: any answer, no panic.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..50 {
        let mut data = vec![0xFF, 0xD8];
        for _ in 0..512 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.push(state as u8);
        }
        let _ = to_rgb(&mjpeg, &data);
    }
    let (rgb, _) = full_bars(64, 32);
    let jpeg = encode_jpeg(&rgb, 64, 32, 90);
    for cut in (0..jpeg.len()).step_by(37) {
        let _ = to_rgb(&mjpeg, &jpeg[..cut]);
        let (stripped, _, _) = strip_dht(&jpeg);
        let _ = to_rgb(&mjpeg, &stripped[..cut.min(stripped.len())]);
    }
}

#[test]
fn standard_tables_are_complete_codes() {
    for (class_id, bits, values) in STANDARD_TABLES {
        let count: usize = bits.iter().map(|&n| usize::from(n)).sum();
        assert_eq!(count, values.len(), "table {class_id:#04x}");
        // Kraft: the codes fit, leaving out only the all-ones code of each length.
        let kraft: u32 = (0..16).map(|i| u32::from(bits[i]) << (15 - i)).sum();
        assert!(kraft < 1 << 16, "table {class_id:#04x}");
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        if class_id >> 4 == 0 {
            assert_eq!(sorted, (0..12).collect::<Vec<u8>>());
        } else {
            // Every (run, size) symbol once: EOB, ZRL and run 0..=15 with size 1..=10.
            let mut all = vec![0x00, 0xF0];
            all.extend((0..16u8).flat_map(|run| (1..=10u8).map(move |size| run << 4 | size)));
            all.sort_unstable();
            assert_eq!(sorted, all, "table {class_id:#04x}");
            // The 16-bit codes are the symbols not given a shorter one, in ascending order.
            let long = &values[values.len() - usize::from(bits[15])..];
            assert!(
                long.windows(2).all(|w| w[0] < w[1]),
                "table {class_id:#04x}"
            );
        }
    }
    let segment = standard_dht_segment();
    assert_eq!(segment[..4], [0xFF, 0xC4, 0x01, 0xA2]);
    assert_eq!(segment.len(), 2 + 418);
}

#[test]
fn jpeg_encoder_writes_the_standard_tables() {
    // The premise of the DHT-less test below: `image`'s encoder writes the Annex K tables, not
    // optimised ones, so stripping them and inserting ours must give back the same JPEG.
    let (rgb, _) = full_bars(64, 32);
    let jpeg = encode_jpeg(&rgb, 64, 32, 90);
    let (_, tables, _) = strip_dht(&jpeg);
    assert_eq!(tables, standard_dht_segment()[4..]);
}

#[test]
fn mjpeg_without_huffman_tables_decodes() {
    let (rgb, _) = full_bars(64, 32);
    let jpeg = encode_jpeg(&rgb, 64, 32, 90);
    let (stripped, _, _) = strip_dht(&jpeg);
    assert!(
        image::load_from_memory_with_format(&stripped, image::ImageFormat::Jpeg).is_err(),
        "the decoder alone should fail without tables, or this test tests nothing"
    );
    let mjpeg = layout(PixelFormat::Mjpeg, 64, 32, 0);
    let with_tables = to_rgb(&mjpeg, &jpeg).unwrap();
    let without = to_rgb(&mjpeg, &stripped).unwrap();
    assert_eq!(without, with_tables);
}

#[test]
fn huffman_table_insertion_bytes() {
    let (rgb, _) = full_bars(64, 32);
    let jpeg = encode_jpeg(&rgb, 64, 32, 90);
    assert_eq!(with_standard_huffman_tables(&jpeg), None, "it has tables");
    let (stripped, _, sos) = strip_dht(&jpeg);
    let mut want = stripped[..sos].to_vec();
    want.extend_from_slice(&standard_dht_segment());
    want.extend_from_slice(&stripped[sos..]);
    assert_eq!(with_standard_huffman_tables(&stripped), Some(want));

    // A hand-made header: an APP0 whose payload looks like a DHT marker, then fill bytes
    // before SOS. The segment goes right before the `FF DA`, after the fill byte.
    let data = [
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xFF, 0xC4, 0xFF, 0xFF, 0xDA, 0x00, 0x02, 0x11,
    ];
    let mut want = data[..9].to_vec();
    want.extend_from_slice(&standard_dht_segment());
    want.extend_from_slice(&data[9..]);
    assert_eq!(with_standard_huffman_tables(&data), Some(want));

    // Not JPEGs, cut short, or broken: nothing to insert.
    for data in [
        &b""[..],
        b"not a jpeg",
        &[0xFF, 0xD8],
        &[0xFF, 0xD8, 0xFF],
        &[0xFF, 0xD8, 0xFF, 0xE0, 0x00],
        &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0xFF, 0xDA],
        &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0xFF, 0xDA],
        &[0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA],
        &[0xFF, 0xD8, 0x00, 0xFF, 0xDA],
    ] {
        assert_eq!(with_standard_huffman_tables(data), None, "{data:02x?}");
    }
}
