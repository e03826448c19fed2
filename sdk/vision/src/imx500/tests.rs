//! Tests of the IMX500 tensor format, the capture file and the on-sensor inference.
//!
//! The parser is checked against tensors built here byte by byte, with a FlatBuffers writer of
//! this file's own (vtables after their tables, every scalar in a 4-byte slot: another layout than
//! `flatbuf::TableBuilder` writes), so a mistake shared by `encode.rs` and `format.rs` cannot hide.
//! The round trips through `encode.rs`, the malformed frames, the capture file and
//! [`super::Imx500Inference`] follow.

use std::time::Duration;

use super::capture::{CaptureReader, CaptureWriter};
use super::encode::{InputSpec, Layout};
use super::format::*;

// ---------------------------------------------------------------------------------------------
// A FlatBuffers writer of our own, and the apParams schema's slots (from the generated code)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum F {
    U8(u8),
    U16(u16),
    F32(f32),
    Str(Vec<u8>),
    Tables(Vec<T>),
}

/// A table: `(vtable slot, value)` pairs.
#[derive(Debug, Clone, Default)]
struct T(Vec<(u16, F)>);

impl T {
    fn f(mut self, slot: u16, v: F) -> T {
        self.0.retain(|(s, _)| *s != slot);
        self.0.push((slot, v));
        self
    }
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

fn pad4(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0xA5);
    }
}

/// Write `t` at the end of `b`: the table (its `i32` to the vtable, then one 4-byte slot per
/// field), its vtable after it, then its strings and vectors. The table's position.
fn write_table(b: &mut Vec<u8>, t: &T) -> usize {
    pad4(b);
    let table = b.len();
    let size = 4 + 4 * t.0.len();
    b.resize(table + size, 0);
    let vtable = b.len();
    let max_slot = t.0.iter().map(|(s, _)| *s).max().unwrap_or(2);
    let vt_len = usize::from(max_slot) + 2;
    b.resize(vtable + vt_len, 0);
    put(b, vtable, &(vt_len as u16).to_le_bytes());
    put(b, vtable + 2, &(size as u16).to_le_bytes());
    // the vtable lies after the table: a negative distance
    put(b, table, &(table as i32 - vtable as i32).to_le_bytes());
    let mut later = Vec::new();
    for (k, (slot, v)) in t.0.iter().enumerate() {
        let field = table + 4 + 4 * k;
        put(
            b,
            vtable + usize::from(*slot),
            &((4 + 4 * k) as u16).to_le_bytes(),
        );
        match v {
            F::U8(x) => b[field] = *x,
            F::U16(x) => put(b, field, &x.to_le_bytes()),
            F::F32(x) => put(b, field, &x.to_le_bytes()),
            F::Str(_) | F::Tables(_) => later.push((field, v)),
        }
    }
    for (field, v) in later {
        pad4(b);
        let target = b.len();
        put(b, field, &((target - field) as u32).to_le_bytes());
        match v {
            F::Str(s) => {
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s);
                b.push(0);
            }
            F::Tables(items) => {
                b.extend_from_slice(&(items.len() as u32).to_le_bytes());
                let first = b.len();
                b.resize(first + 4 * items.len(), 0);
                for (i, item) in items.iter().enumerate() {
                    let child = write_table(b, item);
                    let at = first + 4 * i;
                    put(b, at, &((child - at) as u32).to_le_bytes());
                }
            }
            F::U8(_) | F::U16(_) | F::F32(_) => unreachable!(),
        }
    }
    table
}

/// A buffer with `root` as its root table.
fn fb(root: &T) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    let r = write_table(&mut b, root);
    put(&mut b, 0, &(r as u32).to_le_bytes());
    b
}

fn s(text: &str) -> F {
    F::Str(text.as_bytes().to_vec())
}

/// FBDimension: id 4, size 6, serializationIndex 8, padding 10.
fn dim(ordinal: u8, size: u16, ser: u8, pad: u8) -> T {
    T::default()
        .f(4, F::U8(ordinal))
        .f(6, F::U16(size))
        .f(8, F::U8(ser))
        .f(10, F::U8(pad))
}

/// Dimensions of the given sizes and serialization indices (ordinal: the position).
fn dims(spec: &[(u16, u8)]) -> Vec<T> {
    spec.iter()
        .enumerate()
        .map(|(i, &(size, ser))| dim(i as u8, size, ser, 0))
        .collect()
}

/// FBOutputTensor: id 4, name 6, numOfDimensions 8, dimensions 10, bitsPerElement 12, shift 14,
/// scale 16, format 18 (0 signed, 1 unsigned).
fn output(name: &str, dims: Vec<T>, bits: u8, signed: bool, shift: u16, scale: f32) -> T {
    T::default()
        .f(4, F::U8(0))
        .f(6, s(name))
        .f(8, F::U8(dims.len() as u8))
        .f(10, F::Tables(dims))
        .f(12, F::U8(bits))
        .f(14, F::U16(shift))
        .f(16, F::F32(scale))
        .f(18, F::U8(u8::from(!signed)))
}

/// FBInputTensor: id 4, name 6, numOfDimensions 8, dimensions 10, shift 12, scale 14, format 16.
/// Width is serialization index 0, height 1, channels 2.
fn input(w: u16, h: u16, c: u16, wpad: u8, hpad: u8) -> T {
    input_with(vec![
        dim(2, w, 0, wpad),
        dim(1, h, 1, hpad),
        dim(0, c, 2, 0),
    ])
}

fn input_with(dims: Vec<T>) -> T {
    T::default()
        .f(4, F::U8(0))
        .f(6, s("input"))
        .f(8, F::U8(dims.len() as u8))
        .f(10, F::Tables(dims))
        .f(12, F::U16(0))
        .f(14, F::F32(1.0))
        .f(16, F::U8(1))
}

/// FBNetwork: id 4, name 6, type 8, inputTensors 10, outputTensors 12.
fn network(id: u16, inputs: Vec<T>, outputs: Vec<T>) -> T {
    T::default()
        .f(4, F::U16(id))
        .f(6, s("hand-net"))
        .f(8, s("hand-type"))
        .f(10, F::Tables(inputs))
        .f(12, F::Tables(outputs))
}

/// FBApParams: networks 4.
fn ap(networks: Vec<T>) -> Vec<u8> {
    fb(&T::default().f(4, F::Tables(networks)))
}

// ---------------------------------------------------------------------------------------------
// Tensor lines built by hand
// ---------------------------------------------------------------------------------------------

/// Filler past `max_line_len` on a line: a parser that reads it gets other values.
const LINE_PAD: u8 = 0xEE;
/// Filler between a tensor's last element and the end of its last line's `max_line_len` bytes.
const TAIL_PAD: u8 = 0xDD;

fn header(valid: u8, count: u8, max_line_len: u16, ap_size: u16, net: u16, ty: u8) -> [u8; 12] {
    let mut h = [0xCCu8; 12]; // reserved bytes: not zero, to be ignored
    h[0] = valid;
    h[1] = count;
    put(&mut h, 2, &max_line_len.to_le_bytes());
    put(&mut h, 4, &ap_size.to_le_bytes());
    put(&mut h, 6, &net.to_le_bytes());
    h[8] = ty;
    h
}

/// A tensor's data bytes cut into lines of `max_line_len` (the last one filled up with
/// [`TAIL_PAD`]).
fn lines_of(bytes: &[u8], max_line_len: usize) -> Vec<Vec<u8>> {
    bytes
        .chunks(max_line_len)
        .map(|c| {
            let mut l = c.to_vec();
            l.resize(max_line_len, TAIL_PAD);
            l
        })
        .collect()
}

/// Header and apParams as one stream wrapped at `stride` (so the descriptor continues at column 0
/// of the next line), then each data line on a line of its own, filled up to `stride` with
/// [`LINE_PAD`].
fn tensor_block(stride: usize, h: [u8; 12], ap: &[u8], lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = h.to_vec();
    out.extend_from_slice(ap);
    out.resize(out.len().next_multiple_of(stride), LINE_PAD);
    for l in lines {
        assert!(l.len() <= stride);
        let start = out.len();
        out.extend_from_slice(l);
        out.resize(start + stride, LINE_PAD);
    }
    out
}

