//! The IMX500's DNN output, as it arrives in the embedded-data lines of a frame: parsing it.
//!
//! Facts (from Raspberry Pi's libcamera IPA `imx500_tensor_parser`, BSD-2, and Sony's IMX501
//! parser; the code here is our own):
//! - The data is a sequence of lines of a fixed **stride** (2560 bytes with current drivers, 4064
//!   with older ones). Line 0 holds KPI counters (`u32` words; DNN runtime at word 9, DSP runtime
//!   at word 10, in microseconds). Then comes the input tensor (what the network saw), then the
//!   output tensor.
//! - Each tensor starts with a 12-byte **DNN header**: `frame_valid: u8`, `frame_count: u8`,
//!   `max_line_len: u16`, `ap_param_size: u16`, `network_id: u16`, `tensor_type: u8` (0 input, 1
//!   output, 2 KPI), 3 reserved bytes; little-endian.
//! - `ap_param_size` bytes of **apParams** follow the header: a FlatBuffers descriptor of the
//!   networks (id, name, type, input and output tensors; per tensor: dimensions with ordinal, size,
//!   serialization index and padding, bits per element, signedness, scale and shift).
//! - The tensor data starts on the next line. Each line carries `max_line_len` bytes of data; each
//!   tensor starts on a line of its own. An element is `(raw - shift) * scale`.
//! - Elements arrive in serialization order (the dimension with serialization index 0 varies
//!   fastest); they are put back in the order of the dimension list, the first dimension varying
//!   fastest. The numpy shape a host sees is the dimension list reversed.
//!
//! Everything here is bounds-checked: a malformed frame is a [`TensorError`], never a panic or an
//! allocation the data asks for beyond [`MAX_ELEMENTS`].

use super::flatbuf::Table;

/// Bytes of a DNN header.
pub const DNN_HEADER_LEN: usize = 12;
/// The line stride of current Raspberry Pi IMX500 drivers.
pub const STRIDE_2560: usize = 2560;
/// The line stride of older drivers.
pub const STRIDE_4064: usize = 4064;
/// Most output elements a frame may have (all tensors together), to bound what a hostile header
/// can make us allocate.
pub const MAX_ELEMENTS: usize = 1 << 22;
/// Most networks in a descriptor.
pub const MAX_NETWORKS: usize = 16;
/// Most tensors of one kind in a network.
pub const MAX_TENSORS: usize = 32;
/// Most dimensions of a tensor.
pub const MAX_DIMS: usize = 8;
/// Longest name kept from a descriptor.
pub const MAX_NAME: usize = 256;
/// Largest input tensor side (the sensor's limit in libcamera's parser).
pub const MAX_INPUT_SIDE: u16 = 1280;

