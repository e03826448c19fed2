//! The IMX500's DNN lines (KPI line, input tensor, output tensor: 12-byte headers, FlatBuffers
//! apParams descriptors, quantised data) into the parser, and capture files into their reader.
//!
//! Input: byte 0 picks the line stride (`& 3`: 0 → 64, so that descriptors and tensors span
//! several lines within `-max_len`; 1 → 2560; 2 → 4064; 3 → `(byte 0 >> 2) + 1`, 1..=64, which
//! includes strides too short for a header); byte 1: bit 7 reads the rest as the records of a
//! capture file (bit 6 with it: as the whole file, header included; bit 0: the input tensor is
//! asked for). Otherwise the rest are the frame's DNN lines, parsed with and without the input
//! tensor. Seeds: `sdk/fuzz/seeds/imx500_tensor/` (written by the ignored test
//! `imx500::tests::write_fuzz_seeds` of the `ocellus` crate).
//!
//! Properties beyond "no panic": a decoded frame has at least one output tensor, each with as
//! many values as its dimensions multiply to, all tensors together at most `MAX_ELEMENTS`; asking
//! for the input changes neither the outcome nor the outputs; no input image unless asked for, and
//! one that is there has sides 1..=1280, 1, 3 or 4 channels and exactly `w × h × c` bytes
//! (`to_rgb`: `w × h × 3`); a tensor that decodes at a line has a header whose descriptor, read on
//! its own, holds the header's network with the same output descriptions; a descriptor read on its
//! own respects the bounds on networks, tensors, dimensions and names; a capture with a valid
//! header opens and its skipped count never goes down; every refusal formats to a message.
#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ocellus::imx500::capture::CaptureReader;
use ocellus::imx500::format::{
    self, DNN_HEADER_LEN, DnnHeader, MAX_DIMS, MAX_ELEMENTS, MAX_INPUT_SIDE, MAX_NAME,
    MAX_NETWORKS, MAX_TENSORS, Network, TensorType,
};

/// Lines, from the start, at which the output and input parsers are also tried on their own.
const MAX_LINES_TRIED: usize = 64;
/// Records read from a capture made of the input.
const MAX_RECORDS: usize = 16;

fn stride_of(b: u8) -> usize {
    match b & 3 {
        0 => 64,
        1 => format::STRIDE_2560,
        2 => format::STRIDE_4064,
        _ => usize::from(b >> 2) + 1,
    }
}

fn check_descriptor(networks: &[Network]) {
    assert!(
        networks.len() <= MAX_NETWORKS,
        "{} networks",
        networks.len()
    );
    for n in networks {
        assert!(n.name.len() <= 3 * MAX_NAME && n.kind.len() <= 3 * MAX_NAME);
        assert!(
            n.outputs.len() <= MAX_TENSORS,
            "{} outputs",
            n.outputs.len()
        );
        for t in &n.outputs {
            assert!(t.dims.len() <= MAX_DIMS, "{} dimensions", t.dims.len());
            // lossy UTF-8 may make a name up to 3 times longer in bytes
            assert!(t.name.len() <= 3 * MAX_NAME);
        }
    }
}

fn check_error(e: &format::TensorError) {
    assert!(!e.to_string().is_empty(), "an empty error: {e:?}");
}

/// The outputs as comparable text (values by their bits: NaN is a possible value).
fn outputs_key(frame: &format::Result<format::DnnFrame>) -> String {
    match frame {
        Ok(f) => {
            let o = &f.outputs;
            let mut key = format!("{:?} {:?} {:?}", o.header, o.network, f.kpi);
            for t in &o.tensors {
                key += &format!(" {:?}:", t.info);
                for v in &t.data {
                    key += &format!("{:x},", v.to_bits());
                }
            }
            key
        }
        Err(e) => format!("{e:?}"),
    }
}

/// The frame parser (with and without the input), then the tensor parsers and the descriptor
/// reader line by line.
fn parse(data: &[u8], stride: usize) {
    let without = format::parse_frame(data, stride, false);
    let with = format::parse_frame(data, stride, true);
    assert_eq!(
        outputs_key(&without),
        outputs_key(&with),
        "asking for the input changed the outputs"
    );
    check_frame(without, false);
    check_frame(with, true);
    lines(data, stride);
}