/// An output tensor block of one network (id 7) with `outputs`, each tensor's bytes starting on a
/// line of its own.
fn output_block(stride: usize, max_line_len: u16, outputs: Vec<T>, data: &[Vec<u8>]) -> Vec<u8> {
    let ap = ap(vec![network(7, Vec::new(), outputs)]);
    let lines: Vec<Vec<u8>> = data
        .iter()
        .flat_map(|d| lines_of(d, usize::from(max_line_len)))
        .collect();
    tensor_block(
        stride,
        header(1, 3, max_line_len, ap.len() as u16, 7, 1),
        &ap,
        &lines,
    )
}

fn one(stride: usize, max_line_len: u16, t: T, data: Vec<u8>) -> Result<Outputs> {
    parse_output(
        &output_block(stride, max_line_len, vec![t], &[data]),
        stride,
    )
}

fn values(outputs: &Outputs) -> Vec<Vec<f32>> {
    outputs.tensors.iter().map(|t| t.data.clone()).collect()
}

fn le16(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// parse_output on hand-built tensors
// ---------------------------------------------------------------------------------------------

#[test]
fn hand_header_and_descriptor_read_back() {
    let h = DnnHeader::parse(&header(1, 200, 2560, 0x1234, 0x0305, 1)).unwrap();
    assert_eq!(
        h,
        DnnHeader {
            frame_valid: true,
            frame_count: 200,
            max_line_len: 2560,
            ap_param_size: 0x1234,
            network_id: 0x0305,
            tensor_type: TensorType::Output,
        }
    );
    assert_eq!(
        &h.to_bytes()[..9],
        &header(1, 200, 2560, 0x1234, 0x0305, 1)[..9]
    );
    let nets = parse_ap_params(&ap(vec![network(
        0x0102,
        vec![input(4, 3, 3, 1, 2)],
        vec![output("out", dims(&[(5, 1), (6, 0)]), 16, true, 9, 0.25)],
    )]))
    .unwrap();
    assert_eq!(nets.len(), 1);
    let n = &nets[0];
    assert_eq!(
        (n.id, n.name.as_str(), n.kind.as_str()),
        (0x0102, "hand-net", "hand-type")
    );
    let i = n.input.as_ref().unwrap();
    assert_eq!(
        (
            i.width,
            i.height,
            i.channels,
            i.width_stride,
            i.height_stride
        ),
        (4, 3, 3, 5, 5)
    );
    let o = &n.outputs[0];
    assert_eq!(o.name, "out");
    assert_eq!((o.bits, o.signed, o.shift, o.scale), (16, true, 9, 0.25));
    assert_eq!(
        o.dims,
        vec![
            Dimension {
                ordinal: 0,
                size: 5,
                serialization_index: 1,
                padding: 0
            },
            Dimension {
                ordinal: 1,
                size: 6,
                serialization_index: 0,
                padding: 0
            },
        ]
    );
    assert_eq!(o.shape(), vec![6, 5]);
}

#[test]
fn eight_bit_unsigned_with_shift_and_scale() {
    let t = output("u8", dims(&[(4, 0)]), 8, false, 10, 0.5);
    let out = one(64, 64, t, vec![0, 10, 200, 255]).unwrap();
    assert_eq!(values(&out), vec![vec![-5.0, 0.0, 95.0, 122.5]]);
    assert_eq!(out.header.frame_count, 3);
    assert_eq!(out.network, ("hand-net".into(), "hand-type".into()));
}

#[test]
fn eight_bit_signed_with_shift_and_scale() {
    let t = output("i8", dims(&[(4, 0)]), 8, true, 3, 2.0);
    let out = one(64, 64, t, vec![0x80, 0xFF, 0x00, 0x7F]).unwrap();
    assert_eq!(values(&out), vec![vec![-262.0, -8.0, -6.0, 248.0]]);
}

#[test]
fn sixteen_bit_unsigned_and_signed() {
    let t = output("u16", dims(&[(3, 0)]), 16, false, 0x100, 0.25);
    let out = one(64, 64, t, le16(&[0x0000, 0x1234, 0xFFFF])).unwrap();
    assert_eq!(values(&out), vec![vec![-64.0, 1101.0, 16319.75]]);

    let t = output("i16", dims(&[(3, 0)]), 16, true, 1, 1.0);
    let out = one(64, 64, t, le16(&[0x8000, 0xFFFE, 0x7FFF])).unwrap();
    assert_eq!(values(&out), vec![vec![-32769.0, -3.0, 32766.0]]);
}

#[test]
fn thirty_two_bit_unsigned_and_signed() {
    let t = output("u32", dims(&[(3, 0)]), 32, false, 255, 0.5);
    let out = one(64, 64, t, le32(&[0xFFFF_FFFF, 0x8000_00FF, 255])).unwrap();
    assert_eq!(
        values(&out),
        vec![vec![2_147_483_520.0, 1_073_741_824.0, 0.0]]
    );

    let t = output("i32", dims(&[(3, 0)]), 32, true, 0, 1.0);
    let raw = [i32::MIN as u32, -1i32 as u32, i32::MAX as u32];
    let out = one(64, 64, t, le32(&raw)).unwrap();
    assert_eq!(
        values(&out),
        vec![vec![-2_147_483_648.0, -1.0, 2_147_483_648.0]]
    );
}

#[test]
fn a_tensor_spans_lines_and_the_line_padding_is_ignored() {
    // 20 bytes, 8 a line on lines of 32: the rest of each line is LINE_PAD
    let raw: Vec<u8> = (1..=20).collect();
    let t = output("long", dims(&[(20, 0)]), 8, false, 0, 1.0);
    let frame = output_block(32, 8, vec![t], std::slice::from_ref(&raw));
    let data_start = frame.len() - 3 * 32;
    assert_eq!(frame[data_start + 8], LINE_PAD);
    let out = parse_output(&frame, 32).unwrap();
    let want: Vec<f32> = raw.iter().map(|&b| f32::from(b)).collect();
    assert_eq!(values(&out), vec![want]);

    // 16-bit elements, 3 a line (max_line_len 6)
    let raw: Vec<u16> = (0..10).map(|i| 1000 + i * 7).collect();
    let t = output("long16", dims(&[(10, 0)]), 16, false, 0, 1.0);
    let out = one(32, 6, t, le16(&raw)).unwrap();
    let want: Vec<f32> = raw.iter().map(|&v| f32::from(v)).collect();
    assert_eq!(values(&out), vec![want]);
}

#[test]
fn several_tensors_each_start_on_a_new_line() {
    let a = output("a", dims(&[(5, 0)]), 8, false, 0, 1.0);
    let b = output("b", dims(&[(10, 0)]), 16, true, 0, 1.0);
    let c = output("c", dims(&[(1, 0)]), 32, true, 0, 1.0);
    let b_raw: Vec<u16> = (0..10).map(|i: i16| (i * -300) as u16).collect();
    let data = vec![
        vec![1, 2, 3, 4, 5],
        le16(&b_raw),
        le32(&[(-123_456i32) as u32]),
    ];
    // max_line_len 8: a's line ends with 3 bytes of TAIL_PAD, b takes 3 lines (4, 4, 2)
    let frame = output_block(16, 8, vec![a, b, c], &data);
    let out = parse_output(&frame, 16).unwrap();
    let v = values(&out);
    assert_eq!(v[0], vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(v[1], (0..10).map(|i| (i * -300) as f32).collect::<Vec<_>>());
    assert_eq!(v[2], vec![-123_456.0]);
    let names: Vec<&str> = out.tensors.iter().map(|t| t.info.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn a_two_dimensional_tensor_is_put_back_in_dimension_order() {
    // dimension 0: 2 long, serialized slowest; dimension 1: 3 long, serialized fastest
    let t = output("2d", dims(&[(2, 1), (3, 0)]), 8, false, 0, 1.0);
    let mut stream = Vec::new();
    for d0 in 0..2u8 {
        for d1 in 0..3u8 {
            stream.push(10 * d0 + d1);
        }
    }
    assert_eq!(stream, [0, 1, 2, 10, 11, 12]);
    let out = one(64, 64, t, stream).unwrap();
    // decoded: dimension 0 fastest, index d0 + 2 * d1
    assert_eq!(values(&out), vec![vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]]);
    assert_eq!(out.tensors[0].info.shape(), vec![3, 2]);
}

#[test]
fn a_three_dimensional_tensor_is_put_back_in_dimension_order() {
    // sizes 2, 3, 4; serialization: dimension 1 fastest, then 2, then 0
    let t = output("3d", dims(&[(2, 2), (3, 0), (4, 1)]), 8, false, 0, 1.0);
    let mut stream = Vec::new();
    for a in 0..2u8 {
        for c in 0..4u8 {
            for b in 0..3u8 {
                stream.push(100 * a + 10 * b + c);
            }
        }
    }
    let out = one(64, 16, t, stream).unwrap();
    let mut want = vec![0f32; 24];
    for a in 0..2usize {
        for b in 0..3usize {
            for c in 0..4usize {
                want[a + 2 * b + 6 * c] = (100 * a + 10 * b + c) as f32;
            }
        }
    }
    assert_eq!(values(&out), vec![want]);
}

#[test]
fn a_descriptor_longer_than_a_line_continues_on_the_next() {
    let t = output(
        "a-tensor-name-long-enough-to-push-the-descriptor-over-several-lines",
        dims(&[(4, 0)]),
        8,
        false,
        0,
        1.0,
    );
    let ap_len = ap(vec![network(7, Vec::new(), vec![t.clone()])]).len();
    assert!(12 + ap_len > 2 * 64, "{ap_len}");
    let frame = output_block(64, 64, vec![t], &[vec![9, 8, 7, 6]]);
    let out = parse_output(&frame, 64).unwrap();
    assert_eq!(values(&out), vec![vec![9.0, 8.0, 7.0, 6.0]]);
}

#[test]
fn data_starts_on_the_line_after_the_descriptor_ends() {
    let stride = 256;
    let t = output("t", dims(&[(4, 0)]), 8, false, 0, 1.0);
    let natural = ap(vec![network(7, Vec::new(), vec![t])]);
    assert!(12 + natural.len() < stride);
    for ap_len in [stride - 12, stride - 11] {
        // trailing bytes after a FlatBuffers buffer are ignored by readers
        let mut descriptor = natural.clone();
        descriptor.resize(ap_len, 0);
        let data = vec![vec![1, 2, 3, 4]];
        let h = header(1, 0, 64, ap_len as u16, 7, 1);
        let frame = tensor_block(stride, h, &descriptor, &data);
        // exactly one line of header + descriptor, or one byte on the second line
        let head_lines = if ap_len == stride - 12 { 1 } else { 2 };
        assert_eq!(frame.len(), (head_lines + 1) * stride);
        let out = parse_output(&frame, stride).unwrap();
        assert_eq!(values(&out), vec![vec![1.0, 2.0, 3.0, 4.0]], "{ap_len}");
    }
}

#[test]
fn a_hand_built_input_tensor_with_padding_is_unpadded() {
    // 3 x 2 pixels, 3 channels; a column and a row of padding; 5 data bytes a line of 16
    let (w, h, c) = (3usize, 2usize, 3usize);
    let mut stream = Vec::new();
    for ch in 0..c {
        for y in 0..h + 1 {
            for x in 0..w + 1 {
                stream.push(if x < w && y < h {
                    (ch * 100 + y * 10 + x) as u8
                } else {
                    0xEE
                });
            }
        }
    }
    let descriptor = ap(vec![network(
        2,
        vec![input(3, 2, 3, 1, 1)],
        vec![output("o", dims(&[(1, 0)]), 8, false, 0, 1.0)],
    )]);
    let block = tensor_block(
        16,
        header(1, 0, 5, descriptor.len() as u16, 2, 0),
        &descriptor,
        &lines_of(&stream, 5),
    );
    let img = parse_input(&block, 16).unwrap();
    assert_eq!((img.width, img.height, img.channels), (3, 2, 3));
    let mut want = Vec::new();
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                want.push((ch * 100 + y * 10 + x) as u8);
            }
        }
    }
    assert_eq!(img.planes, want);
}