/// What is wrong with a frame's tensor data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// The stride is not usable.
    #[error("line stride {0} is not usable (at least {min} bytes)", min = DNN_HEADER_LEN + 1)]
    Stride(usize),
    /// Fewer bytes than the layout needs.
    #[error("{what} needs {need} bytes, the frame's tensor data has {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        have: usize,
    },
    /// A header of an unexpected tensor type where a tensor of another type was expected.
    #[error("expected a {expected} tensor header, found tensor type {found}")]
    TensorType {
        /// The type wanted.
        expected: &'static str,
        /// The type byte found.
        found: u8,
    },
    /// The sensor marked the tensor not valid for this frame (the network was still busy).
    #[error("the sensor marked the {0} tensor of this frame not valid")]
    NotValid(&'static str),
    /// No output tensor header in the frame's data.
    #[error("no output tensor in the frame's tensor data")]
    NoOutput,
    /// `max_line_len` does not fit the stride or the element size.
    #[error("max line length {max_line_len} does not fit: {why}")]
    LineLength {
        /// The header's value.
        max_line_len: u16,
        /// Why not.
        why: String,
    },
    /// The apParams descriptor is malformed.
    #[error("apParams: {0}")]
    ApParams(String),
    /// The header's network id is not in the descriptor.
    #[error("network id {0} is not in the apParams descriptor")]
    UnknownNetwork(u16),
    /// A tensor description the parser cannot use.
    #[error("tensor {index} ({name}): {why}")]
    Tensor {
        /// Position in the network's list.
        index: usize,
        /// Its name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, TensorError>;

impl From<TensorError> for crate::error::Error {
    fn from(e: TensorError) -> Self {
        crate::error::Error::SensorData(e.to_string())
    }
}

/// What a DNN header says a tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// The network's input (the picture it saw).
    Input,
    /// The network's output.
    Output,
    /// KPI counters.
    Kpi,
    /// Any other value.
    Other(u8),
}

impl TensorType {
    /// From the header byte.
    pub fn from_byte(b: u8) -> TensorType {
        match b {
            0 => TensorType::Input,
            1 => TensorType::Output,
            2 => TensorType::Kpi,
            other => TensorType::Other(other),
        }
    }
    /// The header byte.
    pub fn byte(self) -> u8 {
        match self {
            TensorType::Input => 0,
            TensorType::Output => 1,
            TensorType::Kpi => 2,
            TensorType::Other(b) => b,
        }
    }
}

/// The 12-byte header in front of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnnHeader {
    /// The sensor finished this tensor for this frame.
    pub frame_valid: bool,
    /// The sensor's frame counter (wraps at 256).
    pub frame_count: u8,
    /// Bytes of data in each line (the rest of the stride is padding).
    pub max_line_len: u16,
    /// Bytes of the apParams descriptor after the header.
    pub ap_param_size: u16,
    /// The network the tensor belongs to.
    pub network_id: u16,
    /// What the tensor is.
    pub tensor_type: TensorType,
}

impl DnnHeader {
    /// Read a header from the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<DnnHeader> {
        let h = bytes.get(..DNN_HEADER_LEN).ok_or(TensorError::Truncated {
            what: "a DNN header",
            need: DNN_HEADER_LEN,
            have: bytes.len(),
        })?;
        let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        Ok(DnnHeader {
            frame_valid: h[0] != 0,
            frame_count: h[1],
            max_line_len: le(2),
            ap_param_size: le(4),
            network_id: le(6),
            tensor_type: TensorType::from_byte(h[8]),
        })
    }

    /// The 12 bytes.
    pub fn to_bytes(&self) -> [u8; DNN_HEADER_LEN] {
        let mut h = [0u8; DNN_HEADER_LEN];
        h[0] = u8::from(self.frame_valid);
        h[1] = self.frame_count;
        h[2..4].copy_from_slice(&self.max_line_len.to_le_bytes());
        h[4..6].copy_from_slice(&self.ap_param_size.to_le_bytes());
        h[6..8].copy_from_slice(&self.network_id.to_le_bytes());
        h[8] = self.tensor_type.byte();
        h
    }
}

/// One dimension of a tensor, as the descriptor gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimension {
    /// The dimension's id (its position in the tensor's shape).
    pub ordinal: u8,
    /// Number of elements along it.
    pub size: u16,
    /// Where it comes in the serialized order (0: varies fastest).
    pub serialization_index: u8,
    /// Padding elements after each run along it (inputs only; an output must have none).
    pub padding: u8,
}

/// How an output tensor is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensorInfo {
    /// Its id.
    pub id: u8,
    /// Its name.
    pub name: String,
    /// Its dimensions, the first varying fastest once decoded.
    pub dims: Vec<Dimension>,
    /// Bits per element: 8, 16 or 32.
    pub bits: u8,
    /// Whether elements are signed (descriptor `format` 0) or unsigned (1).
    pub signed: bool,
    /// Subtracted from the raw value.
    pub shift: u16,
    /// Multiplies `raw - shift`.
    pub scale: f32,
}

impl OutputTensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.dims
            .iter()
            .fold(1usize, |n, d| n.saturating_mul(usize::from(d.size)))
    }
    /// The shape a host sees (numpy order: the last dimension varies fastest).
    pub fn shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|d| usize::from(d.size))
            .collect()
    }
}

