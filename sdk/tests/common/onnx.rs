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