// ---------------------------------------------------------------------------------------------
// Round trips through encode.rs
// ---------------------------------------------------------------------------------------------

/// A small xorshift generator (tests only, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn out_info(
    id: u8,
    name: &str,
    spec: &[(u16, u8)],
    bits: u8,
    signed: bool,
    shift: u16,
    scale: f32,
) -> OutputTensorInfo {
    OutputTensorInfo {
        id,
        name: name.into(),
        dims: spec
            .iter()
            .enumerate()
            .map(|(i, &(size, ser))| Dimension {
                ordinal: i as u8,
                size,
                serialization_index: ser,
                padding: 0,
            })
            .collect(),
        bits,
        signed,
        shift,
        scale,
    }
}

fn mixed_outputs() -> Vec<OutputTensorInfo> {
    vec![
        out_info(0, "i16-2d", &[(3, 1), (7, 0)], 16, true, 5, 0.01),
        out_info(1, "u8", &[(300, 0)], 8, false, 0, 1.0 / 255.0),
        out_info(2, "i32-3d", &[(2, 1), (3, 2), (5, 0)], 32, true, 0, 1e-4),
        out_info(3, "i8-long", &[(3000, 0)], 8, true, 2, 0.5),
        out_info(4, "u16", &[(9, 0)], 16, false, 100, 0.125),
    ]
}

/// Values inside each tensor's range (decoded order), made of raw-space reals.
fn values_for(outputs: &[OutputTensorInfo], rng: &mut Rng) -> Vec<Vec<f32>> {
    outputs
        .iter()
        .map(|t| {
            let (lo, hi) = match (t.bits, t.signed) {
                (8, true) => (-128.0, 127.0),
                (8, false) => (0.0, 255.0),
                (16, true) => (-32768.0, 32767.0),
                (16, false) => (0.0, 65535.0),
                // a range where f32 keeps a quantisation step
                _ => (-1e6, 1e6),
            };
            (0..t.elements())
                .map(|_| {
                    let raw = lo + (hi - lo) * rng.unit();
                    ((raw - f64::from(t.shift)) * f64::from(t.scale)) as f32
                })
                .collect()
        })
        .collect()
}

fn assert_close(outputs: &[OutputTensorInfo], want: &[Vec<f32>], got: &Outputs) {
    assert_eq!(got.tensors.len(), outputs.len());
    for ((info, w), t) in outputs.iter().zip(want).zip(&got.tensors) {
        assert_eq!(&t.info, info);
        assert_eq!(t.data.len(), w.len(), "{}", info.name);
        for (i, (a, b)) in w.iter().zip(&t.data).enumerate() {
            let tol = info.scale * 0.5 + a.abs() * 1e-6;
            assert!(
                (a - b).abs() <= tol,
                "{} [{i}]: sent {a}, got {b} (scale {})",
                info.name,
                info.scale
            );
        }
    }
}

fn layout(stride: usize, max_line_len: u16, input: Option<InputSpec>) -> Layout {
    Layout {
        stride,
        max_line_len,
        network_id: 0x0203,
        network: "mixed".into(),
        input,
        outputs: mixed_outputs(),
    }
}

fn spec(width: u16, height: u16, channels: u16) -> InputSpec {
    InputSpec {
        name: "in".into(),
        width,
        height,
        channels,
    }
}

fn planar(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn round_trip_at_both_strides() {
    for (stride, max_line_len) in [
        (STRIDE_2560, 2560),
        (STRIDE_2560, 2048),
        (STRIDE_4064, 4064),
    ] {
        let l = layout(stride, max_line_len, None);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ stride as u64);
        let v = values_for(&l.outputs, &mut rng);
        let kpi = Kpi {
            dnn_runtime_us: 12_345,
            dsp_runtime_us: 678,
        };
        let frame = l.frame(42, kpi, None, &v).unwrap();
        assert_eq!(frame.len() % stride, 0);
        // the KPI counters are words 9 and 10 of line 0
        assert_eq!(frame[36..40], 12_345u32.to_le_bytes());
        assert_eq!(frame[40..44], 678u32.to_le_bytes());
        let got = parse_frame(&frame, stride, true).unwrap();
        assert_eq!(got.kpi, kpi);
        assert_eq!(got.input, None);
        assert_eq!(got.outputs.header.frame_count, 42);
        assert_eq!(got.outputs.header.network_id, 0x0203);
        assert_eq!(got.outputs.network, ("mixed".into(), "mixed".into()));
        assert_close(&l.outputs, &v, &got.outputs);
    }
}

