//! A minimal ONNX (protobuf) writer, enough to build test graphs whose outputs are known
//! constants. Field numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto, …).

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(((field as u64) << 3) | wire as u64, out);
}
fn int(field: u32, v: i64, out: &mut Vec<u8>) {
    key(field, 0, out);
    varint(v as u64, out);
}
fn bytes(field: u32, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

const FLOAT: i64 = 1;
const ATTR_TENSOR: i64 = 4;

fn tensor(dims: &[i64], data: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        int(1, d, &mut t); // dims
    }
    int(2, FLOAT, &mut t); // data_type
    let raw: Vec<u8> = data.iter().flat_map(|f| f.to_le_bytes()).collect();
    bytes(9, &raw, &mut t); // raw_data
    t
}

fn value_info(name: &str, dims: &[i64]) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in dims {
        let mut dim = Vec::new();
        int(1, d, &mut dim); // dim_value
        bytes(1, &dim, &mut shape); // TensorShapeProto.dim
    }
    let mut tt = Vec::new();
    int(1, FLOAT, &mut tt); // elem_type
    bytes(2, &shape, &mut tt); // shape
    let mut ty = Vec::new();
    bytes(1, &tt, &mut ty); // TypeProto.tensor_type
    let mut vi = Vec::new();
    bytes(1, name.as_bytes(), &mut vi);
    bytes(2, &ty, &mut vi);
    vi
}

/// A model with one float input `input` of `in_dims` (unused) and one output `output` that is the
/// constant `data` of shape `out_dims`.
pub fn constant_model(
    input: &str,
    in_dims: &[i64],
    output: &str,
    out_dims: &[i64],
    data: &[f32],
) -> Vec<u8> {
    let mut attr = Vec::new();
    bytes(1, b"value", &mut attr); // name
    bytes(5, &tensor(out_dims, data), &mut attr); // t
    int(20, ATTR_TENSOR, &mut attr); // type
    let mut node = Vec::new();
    bytes(2, output.as_bytes(), &mut node); // output
    bytes(3, b"const", &mut node); // name
    bytes(4, b"Constant", &mut node); // op_type
    bytes(5, &attr, &mut node); // attribute
    let mut graph = Vec::new();
    bytes(1, &node, &mut graph);
    bytes(2, b"ocellus-test", &mut graph);
    bytes(11, &value_info(input, in_dims), &mut graph);
    bytes(12, &value_info(output, out_dims), &mut graph);
    let mut opset = Vec::new();
    bytes(1, b"", &mut opset);
    int(2, 13, &mut opset);
    let mut model = Vec::new();
    int(1, 8, &mut model); // ir_version
    bytes(2, b"ocellus-tests", &mut model); // producer_name
    bytes(7, &graph, &mut model);
    bytes(8, &opset, &mut model);
    model
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One field of a protobuf message: its number, and either a varint or the byte range of a
/// length-delimited payload within the buffer.
enum Field {
    Varint(u32, u64),
    Bytes(u32, std::ops::Range<usize>),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The fields of the message in `buf[range]` (fixed-width fields are skipped).
fn fields(buf: &[u8], range: std::ops::Range<usize>) -> Vec<Field> {
    let mut out = Vec::new();
    let mut pos = range.start;
    while pos < range.end {
        let Some(key) = read_varint(buf, &mut pos) else {
            break;
        };
        let (field, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => match read_varint(buf, &mut pos) {
                Some(v) => out.push(Field::Varint(field, v)),
                None => break,
            },
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let Some(len) = read_varint(buf, &mut pos) else {
                    break;
                };
                let end = pos + len as usize;
                out.push(Field::Bytes(field, pos..end));
                pos = end;
            }
            _ => break,
        }
    }
    out
}

fn graph_range(model: &[u8]) -> std::ops::Range<usize> {
    fields(model, 0..model.len())
        .into_iter()
        .find_map(|f| match f {
            Field::Bytes(7, r) => Some(r), // ModelProto.graph
            _ => None,
        })
        .expect("an ONNX model has a graph")
}

/// The float initializers of a model stored as `raw_data`: name and byte range of the data, so a
/// test can change weights in place (the file keeps its layout).
pub fn float_initializers(model: &[u8]) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    for f in fields(model, graph_range(model)) {
        let Field::Bytes(5, t) = f else { continue }; // GraphProto.initializer
        let (mut name, mut float, mut raw) = (String::new(), false, None);
        for tf in fields(model, t) {
            match tf {
                Field::Varint(2, v) => float = v == FLOAT as u64, // data_type
                Field::Bytes(8, r) => name = String::from_utf8_lossy(&model[r]).into_owned(),
                Field::Bytes(9, r) => raw = Some(r), // raw_data
                _ => {}
            }
        }
        if let (true, Some(r)) = (float, raw) {
            out.push((name, r));
        }
    }
    out
}

/// The weight input (the second input) of every `Conv` node, in graph order.
pub fn conv_weights(model: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for f in fields(model, graph_range(model)) {
        let Field::Bytes(1, n) = f else { continue }; // GraphProto.node
        let (mut inputs, mut op) = (Vec::new(), String::new());
        for nf in fields(model, n) {
            match nf {
                Field::Bytes(1, r) => inputs.push(String::from_utf8_lossy(&model[r]).into_owned()),
                Field::Bytes(4, r) => op = String::from_utf8_lossy(&model[r]).into_owned(),
                _ => {}
            }
        }
        if let (true, Some(w)) = (op == "Conv", inputs.get(1)) {
            out.push(w.clone());
        }
    }
    out
}

/// Apply `f` to every f32 in `bytes[range]` (little-endian).
pub fn map_floats(
    bytes: &mut [u8],
    range: std::ops::Range<usize>,
    mut f: impl FnMut(usize, f32) -> f32,
) {
    for (i, c) in bytes[range].chunks_exact_mut(4).enumerate() {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        c.copy_from_slice(&f(i, v).to_le_bytes());
    }
}