fn check_frame(frame: format::Result<format::DnnFrame>, want_input: bool) {
    match frame {
        Ok(frame) => {
            let tensors = &frame.outputs.tensors;
            assert!(!tensors.is_empty(), "a frame without output tensors");
            let mut total = 0usize;
            for t in tensors {
                assert_eq!(t.data.len(), t.info.elements(), "{}", t.info.name);
                assert_eq!(t.info.shape().iter().product::<usize>(), t.data.len());
                total += t.data.len();
            }
            assert!(total <= MAX_ELEMENTS, "{total} elements");
            if !want_input {
                assert!(frame.input.is_none(), "an input image nobody asked for");
            }
            if let Some(img) = &frame.input {
                let side = u32::from(MAX_INPUT_SIDE);
                assert!((1..=side).contains(&img.width) && (1..=side).contains(&img.height));
                assert!(
                    matches!(img.channels, 1 | 3 | 4),
                    "{} channels",
                    img.channels
                );
                let px = img.width as usize * img.height as usize;
                assert_eq!(img.planes.len(), px * img.channels as usize);
                assert_eq!(img.to_rgb().len(), px * 3);
            }
        }
        Err(e) => check_error(&e),
    }
}

/// The output and input parsers at each line, and the descriptor reader on each header's
/// descriptor.
fn lines(data: &[u8], stride: usize) {
    if stride <= DNN_HEADER_LEN {
        return;
    }
    for l in 0..data.len().div_ceil(stride).min(MAX_LINES_TRIED) {
        let line = &data[l * stride..];
        let Ok(header) = DnnHeader::parse(line) else {
            continue;
        };
        // The descriptor is the stream of bytes after the header (it continues at column 0 of
        // the next line, so it is contiguous in the data).
        let ap_len = usize::from(header.ap_param_size);
        let descriptor = line
            .get(DNN_HEADER_LEN..DNN_HEADER_LEN + ap_len)
            .map(format::parse_ap_params);
        if let Some(Ok(networks)) = &descriptor {
            check_descriptor(networks);
        }
        match format::parse_output(line, stride) {
            Ok(out) => {
                assert_eq!(out.header, header);
                assert_eq!(header.tensor_type, TensorType::Output);
                let Some(Ok(networks)) = &descriptor else {
                    panic!(
                        "an output decoded from a descriptor that does not read: {descriptor:?}"
                    );
                };
                let net = networks
                    .iter()
                    .find(|n| n.id == header.network_id)
                    .expect("the header's network is in the descriptor");
                // as text: a scale may be NaN, which is not equal to itself
                let infos: Vec<_> = out.tensors.iter().map(|t| &t.info).collect();
                assert_eq!(
                    format!("{infos:?}"),
                    format!("{:?}", net.outputs.iter().collect::<Vec<_>>())
                );
            }
            Err(e) => check_error(&e),
        }
        match format::parse_input(line, stride) {
            Ok(img) => {
                assert_eq!(header.tensor_type, TensorType::Input);
                assert!(matches!(descriptor, Some(Ok(_))));
                let px = img.width as usize * img.height as usize;
                assert_eq!(img.planes.len(), px * img.channels as usize);
            }
            Err(e) => check_error(&e),
        }
    }
}

/// A file of this process's own for the capture cases.
fn capture_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!(
            "ocellus-fuzz-imx500-{}.capture",
            std::process::id()
        ))
    })
}

fn capture(data: &[u8], stride: usize, whole_file: bool, want_input: bool) {
    let path = capture_path();
    let mut bytes = Vec::with_capacity(16 + data.len());
    if !whole_file {
        bytes.extend_from_slice(b"OCLX500\n");
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&(stride as u32).to_le_bytes());
        bytes.extend_from_slice(&[0, 0]);
    }
    bytes.extend_from_slice(data);
    let written = std::fs::File::create(path).and_then(|mut f| f.write_all(&bytes));
    if written.is_ok() {
        read_back(path, whole_file, want_input);
    }
    // nothing left behind in the temporary directory (but after a crash)
    let _ = std::fs::remove_file(path);
}

fn read_back(path: &Path, whole_file: bool, want_input: bool) {
    let mut reader = match CaptureReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            assert!(whole_file, "a capture with a valid header refused: {e}");
            assert!(!e.to_string().is_empty(), "an empty error: {e:?}");
            return;
        }
    };
    let stride = reader.stride();
    let mut skipped = 0;
    for _ in 0..MAX_RECORDS {
        match reader.next_record() {
            Ok(Some(record)) => {
                assert!(record.data.len() <= ocellus::imx500::capture::MAX_RECORD);
                check_frame(
                    format::parse_frame(&record.data, stride, want_input),
                    want_input,
                );
            }
            Ok(None) => break,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                break;
            }
        }
        assert!(reader.skipped() >= skipped, "the skipped count went down");
        skipped = reader.skipped();
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, flags, rest @ ..] = data else {
        return;
    };
    let stride = stride_of(*mode);
    if flags & 0x80 != 0 {
        capture(rest, stride, flags & 0x40 != 0, flags & 1 != 0);
    } else {
        parse(rest, stride);
    }
});