#[test]
fn round_trip_saturates_out_of_range_values() {
    let l = Layout {
        outputs: vec![out_info(0, "u8", &[(4, 0)], 8, false, 0, 1.0)],
        ..layout(STRIDE_2560, 2560, None)
    };
    let frame = l
        .frame(0, Kpi::default(), None, &[vec![-5.0, 0.4, 254.6, 1e9]])
        .unwrap();
    let got = parse_frame(&frame, STRIDE_2560, false).unwrap();
    assert_eq!(got.outputs.tensors[0].data, vec![0.0, 0.0, 255.0, 255.0]);
}

#[test]
fn round_trip_with_the_input_tensor() {
    for stride in [STRIDE_2560, STRIDE_4064] {
        let l = layout(stride, stride as u16, Some(spec(40, 30, 3)));
        let mut rng = Rng(7);
        let v = values_for(&l.outputs, &mut rng);
        let pixels = planar(40 * 30 * 3);
        let kpi = Kpi {
            dnn_runtime_us: 1,
            dsp_runtime_us: 2,
        };
        let frame = l.frame(9, kpi, Some(&pixels), &v).unwrap();

        let got = parse_frame(&frame, stride, true).unwrap();
        let img = got.input.as_ref().unwrap();
        assert_eq!((img.width, img.height, img.channels), (40, 30, 3));
        assert_eq!(img.planes, pixels);
        assert_eq!(got.kpi, kpi);
        assert_close(&l.outputs, &v, &got.outputs);

        // not asked for: not decoded, the output the same
        let without = parse_frame(&frame, stride, false).unwrap();
        assert_eq!(without.input, None);
        assert_eq!(without.outputs, got.outputs);

        // the input on its own
        let alone = parse_input(&frame[stride..], stride).unwrap();
        assert_eq!(&alone, img);
    }
}

#[test]
fn an_input_over_several_lines_round_trips() {
    // 64-byte lines, 60 bytes of data each: rows cross line ends
    let l = Layout {
        outputs: vec![out_info(0, "o", &[(5, 0)], 8, false, 0, 1.0)],
        ..layout(64, 60, Some(spec(7, 5, 4)))
    };
    let pixels = planar(7 * 5 * 4);
    let v = vec![vec![1.0, 2.0, 3.0, 4.0, 5.0]];
    let frame = l.frame(1, Kpi::default(), Some(&pixels), &v).unwrap();
    let got = parse_frame(&frame, 64, true).unwrap();
    assert_eq!(got.input.unwrap().planes, pixels);
    assert_eq!(got.outputs.tensors[0].data, v[0]);
}

#[test]
fn a_frame_whose_input_is_not_valid_still_gives_its_output() {
    let l = layout(STRIDE_2560, 2560, Some(spec(16, 16, 3)));
    let v = values_for(&l.outputs, &mut Rng(3));
    let mut frame = l
        .frame(5, Kpi::default(), Some(&planar(16 * 16 * 3)), &v)
        .unwrap();
    frame[STRIDE_2560] = 0; // the input's frame_valid
    let got = parse_frame(&frame, STRIDE_2560, true).unwrap();
    assert_eq!(got.input, None);
    assert_close(&l.outputs, &v, &got.outputs);
    assert_eq!(
        parse_input(&frame[STRIDE_2560..], STRIDE_2560),
        Err(TensorError::NotValid("input"))
    );
}

#[test]
fn input_image_to_rgb_packs_the_planes() {
    let rgb = InputImage {
        width: 2,
        height: 1,
        channels: 3,
        planes: vec![1, 2, 10, 20, 100, 200],
    };
    assert_eq!(rgb.to_rgb(), vec![1, 10, 100, 2, 20, 200]);
    let grey = InputImage {
        width: 3,
        height: 1,
        channels: 1,
        planes: vec![5, 6, 7],
    };
    assert_eq!(grey.to_rgb(), vec![5, 5, 5, 6, 6, 6, 7, 7, 7]);
    let rgba = InputImage {
        width: 1,
        height: 2,
        channels: 4,
        planes: vec![1, 2, 3, 4, 5, 6, 7, 8],
    };
    assert_eq!(rgba.to_rgb(), vec![1, 3, 5, 2, 4, 6]);
    // an image made by hand with no channels or too few planes: zeros, no panic
    let empty = InputImage {
        width: 2,
        height: 1,
        channels: 0,
        planes: vec![9],
    };
    assert_eq!(empty.to_rgb(), vec![9, 9, 9, 0, 0, 0]);
}

// ---------------------------------------------------------------------------------------------
// Malformed frames: the right error, never a panic
// ---------------------------------------------------------------------------------------------

fn simple() -> T {
    output("t", dims(&[(4, 0)]), 8, false, 0, 1.0)
}

fn simple_block(stride: usize) -> Vec<u8> {
    output_block(stride, 64, vec![simple()], &[vec![1, 2, 3, 4]])
}

fn is_ap_params<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(TensorError::ApParams(m)) => m,
        other => panic!("expected an apParams error, got {other:?}"),
    }
}

fn is_tensor<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(TensorError::Tensor { why, .. }) => why,
        other => panic!("expected a tensor error, got {other:?}"),
    }
}

#[test]
fn a_stride_that_cannot_hold_a_header_is_refused() {
    let frame = simple_block(64);
    for stride in [0, 1, 12] {
        assert_eq!(
            parse_frame(&frame, stride, false),
            Err(TensorError::Stride(stride))
        );
        assert_eq!(
            parse_output(&frame, stride),
            Err(TensorError::Stride(stride))
        );
        assert_eq!(
            parse_input(&frame, stride),
            Err(TensorError::Stride(stride))
        );
    }
    assert!(
        parse_output(
            &output_block(13, 13, vec![simple()], &[vec![1, 2, 3, 4]]),
            13
        )
        .is_ok()
    );
}

#[test]
fn data_shorter_than_two_lines_is_truncated() {
    for len in [0, 63, 64, 127] {
        assert!(matches!(
            parse_frame(&vec![0u8; len], 64, false),
            Err(TensorError::Truncated { need: 128, .. })
        ));
    }
    // a stride no data can fill: refused without overflowing
    assert!(matches!(
        parse_frame(&[0u8; 100], usize::MAX, true),
        Err(TensorError::Truncated {
            need: usize::MAX,
            ..
        })
    ));
    assert!(parse_output(&simple_block(64), usize::MAX).is_err());
    assert!(parse_input(&simple_block(64), usize::MAX).is_err());
    assert!(matches!(
        parse_output(&[1, 0, 64], 64),
        Err(TensorError::Truncated {
            need: 12,
            have: 3,
            ..
        })
    ));
}

#[test]
fn a_header_of_the_wrong_type_is_refused() {
    let mut block = simple_block(64);
    for ty in [0u8, 2, 9] {
        block[8] = ty;
        assert_eq!(
            parse_output(&block, 64),
            Err(TensorError::TensorType {
                expected: "output",
                found: ty
            })
        );
    }
    block[8] = 1;
    assert_eq!(
        parse_input(&block, 64),
        Err(TensorError::TensorType {
            expected: "input",
            found: 1
        })
    );
}

#[test]
fn a_tensor_marked_not_valid_is_refused() {
    let mut block = simple_block(64);
    block[0] = 0;
    assert_eq!(
        parse_output(&block, 64),
        Err(TensorError::NotValid("output"))
    );
    let mut frame = vec![0u8; 64];
    frame.extend(&block);
    assert_eq!(
        parse_frame(&frame, 64, false),
        Err(TensorError::NotValid("output"))
    );
}