/// How the input tensor (the picture the network saw) is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensorInfo {
    /// Its name.
    pub name: String,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Channels: 1, 3 or 4.
    pub channels: u16,
    /// Bytes per row, padding included.
    pub width_stride: usize,
    /// Rows per plane, padding included.
    pub height_stride: usize,
}

/// One network of the descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The id DNN headers refer to.
    pub id: u16,
    /// Its name.
    pub name: String,
    /// Its type string (e.g. the model's name).
    pub kind: String,
    /// Its input tensor, when described.
    pub input: Option<InputTensorInfo>,
    /// Its output tensors, in order.
    pub outputs: Vec<OutputTensorInfo>,
}

// vtable slots of the apParams schema (FBApParams, FBNetwork, FBInputTensor, FBOutputTensor,
// FBDimension), as the generated code numbers them
pub(super) mod slot {
    pub const AP_NETWORKS: u16 = 4;
    pub const NET_ID: u16 = 4;
    pub const NET_NAME: u16 = 6;
    pub const NET_TYPE: u16 = 8;
    pub const NET_INPUTS: u16 = 10;
    pub const NET_OUTPUTS: u16 = 12;
    pub const IN_ID: u16 = 4;
    pub const IN_NAME: u16 = 6;
    pub const IN_NUM_DIMS: u16 = 8;
    pub const IN_DIMS: u16 = 10;
    pub const IN_SHIFT: u16 = 12;
    pub const IN_SCALE: u16 = 14;
    pub const IN_FORMAT: u16 = 16;
    pub const OUT_ID: u16 = 4;
    pub const OUT_NAME: u16 = 6;
    pub const OUT_NUM_DIMS: u16 = 8;
    pub const OUT_DIMS: u16 = 10;
    pub const OUT_BITS: u16 = 12;
    pub const OUT_SHIFT: u16 = 14;
    pub const OUT_SCALE: u16 = 16;
    pub const OUT_FORMAT: u16 = 18;
    pub const DIM_ID: u16 = 4;
    pub const DIM_SIZE: u16 = 6;
    pub const DIM_SER: u16 = 8;
    pub const DIM_PAD: u16 = 10;
}

fn dims(t: &Table<'_>, slot: u16) -> Result<Vec<Dimension>> {
    t.tables(usize::from(slot), MAX_DIMS)?
        .iter()
        .map(|d| {
            Ok(Dimension {
                ordinal: d.u8(usize::from(slot::DIM_ID))?,
                size: d.u16(usize::from(slot::DIM_SIZE))?,
                serialization_index: d.u8(usize::from(slot::DIM_SER))?,
                padding: d.u8(usize::from(slot::DIM_PAD))?,
            })
        })
        .collect()
}

fn input_info(t: &Table<'_>) -> Result<InputTensorInfo> {
    let name = t.string(usize::from(slot::IN_NAME), MAX_NAME)?;
    let mut info = InputTensorInfo {
        name,
        width: 0,
        height: 0,
        channels: 0,
        width_stride: 0,
        height_stride: 0,
    };
    let ds = dims(t, slot::IN_DIMS)?;
    if ds.len() != 3 {
        return Err(TensorError::ApParams(format!(
            "the input tensor has {} dimensions, not 3 (width, height, channels)",
            ds.len()
        )));
    }
    for d in ds {
        let padded = usize::from(d.size) + usize::from(d.padding);
        match d.serialization_index {
            0 => (info.width, info.width_stride) = (d.size, padded),
            1 => (info.height, info.height_stride) = (d.size, padded),
            2 => info.channels = d.size,
            other => {
                return Err(TensorError::ApParams(format!(
                    "input dimension with serialization index {other} (0..=2)"
                )));
            }
        }
    }
    Ok(info)
}