#[test]
fn a_max_line_len_that_does_not_fit_is_refused() {
    for len in [0u16, 65, 1000] {
        let mut block = simple_block(64);
        put(&mut block, 2, &len.to_le_bytes());
        assert!(
            matches!(
                parse_output(&block, 64),
                Err(TensorError::LineLength { max_line_len, .. }) if max_line_len == len
            ),
            "{len}"
        );
    }
    // 16-bit elements on 7-byte lines, 32-bit on 6-byte lines
    for (bits, len) in [(16u8, 7u16), (32, 6), (32, 2)] {
        let t = output("t", dims(&[(4, 0)]), bits, false, 0, 1.0);
        let r = one(64, len, t, vec![0; 16]);
        assert!(
            matches!(r, Err(TensorError::LineLength { max_line_len, .. }) if max_line_len == len),
            "{bits} bits, {len}: {r:?}"
        );
    }
}

#[test]
fn an_unknown_network_id_is_refused() {
    let mut block = simple_block(64);
    put(&mut block, 6, &8u16.to_le_bytes());
    assert_eq!(
        parse_output(&block, 64),
        Err(TensorError::UnknownNetwork(8))
    );
}

#[test]
fn a_network_is_found_among_several() {
    let nets: Vec<T> = (0..16u16)
        .map(|id| {
            network(
                id,
                Vec::new(),
                vec![output("t", dims(&[(1, 0)]), 8, false, id, 1.0)],
            )
        })
        .collect();
    let descriptor = ap(nets);
    let block = tensor_block(
        64,
        header(1, 0, 64, descriptor.len() as u16, 11, 1),
        &descriptor,
        &[vec![100]],
    );
    // network 11's tensor has shift 11
    assert_eq!(values(&parse_output(&block, 64).unwrap()), vec![vec![89.0]]);
}

#[test]
fn too_many_networks_are_refused() {
    let nets: Vec<T> = (0..17u16)
        .map(|id| network(id, Vec::new(), vec![simple()]))
        .collect();
    let m = is_ap_params(parse_ap_params(&ap(nets)));
    assert!(m.contains("17"), "{m}");
}

#[test]
fn a_truncated_descriptor_is_refused() {
    // ap_param_size runs past the data
    let mut block = simple_block(64);
    put(&mut block, 4, &500u16.to_le_bytes());
    assert!(matches!(
        parse_output(&block, 64),
        Err(TensorError::Truncated {
            what: "the apParams descriptor",
            ..
        })
    ));
    // the descriptor cut short: its offsets point past its end
    let full = ap(vec![network(7, Vec::new(), vec![simple()])]);
    for cut in [0, 3, 4, 20, full.len() / 2, full.len() - 2] {
        is_ap_params(parse_ap_params(&full[..cut]));
        let block = tensor_block(
            256,
            header(1, 0, 64, cut as u16, 7, 1),
            &full[..cut],
            &[vec![1, 2, 3, 4]],
        );
        is_ap_params(parse_output(&block, 256));
    }
}

#[test]
fn a_root_offset_out_of_range_is_refused() {
    let mut d = ap(vec![network(7, Vec::new(), vec![simple()])]);
    for root in [d.len() as u32, 0xFFFF_FFFF, (d.len() - 2) as u32] {
        put(&mut d, 0, &root.to_le_bytes());
        is_ap_params(parse_ap_params(&d));
    }
}

#[test]
fn a_vtable_out_of_range_is_refused() {
    let good = ap(vec![network(7, Vec::new(), vec![simple()])]);
    let root = u32::from_le_bytes(good[0..4].try_into().unwrap()) as usize;
    // after the end, before the start, and a vtable claiming more than the buffer holds
    for back in [-(good.len() as i32), root as i32 + 1, i32::MIN, i32::MAX] {
        let mut d = good.clone();
        put(&mut d, root, &back.to_le_bytes());
        is_ap_params(parse_ap_params(&d));
    }
    let vtable = (root as i64
        - i64::from(i32::from_le_bytes(good[root..root + 4].try_into().unwrap())))
        as usize;
    let mut d = good.clone();
    put(&mut d, vtable, &0xFFF0u16.to_le_bytes());
    is_ap_params(parse_ap_params(&d));
    let mut d = good;
    put(&mut d, vtable, &3u16.to_le_bytes()); // odd, shorter than its own header
    is_ap_params(parse_ap_params(&d));
}

#[test]
fn a_string_too_long_is_refused() {
    let long = "n".repeat(MAX_NAME + 1);
    let ok = "n".repeat(MAX_NAME);
    let nets = |name: &str| {
        ap(vec![network(
            7,
            Vec::new(),
            vec![output(name, dims(&[(1, 0)]), 8, false, 0, 1.0)],
        )])
    };
    assert_eq!(parse_ap_params(&nets(&ok)).unwrap()[0].outputs[0].name, ok);
    let m = is_ap_params(parse_ap_params(&nets(&long)));
    assert!(m.contains("257"), "{m}");
    // a string length pointing past the end
    let mut d = nets("abc");
    let at = d.windows(7).position(|w| w == b"\x03\0\0\0abc").unwrap();
    put(&mut d, at, &1000u32.to_le_bytes());
    is_ap_params(parse_ap_params(&d));
}

#[test]
fn a_num_of_dimensions_that_disagrees_is_refused() {
    let t = output("t", dims(&[(2, 0), (2, 1)]), 8, false, 0, 1.0).f(8, F::U8(3));
    let m = is_ap_params(one(64, 64, t, vec![0; 4]));
    assert!(m.contains("numOfDimensions 3"), "{m}");
}

#[test]
fn serialization_indices_must_be_a_permutation() {
    let cases: [&[(u16, u8)]; 4] = [
        &[(2, 0), (2, 0)],
        &[(2, 0), (2, 2)],
        &[(2, 1)],
        &[(2, 1), (3, 2), (1, 3)],
    ];
    for sizes in cases {
        let t = output("t", dims(sizes), 8, false, 0, 1.0);
        let why = is_tensor(one(64, 64, t, vec![0; 12]));
        assert!(why.contains("permutation"), "{why}");
    }
}

#[test]
fn an_output_dimension_with_padding_is_refused() {
    let t = output("t", vec![dim(0, 4, 0, 1)], 8, false, 0, 1.0);
    let why = is_tensor(one(64, 64, t, vec![0; 8]));
    assert!(why.contains("padding"), "{why}");
}

#[test]
fn a_dimension_of_size_zero_is_refused() {
    let t = output("t", dims(&[(3, 0), (0, 1)]), 8, false, 0, 1.0);
    let why = is_tensor(one(64, 64, t, vec![0; 8]));
    assert!(why.contains("size 0"), "{why}");
}

#[test]
fn bits_other_than_8_16_32_are_refused() {
    for bits in [0u8, 4, 12, 24, 64] {
        let t = output("t", dims(&[(4, 0)]), bits, false, 0, 1.0);
        let why = is_tensor(one(64, 64, t, vec![0; 32]));
        assert!(why.contains(&format!("{bits} bits")), "{why}");
    }
}

#[test]
fn more_elements_than_max_elements_are_refused() {
    // 2048 x 2048 is exactly the bound: accepted (then short of data)
    let at_bound = output("big", dims(&[(2048, 0), (2048, 1)]), 8, false, 0, 1.0);
    assert!(matches!(
        one(64, 64, at_bound.clone(), vec![0; 4]),
        Err(TensorError::Truncated { .. })
    ));
    let block = output_block(64, 64, vec![at_bound, simple()], &[vec![0; 4], vec![0; 4]]);
    let m = is_ap_params(parse_output(&block, 64));
    assert!(m.contains(&MAX_ELEMENTS.to_string()), "{m}");
    // a product past usize::MAX in 32-bit terms
    let huge = output(
        "huge",
        dims(&[(65535, 0), (65535, 1), (65535, 2), (65535, 3)]),
        8,
        false,
        0,
        1.0,
    );
    is_ap_params(one(64, 64, huge, vec![0; 4]));
}

#[test]
fn a_large_tensor_without_its_data_is_refused_before_it_is_laid_out() {
    // a reordered tensor at the element bound with one line of data: refused for the position of
    // its last element (before 16 MB of values and a 32 MB placement map are made for it)
    let big = output("big", dims(&[(2048, 1), (2048, 0)]), 8, false, 0, 1.0);
    assert_eq!(
        one(64, 64, big, vec![0; 64]),
        Err(TensorError::Truncated {
            what: "output tensor data",
            need: MAX_ELEMENTS,
            have: 64,
        })
    );
    // 16-bit elements, 3 a line of 32: the last (index 99) is the first of line 33
    let t = output("t", dims(&[(100, 0)]), 16, false, 0, 1.0);
    assert!(matches!(
        one(32, 6, t, vec![0; 6]),
        Err(TensorError::Truncated { need, .. }) if need == 33 * 32 + 2
    ));
    // the largest input picture, one line of data: refused before its planes are allocated
    let d = ap(vec![network(
        7,
        vec![input(1280, 1280, 4, 0, 0)],
        vec![simple()],
    )]);
    let block = tensor_block(
        64,
        header(1, 0, 64, d.len() as u16, 7, 0),
        &d,
        &[vec![0; 64]],
    );
    let last = 1280 * 1280 * 4 - 1;
    assert_eq!(
        parse_input(&block, 64),
        Err(TensorError::Truncated {
            what: "input tensor data",
            need: last / 64 * 64 + last % 64 + 1,
            have: 64,
        })
    );
}

#[test]
fn truncated_data_lines_are_refused() {
    let t = output("t", dims(&[(100, 0)]), 16, false, 0, 1.0);
    let block = output_block(64, 64, vec![t], &[vec![0; 200]]);
    // 200 bytes take 4 lines (the last holds 8); cut the last line, or all but 7 of its bytes
    for cut in [64, 57] {
        let r = parse_output(&block[..block.len() - cut], 64);
        assert!(
            matches!(
                r,
                Err(TensorError::Truncated {
                    what: "output tensor data",
                    ..
                })
            ),
            "{cut}: {r:?}"
        );
    }
    // the last line may stop right after the tensor's last element
    let last_line_data = 200 - 3 * 64;
    assert!(parse_output(&block[..block.len() - 64 + last_line_data], 64).is_ok());
    // and the line padding after it is not needed
    assert!(parse_output(&block[..block.len() - 1], 64).is_ok());
}

#[test]
fn a_frame_without_an_output_header_gives_no_output() {
    // all zeros: line 1 reads as an input header not marked valid
    assert_eq!(
        parse_frame(&[0u8; 640], 64, false),
        Err(TensorError::NoOutput)
    );
    // a frame of an input tensor only
    let l = layout(64, 64, Some(spec(4, 4, 1)));
    let v = values_for(&l.outputs, &mut Rng(11));
    let frame = l.frame(1, Kpi::default(), Some(&planar(16)), &v).unwrap();
    let ap_lines = (12 + l.ap_params().len()).div_ceil(64);
    let input_end = 64 * (1 + ap_lines + 1);
    assert_eq!(
        parse_frame(&frame[..input_end], 64, true),
        Err(TensorError::NoOutput)
    );
    // an output header of another frame count than the input's is not this frame's output
    let mut other = frame.clone();
    other[input_end + 1] ^= 0xFF;
    assert_eq!(parse_frame(&other, 64, true), Err(TensorError::NoOutput));
    assert!(parse_frame(&frame, 64, true).is_ok());
}

#[test]
fn bad_input_tensors_are_refused() {
    let o = vec![simple()];
    let block_with = |input: T| {
        let d = ap(vec![network(7, vec![input], o.clone())]);
        tensor_block(
            64,
            header(1, 0, 64, d.len() as u16, 7, 0),
            &d,
            &vec![vec![0; 64]; 64],
        )
    };
    // two dimensions
    let two = input_with(vec![dim(1, 4, 0, 0), dim(0, 4, 1, 0)]);
    let m = is_ap_params(parse_input(&block_with(two), 64));
    assert!(m.contains("2 dimensions"), "{m}");
    // a side over 1280
    for (w, h) in [(1281u16, 4u16), (4, 1281), (0, 4), (4, 0)] {
        let m = is_ap_params(parse_input(&block_with(input(w, h, 3, 0, 0)), 64));
        assert!(m.contains(&format!("{w}x{h}")), "{m}");
    }
    // channels other than 1, 3 or 4
    for c in [0u16, 2, 5] {
        is_ap_params(parse_input(&block_with(input(4, 4, c, 0, 0)), 64));
    }
    // a serialization index past 2
    let bad = input_with(vec![dim(2, 4, 0, 0), dim(1, 4, 1, 0), dim(0, 3, 3, 0)]);
    is_ap_params(parse_input(&block_with(bad), 64));
    // no input described
    let d = ap(vec![network(7, Vec::new(), o.clone())]);
    let b = tensor_block(64, header(1, 0, 64, d.len() as u16, 7, 0), &d, &[]);
    is_ap_params(parse_input(&b, 64));
    // the sides are fine, the data is short
    let ok = block_with(input(4, 4, 3, 0, 0));
    assert!(parse_input(&ok, 64).is_ok());
    let d_len = ap(vec![network(7, vec![input(64, 64, 3, 0, 0)], o.clone())]).len();
    let short = block_with(input(64, 64, 3, 0, 0));
    assert!(short.len() < (12 + d_len).div_ceil(64) * 64 + 64 * 64 * 3);
    assert!(matches!(
        parse_input(&short, 64),
        Err(TensorError::Truncated {
            what: "input tensor data",
            ..
        })
    ));
}

#[test]
fn errors_format_to_a_message() {
    let cases = [
        TensorError::Stride(3),
        TensorError::NoOutput,
        TensorError::NotValid("output"),
        TensorError::UnknownNetwork(4),
        TensorError::ApParams("x".into()),
    ];
    for e in cases {
        assert!(!e.to_string().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid frames: Ok or Err, never a panic
// ---------------------------------------------------------------------------------------------

fn mutate(base: &[u8], donor: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if m.is_empty() {
            break;
        }
        match rng.below(6) {
            0 => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                // a byte of the headers or the descriptor: where the structure is
                let i = rng.below(m.len().min(512));
                m[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(m.len());
                m[i] = [0, 1, 0x7F, 0x80, 0xFF][rng.below(5)];
            }
            3 => {
                let n = rng.below(m.len() + 1);
                m.truncate(n);
            }
            4 => {
                // overwrite a range with bytes from elsewhere in a frame
                let from = rng.below(donor.len());
                let n = rng.below(64).min(donor.len() - from);
                let to = rng.below(m.len());
                let n = n.min(m.len() - to);
                m[to..to + n].copy_from_slice(&donor[from..from + n]);
            }
            _ => {
                // insert bytes from elsewhere (shifts everything after)
                let from = rng.below(donor.len());
                let n = rng.below(96).min(donor.len() - from);
                let to = rng.below(m.len() + 1);
                let chunk = donor[from..from + n].to_vec();
                m.splice(to..to, chunk);
            }
        }
    }
    m
}

#[test]
fn mutated_frames_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let small = {
        let l = Layout {
            outputs: super::ssd_outputs(6),
            ..layout(64, 60, Some(spec(6, 4, 3)))
        };
        let v = values_for(&l.outputs, &mut rng);
        l.frame(2, Kpi::default(), Some(&planar(72)), &v).unwrap()
    };
    let mixed = {
        let l = layout(64, 64, None);
        let v = values_for(&l.outputs, &mut rng);
        l.frame(3, Kpi::default(), None, &v).unwrap()
    };
    let wide = {
        let l = layout(STRIDE_2560, 2560, Some(spec(8, 8, 1)));
        let v = values_for(&l.outputs, &mut rng);
        l.frame(4, Kpi::default(), Some(&planar(64)), &v).unwrap()
    };
    let bases: [(&[u8], usize); 3] = [(&small, 64), (&mixed, 64), (&wide, STRIDE_2560)];
    for (base, stride) in bases {
        assert!(parse_frame(base, stride, true).is_ok());
    }
    let (mut ok, mut err) = (0, 0);
    for i in 0..2000 {
        let (base, stride) = bases[i % 3];
        let donor = bases[rng.below(3)].0;
        let m = mutate(base, donor, &mut rng);
        let want_input = i % 2 == 0;
        let r = std::panic::catch_unwind(|| {
            let frame = parse_frame(&m, stride, want_input);
            for l in 0..m.len().div_ceil(stride).min(8) {
                let _ = parse_output(&m[l * stride..], stride);
                let _ = parse_input(&m[l * stride..], stride);
            }
            frame
        });
        match r {
            Ok(Ok(f)) => {
                ok += 1;
                for t in &f.outputs.tensors {
                    assert_eq!(t.data.len(), t.info.elements());
                }
                if let Some(img) = f.input {
                    assert_eq!(
                        img.planes.len(),
                        (img.width * img.height * img.channels) as usize
                    );
                    assert_eq!(img.to_rgb().len(), (img.width * img.height * 3) as usize);
                }
            }
            Ok(Err(e)) => {
                err += 1;
                assert!(!e.to_string().is_empty());
            }
            Err(_) => panic!("mutation {i} (stride {stride}, {} bytes) panicked", m.len()),
        }
    }
    // both outcomes are reached: the mutations are neither all harmless nor all fatal
    assert!(ok > 100 && err > 100, "{ok} ok, {err} errors");
}

// ---------------------------------------------------------------------------------------------
// Capture files
// ---------------------------------------------------------------------------------------------

const HEAD: usize = 16;
const RECORD_HEAD: usize = 20;

fn record_data(i: usize) -> Vec<u8> {
    (0..100 + 10 * i)
        .map(|j| (i * 31 + j) as u8 % 0x40)
        .collect()
}

/// A capture of 5 records; its bytes and where each record starts.
fn capture(dir: &tempfile::TempDir) -> (std::path::PathBuf, Vec<u8>, Vec<usize>) {
    let path = dir.path().join("t.imx500");
    let mut w = CaptureWriter::create(&path, 64).unwrap();
    let mut starts = Vec::new();
    let mut at = HEAD;
    for i in 0..5 {
        w.write(Duration::from_millis(33 * i as u64), &record_data(i))
            .unwrap();
        starts.push(at);
        at += RECORD_HEAD + record_data(i).len();
    }
    let (frames, bytes) = w.finish().unwrap();
    assert_eq!((frames, bytes), (5, at as u64));
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len(), at);
    (path, data, starts)
}