fn output_info(t: &Table<'_>) -> Result<OutputTensorInfo> {
    let num = t.u8(usize::from(slot::OUT_NUM_DIMS))?;
    let dims = dims(t, slot::OUT_DIMS)?;
    let name = t.string(usize::from(slot::OUT_NAME), MAX_NAME)?;
    let scale = t.f32(usize::from(slot::OUT_SCALE))?;
    if !scale.is_finite() {
        return Err(TensorError::ApParams(format!(
            "output tensor {name}: scale {scale} is not a finite number"
        )));
    }
    if usize::from(num) != dims.len() {
        return Err(TensorError::ApParams(format!(
            "output tensor {name}: numOfDimensions {num} but {} dimensions",
            dims.len()
        )));
    }
    Ok(OutputTensorInfo {
        id: t.u8(usize::from(slot::OUT_ID))?,
        name,
        dims,
        bits: t.u8(usize::from(slot::OUT_BITS))?,
        shift: t.u16(usize::from(slot::OUT_SHIFT))?,
        scale,
        signed: t.u8(usize::from(slot::OUT_FORMAT))? == 0,
    })
}

/// Read an apParams descriptor.
pub fn parse_ap_params(bytes: &[u8]) -> Result<Vec<Network>> {
    let root = Table::root(bytes)?;
    root.tables(usize::from(slot::AP_NETWORKS), MAX_NETWORKS)?
        .iter()
        .map(|n| {
            let inputs = n.tables(usize::from(slot::NET_INPUTS), MAX_TENSORS)?;
            let input = match inputs.first() {
                Some(t) => Some(input_info(t)?),
                None => None,
            };
            Ok(Network {
                id: n.u16(usize::from(slot::NET_ID))?,
                name: n.string(usize::from(slot::NET_NAME), MAX_NAME)?,
                kind: n.string(usize::from(slot::NET_TYPE), MAX_NAME)?,
                input,
                outputs: n
                    .tables(usize::from(slot::NET_OUTPUTS), MAX_TENSORS)?
                    .iter()
                    .map(output_info)
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// A tensor's header and descriptor, read from the start of its lines.
#[derive(Debug, Clone)]
struct Block<'a> {
    header: DnnHeader,
    network: Network,
    /// The data lines, from the first one after the header and apParams.
    body: &'a [u8],
}

fn check_stride(stride: usize) -> Result<()> {
    if stride <= DNN_HEADER_LEN {
        return Err(TensorError::Stride(stride));
    }
    Ok(())
}

/// The header and descriptor at the start of `data`; the data lines follow them.
fn block(data: &[u8], stride: usize, want: TensorType) -> Result<Block<'_>> {
    check_stride(stride)?;
    let header = DnnHeader::parse(data)?;
    let expected = match want {
        TensorType::Input => "input",
        _ => "output",
    };
    if header.tensor_type != want {
        return Err(TensorError::TensorType {
            expected,
            found: header.tensor_type.byte(),
        });
    }
    if !header.frame_valid {
        return Err(TensorError::NotValid(expected));
    }
    let len = usize::from(header.max_line_len);
    if len == 0 || len > stride {
        return Err(TensorError::LineLength {
            max_line_len: header.max_line_len,
            why: format!("it must be 1..={stride} (the stride)"),
        });
    }
    // the descriptor continues at the start of the next line when it does not fit in the first
    let ap_len = usize::from(header.ap_param_size);
    let mut ap = Vec::with_capacity(ap_len);
    let mut at = DNN_HEADER_LEN;
    while ap.len() < ap_len {
        let line_end = (at / stride + 1) * stride;
        let take = (ap_len - ap.len()).min(line_end - at);
        let chunk = data.get(at..at + take).ok_or(TensorError::Truncated {
            what: "the apParams descriptor",
            need: at + take,
            have: data.len(),
        })?;
        ap.extend_from_slice(chunk);
        at += take;
    }
    let networks = parse_ap_params(&ap)?;
    let network = networks
        .into_iter()
        .find(|n| n.id == header.network_id)
        .ok_or(TensorError::UnknownNetwork(header.network_id))?;
    let first_data_line = at.div_ceil(stride).max(1);
    let body = data.get(first_data_line * stride..).unwrap_or_default();
    Ok(Block {
        header,
        network,
        body,
    })
}

/// Data lines a tensor of `bytes` bytes takes.
fn lines_for(bytes: usize, max_line_len: usize) -> usize {
    bytes.div_ceil(max_line_len)
}

/// One decoded output tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its descriptor.
    pub info: OutputTensorInfo,
    /// The values, the first dimension of [`OutputTensorInfo::dims`] varying fastest (numpy
    /// order for [`OutputTensorInfo::shape`]).
    pub data: Vec<f32>,
}

/// The decoded output of a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// The header.
    pub header: DnnHeader,
    /// The network's name and type.
    pub network: (String, String),
    /// The tensors, in the descriptor's order.
    pub tensors: Vec<Tensor>,
}

/// Where each serialized element goes: for a tensor's dimensions, the destination index of the
/// `i`-th element read (`None`: already in order).
fn placement(info: &OutputTensorInfo, index: usize) -> Result<Option<Vec<usize>>> {
    let n = info.dims.len();
    let err = |why: String| TensorError::Tensor {
        index,
        name: info.name.clone(),
        why,
    };
    let mut by_ser: Vec<Option<usize>> = vec![None; n];
    for (i, d) in info.dims.iter().enumerate() {
        if d.padding != 0 {
            return Err(err(format!("dimension {i} has padding {}", d.padding)));
        }
        if d.size == 0 {
            return Err(err(format!("dimension {i} has size 0")));
        }
        let s = usize::from(d.serialization_index);
        match by_ser.get_mut(s) {
            Some(slot @ None) => *slot = Some(i),
            _ => {
                return Err(err(format!(
                    "serialization indices are not a permutation of 0..{n}"
                )));
            }
        }
    }
    if by_ser.iter().enumerate().all(|(s, d)| *d == Some(s)) {
        return Ok(None);
    }
    // stride of each dimension in the decoded order (dimension 0 fastest)
    let mut strides = Vec::with_capacity(n);
    let mut acc = 1usize;
    for d in &info.dims {
        strides.push(acc);
        acc *= usize::from(d.size);
    }
    let order: Vec<usize> = by_ser.into_iter().flatten().collect();
    let mut idx = vec![0usize; n];
    let mut map = Vec::with_capacity(acc);
    for _ in 0..acc {
        map.push(order.iter().map(|&d| idx[d] * strides[d]).sum());
        // advance the serialized counter, serialization index 0 fastest
        for &d in &order {
            idx[d] += 1;
            if idx[d] < usize::from(info.dims[d].size) {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Some(map))
}

fn decode_tensor(
    info: &OutputTensorInfo,
    index: usize,
    lines: &[u8],
    stride: usize,
    max_line_len: usize,
) -> Result<Tensor> {
    let bytes_per = match info.bits {
        8 => 1,
        16 => 2,
        32 => 4,
        other => {
            return Err(TensorError::Tensor {
                index,
                name: info.name.clone(),
                why: format!("{other} bits per element (8, 16 or 32)"),
            });
        }
    };
    if !max_line_len.is_multiple_of(bytes_per) {
        return Err(TensorError::LineLength {
            max_line_len: max_line_len as u16,
            why: format!("not a multiple of {bytes_per}-byte elements"),
        });
    }
    let n = info.elements();
    let per_line = max_line_len / bytes_per;
    // the last element must be there before anything is allocated or laid out for the tensor
    if let Some(last) = n.checked_sub(1) {
        let need = (last / per_line)
            .saturating_mul(stride)
            .saturating_add((last % per_line + 1) * bytes_per);
        if need > lines.len() {
            return Err(TensorError::Truncated {
                what: "output tensor data",
                need,
                have: lines.len(),
            });
        }
    }
    let order = placement(info, index)?;
    let mut data = vec![0f32; n];
    let shift = i64::from(info.shift);
    for i in 0..n {
        let (line, col) = (i / per_line, (i % per_line) * bytes_per);
        let at = line * stride + col;
        let raw = lines
            .get(at..at + bytes_per)
            .ok_or(TensorError::Truncated {
                what: "output tensor data",
                need: at + bytes_per,
                have: lines.len(),
            })?;
        let v: i64 = match (bytes_per, info.signed) {
            (1, true) => i64::from(raw[0] as i8),
            (1, false) => i64::from(raw[0]),
            (2, true) => i64::from(i16::from_le_bytes([raw[0], raw[1]])),
            (2, false) => i64::from(u16::from_le_bytes([raw[0], raw[1]])),
            (_, true) => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
            (_, false) => i64::from(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
        };
        let value = (v - shift) as f32 * info.scale;
        let dst = match &order {
            Some(map) => map[i],
            None => i,
        };
        data[dst] = value;
    }
    Ok(Tensor {
        info: info.clone(),
        data,
    })
}

/// Decode an output tensor whose header starts `data` (the header's line is the first).
pub fn parse_output(data: &[u8], stride: usize) -> Result<Outputs> {
    let b = block(data, stride, TensorType::Output)?;
    let max_line_len = usize::from(b.header.max_line_len);
    let total = b
        .network
        .outputs
        .iter()
        .fold(0usize, |n, t| n.saturating_add(t.elements()));
    if total > MAX_ELEMENTS {
        return Err(TensorError::ApParams(format!(
            "{total} output elements (at most {MAX_ELEMENTS})"
        )));
    }
    if b.network.outputs.is_empty() {
        return Err(TensorError::ApParams(format!(
            "network {} has no output tensors",
            b.network.id
        )));
    }
    let mut line = 0usize;
    let mut tensors = Vec::with_capacity(b.network.outputs.len());
    for (i, info) in b.network.outputs.iter().enumerate() {
        let bytes = info.elements() * usize::from(info.bits / 8).max(1);
        let start = line * stride;
        let lines = b.body.get(start..).unwrap_or_default();
        tensors.push(decode_tensor(info, i, lines, stride, max_line_len)?);
        line += lines_for(bytes, max_line_len);
    }
    Ok(Outputs {
        header: b.header,
        network: (b.network.name, b.network.kind),
        tensors,
    })
}

/// The picture the network saw, from the input tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels (1, 3 or 4).
    pub channels: u32,
    /// Planar: each channel's rows one after the other.
    pub planes: Vec<u8>,
}

impl InputImage {
    /// Packed RGB (grey is repeated; a fourth channel is dropped).
    pub fn to_rgb(&self) -> Vec<u8> {
        let plane = self.width as usize * self.height as usize;
        let ch = |c: u32, i: usize| {
            let c = c.min(self.channels.saturating_sub(1)) as usize;
            self.planes.get(c * plane + i).copied().unwrap_or(0)
        };
        (0..plane)
            .flat_map(|i| [ch(0, i), ch(1, i), ch(2, i)])
            .collect()
    }
}

/// Decode an input tensor whose header starts `data`.
pub fn parse_input(data: &[u8], stride: usize) -> Result<InputImage> {
    let b = block(data, stride, TensorType::Input)?;
    let info = b
        .network
        .input
        .ok_or_else(|| TensorError::ApParams("no input tensor described".into()))?;
    if info.width == 0
        || info.height == 0
        || info.width > MAX_INPUT_SIDE
        || info.height > MAX_INPUT_SIDE
        || !matches!(info.channels, 1 | 3 | 4)
    {
        return Err(TensorError::ApParams(format!(
            "input tensor {}x{}x{} (sides 1..={MAX_INPUT_SIDE}, 1, 3 or 4 channels)",
            info.width, info.height, info.channels
        )));
    }
    let max_line_len = usize::from(b.header.max_line_len);
    let (w, h, c) = (
        usize::from(info.width),
        usize::from(info.height),
        usize::from(info.channels),
    );
    // the last pixel must be there before the planes are allocated
    let last = ((c - 1) * info.height_stride + h - 1) * info.width_stride + w - 1;
    let need = (last / max_line_len)
        .saturating_mul(stride)
        .saturating_add(last % max_line_len + 1);
    if need > b.body.len() {
        return Err(TensorError::Truncated {
            what: "input tensor data",
            need,
            have: b.body.len(),
        });
    }
    let mut planes = Vec::with_capacity(w * h * c);
    for ch in 0..c {
        for y in 0..h {
            // the row's place in the stream of data bytes (each line gives max_line_len of them)
            let mut at = (ch * info.height_stride + y) * info.width_stride;
            let mut left = w;
            while left > 0 {
                let (line, col) = (at / max_line_len, at % max_line_len);
                let take = left.min(max_line_len - col);
                let from = line * stride + col;
                let chunk = b
                    .body
                    .get(from..from + take)
                    .ok_or(TensorError::Truncated {
                        what: "input tensor data",
                        need: from + take,
                        have: b.body.len(),
                    })?;
                planes.extend_from_slice(chunk);
                at += take;
                left -= take;
            }
        }
    }
    Ok(InputImage {
        width: u32::from(info.width),
        height: u32::from(info.height),
        channels: u32::from(info.channels),
        planes,
    })
}

/// Lines an input tensor takes, header and descriptor included, when its header is valid.
fn input_lines(data: &[u8], stride: usize) -> Option<usize> {
    let b = block(data, stride, TensorType::Input).ok()?;
    let info = b.network.input?;
    let bytes = usize::from(info.channels) * info.height_stride * info.width_stride;
    let head = data.len() - b.body.len();
    Some(head / stride + lines_for(bytes, usize::from(b.header.max_line_len)))
}

/// The sensor's timing counters for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kpi {
    /// Time the network ran, in microseconds.
    pub dnn_runtime_us: u32,
    /// Time the DSP post-processing ran, in microseconds.
    pub dsp_runtime_us: u32,
}

/// Word of the KPI line holding the DNN runtime.
pub const KPI_DNN_WORD: usize = 9;
/// Word of the KPI line holding the DSP runtime.
pub const KPI_DSP_WORD: usize = 10;

/// A frame's DNN data, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DnnFrame {
    /// The KPI counters.
    pub kpi: Kpi,
    /// The picture the network saw, when the sensor sent it and it was asked for.
    pub input: Option<InputImage>,
    /// The output tensors.
    pub outputs: Outputs,
}

/// Decode a frame's DNN lines (KPI line, input tensor, output tensor; `stride` bytes a line).
/// The input tensor is decoded only with `want_input` (a frame without a valid one still
/// decodes).
pub fn parse_frame(data: &[u8], stride: usize, want_input: bool) -> Result<DnnFrame> {
    check_stride(stride)?;
    let lines = data.len() / stride;
    if lines < 2 {
        return Err(TensorError::Truncated {
            what: "a KPI line and a tensor",
            need: stride.saturating_mul(2),
            have: data.len(),
        });
    }
    let word = |w: usize| {
        data.get(4 * w..4 * w + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let kpi = Kpi {
        dnn_runtime_us: word(KPI_DNN_WORD),
        dsp_runtime_us: word(KPI_DSP_WORD),
    };
    let line = |l: usize| data.get(l * stride..).unwrap_or_default();
    let input_header = DnnHeader::parse(line(1)).ok();
    let has_input = input_header.is_some_and(|h| h.tensor_type == TensorType::Input);
    // the output follows the input tensor's lines exactly when the input is described; otherwise
    // it is the first later line whose header matches the input's, as libcamera finds it
    let skip = if has_input {
        input_lines(line(1), stride).map(|n| 1 + n)
    } else {
        Some(1)
    };
    let matches = |l: usize| {
        DnnHeader::parse(line(l)).is_ok_and(|h| {
            h.tensor_type == TensorType::Output
                && input_header.filter(|_| has_input).is_none_or(|i| {
                    i.frame_count == h.frame_count
                        && i.ap_param_size == h.ap_param_size
                        && i.max_line_len == h.max_line_len
                })
        })
    };
    let at = match skip {
        Some(l) if l < lines && matches(l) => l,
        _ => ((if has_input { 2 } else { 1 })..lines)
            .find(|&l| matches(l))
            .ok_or(TensorError::NoOutput)?,
    };
    let outputs = parse_output(line(at), stride)?;
    let input = if want_input && has_input {
        parse_input(line(1), stride).ok()
    } else {
        None
    };
    Ok(DnnFrame {
        kpi,
        input,
        outputs,
    })
}