/// The indices of the records read (by their contents) and the skipped count.
fn read_all(path: &std::path::Path) -> (Vec<usize>, u64) {
    let mut r = CaptureReader::open(path).unwrap();
    assert_eq!(r.stride(), 64);
    let mut got = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let i = (0..5).find(|&i| record_data(i) == rec.data).unwrap();
        assert_eq!(rec.t, Duration::from_millis(33 * i as u64));
        got.push(i);
    }
    // the end stays the end
    assert_eq!(r.next_record().unwrap(), None);
    (got, r.skipped())
}

#[test]
fn a_capture_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = capture(&dir);
    assert_eq!(read_all(&path), (vec![0, 1, 2, 3, 4], 0));
}

#[test]
fn a_record_with_a_bad_crc_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut data, starts) = capture(&dir);
    data[starts[2] + RECORD_HEAD + 17] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    assert_eq!(read_all(&path), (vec![0, 1, 3, 4], 1));
}

#[test]
fn a_damaged_record_marker_resyncs_on_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut data, starts) = capture(&dir);
    data[starts[3]] = b'X'; // FRAM -> XRAM
    std::fs::write(&path, &data).unwrap();
    assert_eq!(read_all(&path), (vec![0, 1, 2, 4], 1));
    // a length beyond the bound is a damaged header too
    let (path, mut data, starts) = capture(&dir);
    put(&mut data, starts[1] + 4, &u32::MAX.to_le_bytes());
    std::fs::write(&path, &data).unwrap();
    assert_eq!(read_all(&path), (vec![0, 2, 3, 4], 1));
}

#[test]
fn a_torn_last_record_ends_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data, starts) = capture(&dir);
    std::fs::write(&path, &data[..starts[4] + RECORD_HEAD + 50]).unwrap();
    assert_eq!(read_all(&path), (vec![0, 1, 2, 3], 1));
    // cut inside the record header: the end, nothing to count
    std::fs::write(&path, &data[..starts[4] + 7]).unwrap();
    assert_eq!(read_all(&path), (vec![0, 1, 2, 3], 0));
}

#[test]
fn a_file_that_is_not_a_capture_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut data, _) = capture(&dir);
    data[0] = b'X';
    std::fs::write(&path, &data).unwrap();
    let e = CaptureReader::open(&path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("not a tensor capture"), "{e}");

    std::fs::write(&path, &data[..10]).unwrap();
    let e = CaptureReader::open(&path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");

    let missing = dir.path().join("missing.imx500");
    let e = CaptureReader::open(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.imx500"), "{e}");
}

#[test]
fn a_capture_of_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut data, _) = capture(&dir);
    put(&mut data, 8, &2u16.to_le_bytes());
    std::fs::write(&path, &data).unwrap();
    let e = CaptureReader::open(&path).unwrap_err().to_string();
    assert!(e.contains("version 2"), "{e}");
    assert!(e.contains(&path.display().to_string()), "{e}");
}

#[test]
fn a_capture_whose_header_gives_an_impossible_stride_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut data, _) = capture(&dir);
    for stride in [0u32, 12, 63, 65_536, u32::MAX] {
        put(&mut data, 10, &stride.to_le_bytes());
        std::fs::write(&path, &data).unwrap();
        let e = CaptureReader::open(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("line stride {stride}")), "{e}");
    }
}

#[test]
fn an_output_tensor_with_a_scale_that_is_not_a_number_is_refused() {
    for scale in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let t = output("nan", dims(&[(4, 0)]), 8, false, 0, scale);
        let m = is_ap_params(one(64, 64, t, vec![1, 2, 3, 4]));
        assert!(m.contains("not a finite number"), "{m}");
    }
    let t = output("ok", dims(&[(4, 0)]), 8, false, 0, 0.5);
    assert_eq!(
        one(64, 64, t, vec![1, 2, 3, 4]).unwrap().tensors[0].data,
        [0.5, 1.0, 1.5, 2.0]
    );
}

// ---------------------------------------------------------------------------------------------
// Imx500Inference
// ---------------------------------------------------------------------------------------------

mod inference {
    use std::time::{Duration, SystemTime};

    use ocellus_core::{Frame, Inference};

    use super::super::encode::Layout;
    use super::super::format::{Kpi, STRIDE_2560};
    use super::super::{Imx500Inference, ssd_outputs};
    use crate::card::ModelCard;
    use crate::error::Error;
    use crate::infer::DetectorOptions;

    /// Two boxes (ymin, xmin, ymax, xmax): a person (class 1, 0.9) and a car (class 3, 0.8), and a
    /// third below the threshold.
    fn ssd_frame() -> Vec<u8> {
        let n = 100usize;
        let l = Layout {
            stride: STRIDE_2560,
            max_line_len: 2560,
            network_id: 1,
            network: "ssd".into(),
            input: None,
            outputs: ssd_outputs(n as u16),
        };
        let mut boxes = vec![0f32; 4 * n];
        boxes[..4].copy_from_slice(&[0.1, 0.2, 0.5, 0.6]);
        boxes[4..8].copy_from_slice(&[0.3, 0.05, 0.9, 0.45]);
        boxes[8..12].copy_from_slice(&[0.0, 0.0, 1.0, 1.0]);
        let mut scores = vec![0f32; n];
        scores[..3].copy_from_slice(&[0.9, 0.8, 0.2]);
        let mut classes = vec![0f32; n];
        classes[..3].copy_from_slice(&[1.0, 3.0, 1.0]);
        let kpi = Kpi {
            dnn_runtime_us: 7000,
            dsp_runtime_us: 900,
        };
        l.frame(0, kpi, None, &[boxes, scores, classes, vec![3.0]])
            .unwrap()
    }

    fn frame(data: Vec<u8>) -> Frame {
        Frame::from_sensor(0, SystemTime::UNIX_EPOCH, Duration::ZERO, data)
    }

    fn close(a: [f32; 4], b: [f32; 4]) -> bool {
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-3)
    }

    #[test]
    fn detections_come_from_the_sensor_tensors() {
        let card = ModelCard::builtin_ssd().unwrap();
        let mut inf =
            Imx500Inference::new(&card, &DetectorOptions::default(), STRIDE_2560).unwrap();
        let dets = inf.infer_frame(&frame(ssd_frame())).unwrap();
        assert_eq!(dets.len(), 2, "{dets:?}");
        let person = dets.iter().find(|d| &*d.label == "person").unwrap();
        let car = dets.iter().find(|d| &*d.label == "car").unwrap();
        assert_eq!((person.class_id, car.class_id), (1, 3));
        assert!((person.score - 0.9).abs() < 0.01, "{}", person.score);
        assert!((car.score - 0.8).abs() < 0.01, "{}", car.score);
        assert!(
            close(person.bbox, [0.2, 0.1, 0.6, 0.5]),
            "{:?}",
            person.bbox
        );
        assert!(close(car.bbox, [0.05, 0.3, 0.45, 0.9]), "{:?}", car.bbox);
        assert_eq!(inf.last_kpi().dnn_runtime_us, 7000);
        assert_eq!(inf.last_kpi().dsp_runtime_us, 900);
        assert!(inf.describe().contains("IMX500"));
    }

    #[test]
    fn the_label_filter_applies() {
        let card = ModelCard::builtin_ssd().unwrap();
        let opts = DetectorOptions {
            labels: Some(vec!["person".into()]),
            ..DetectorOptions::default()
        };
        let mut inf = Imx500Inference::new(&card, &opts, STRIDE_2560).unwrap();
        let dets = inf.detect(&ssd_frame()).unwrap();
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert_eq!(&*dets[0].label, "person");
    }

    #[test]
    fn the_threshold_option_applies() {
        let card = ModelCard::builtin_ssd().unwrap();
        let opts = DetectorOptions {
            score_threshold: Some(0.85),
            ..DetectorOptions::default()
        };
        let mut inf = Imx500Inference::new(&card, &opts, STRIDE_2560).unwrap();
        let dets = inf.detect(&ssd_frame()).unwrap();
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert_eq!(&*dets[0].label, "person");
        assert_eq!(inf.score_threshold(), 0.85);
    }

    #[test]
    fn a_frame_without_sensor_data_is_an_error() {
        let card = ModelCard::builtin_ssd().unwrap();
        let mut inf =
            Imx500Inference::new(&card, &DetectorOptions::default(), STRIDE_2560).unwrap();
        let mut f = frame(Vec::new());
        f.sensor_data = None;
        let e = inf.infer_frame(&f).unwrap_err().to_string();
        assert!(e.contains("no on-sensor results"), "{e}");
        // malformed lines are an error too, not a panic
        assert!(inf.infer_frame(&frame(vec![0; 100])).is_err());
        let mut cut = ssd_frame();
        cut.truncate(cut.len() / 2);
        assert!(matches!(inf.detect(&cut), Err(Error::SensorData(_))));
    }

    #[test]
    fn tensors_that_are_not_an_ssd_are_an_error() {
        let card = ModelCard::builtin_ssd().unwrap();
        let mut inf =
            Imx500Inference::new(&card, &DetectorOptions::default(), STRIDE_2560).unwrap();
        let mut outputs = ssd_outputs(10);
        outputs.pop();
        let l = Layout {
            stride: STRIDE_2560,
            max_line_len: 2560,
            network_id: 1,
            network: "ssd".into(),
            input: None,
            outputs,
        };
        let data = l
            .frame(
                0,
                Kpi::default(),
                None,
                &[vec![0.0; 40], vec![0.0; 10], vec![0.0; 10]],
            )
            .unwrap();
        assert!(matches!(inf.detect(&data), Err(Error::ModelOutput { .. })));
    }

    #[test]
    fn a_card_with_another_decoder_is_refused() {
        let cut = ModelCard::builtin_ssd_cut().unwrap();
        assert!(matches!(
            cut.output,
            crate::card::OutputSpec::TfSsdRaw { .. }
        ));
        let r = Imx500Inference::new(&cut, &DetectorOptions::default(), STRIDE_2560);
        assert!(matches!(r, Err(Error::CardInvalid { .. })), "{r:?}");
        let face = ModelCard::builtin_blazeface().unwrap();
        let r = Imx500Inference::new(&face, &DetectorOptions::default(), STRIDE_2560);
        assert!(matches!(r, Err(Error::CardInvalid { .. })), "{r:?}");
        // a stride that cannot hold a header
        let card = ModelCard::builtin_ssd().unwrap();
        let r = Imx500Inference::new(&card, &DetectorOptions::default(), 12);
        assert!(matches!(r, Err(Error::InvalidOption { .. })), "{r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds of the fuzz target (sdk/fuzz/fuzz_targets/imx500_tensor.rs)
// ---------------------------------------------------------------------------------------------

/// Writes `sdk/fuzz/seeds/imx500_tensor/*`: small valid frames, most with 64-byte lines, behind
/// the target's two bytes (byte 0: 0 picks a 64-byte stride, 1 a 2560-byte one; byte 1: bit 7
/// reads the rest as capture records, bit 0 then asks for the input). Run by hand:
/// `cargo test -p ocellus --lib imx500::tests::write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes the fuzz seeds into the source tree"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/imx500_tensor");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x5EED);
    let ssd = Layout {
        outputs: super::ssd_outputs(4),
        ..layout(64, 64, Some(spec(4, 3, 3)))
    };
    let mixed = Layout {
        outputs: vec![
            out_info(0, "r2", &[(3, 1), (4, 0)], 16, true, 5, 0.01),
            out_info(1, "r3", &[(2, 2), (3, 0), (2, 1)], 32, false, 7, 0.5),
            out_info(2, "u8", &[(70, 0)], 8, false, 0, 1.0),
        ],
        ..layout(64, 60, None)
    };
    let narrow_input = Layout {
        outputs: vec![out_info(0, "o", &[(2, 0)], 8, true, 0, 1.0)],
        ..layout(64, 32, Some(spec(9, 5, 1)))
    };
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let frame = |l: &Layout, input: Option<&[u8]>, rng: &mut Rng| {
        let v = values_for(&l.outputs, rng);
        l.frame(1, Kpi::default(), input, &v).unwrap()
    };
    let with = |flags: u8, data: &[u8]| {
        let mut s = vec![0u8, flags];
        s.extend_from_slice(data);
        s
    };
    let wide = Layout {
        outputs: vec![out_info(0, "o", &[(3, 1), (2, 0)], 16, true, 1, 0.5)],
        ..layout(STRIDE_2560, 2560, None)
    };
    let wide_frame = frame(&wide, None, &mut rng);
    let wide_seed = {
        let mut s = vec![1u8, 0];
        s.extend_from_slice(&wide_frame);
        s
    };
    let ssd_frame = frame(&ssd, Some(&planar(36)), &mut rng);
    seeds.push(("ssd-input", with(0, &ssd_frame)));
    seeds.push(("ssd-no-input", with(0, &frame(&ssd, None, &mut rng))));
    seeds.push(("mixed", with(0, &frame(&mixed, None, &mut rng))));
    seeds.push((
        "narrow-input",
        with(0, &frame(&narrow_input, Some(&planar(45)), &mut rng)),
    ));
    seeds.push(("wide", wide_seed));
    // a capture body: two records of the same frame
    let mut records = Vec::new();
    for t in [0u64, 33_000] {
        records.extend_from_slice(b"FRAM");
        records.extend_from_slice(&(ssd_frame.len() as u32).to_le_bytes());
        records.extend_from_slice(&t.to_le_bytes());
        records.extend_from_slice(&crc32fast::hash(&ssd_frame).to_le_bytes());
        records.extend_from_slice(&ssd_frame);
    }
    seeds.push(("capture", with(0x81, &records)));
    for (name, bytes) in seeds {
        assert!(bytes.len() < 8 * 1024, "{name}: {} bytes", bytes.len());
        std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
    }
}
