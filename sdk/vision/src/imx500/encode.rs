//! Writing DNN lines the way an IMX500 sends them: what the simulated sensor emits, and what
//! tests build tensors with. The inverse of [`super::format`].

use super::flatbuf::{TableBuilder, Value};
use super::format::{
    DNN_HEADER_LEN, Dimension, DnnHeader, KPI_DNN_WORD, KPI_DSP_WORD, Kpi, OutputTensorInfo,
    Result, TensorError, TensorType, slot,
};

/// The picture a network takes: planar 8-bit, no padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Its name.
    pub name: String,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Channels.
    pub channels: u16,
}

/// What a simulated network looks like on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Bytes per line.
    pub stride: usize,
    /// Bytes of data per line (at most `stride`).
    pub max_line_len: u16,
    /// The network id in headers and descriptor.
    pub network_id: u16,
    /// The network's name (and type string).
    pub network: String,
    /// Its input tensor.
    pub input: Option<InputSpec>,
    /// Its output tensors.
    pub outputs: Vec<OutputTensorInfo>,
}

fn dim_table(d: &Dimension) -> TableBuilder {
    TableBuilder::default()
        .with(slot::DIM_ID, Value::U8(d.ordinal))
        .with(slot::DIM_SIZE, Value::U16(d.size))
        .with(slot::DIM_SER, Value::U8(d.serialization_index))
        .with(slot::DIM_PAD, Value::U8(d.padding))
}

impl Layout {
    /// The apParams descriptor.
    pub fn ap_params(&self) -> Vec<u8> {
        let outputs = self
            .outputs
            .iter()
            .map(|t| {
                TableBuilder::default()
                    .with(slot::OUT_ID, Value::U8(t.id))
                    .with(slot::OUT_NAME, Value::Str(t.name.clone()))
                    .with(slot::OUT_NUM_DIMS, Value::U8(t.dims.len() as u8))
                    .with(
                        slot::OUT_DIMS,
                        Value::Tables(t.dims.iter().map(dim_table).collect()),
                    )
                    .with(slot::OUT_BITS, Value::U8(t.bits))
                    .with(slot::OUT_SHIFT, Value::U16(t.shift))
                    .with(slot::OUT_SCALE, Value::F32(t.scale))
                    .with(slot::OUT_FORMAT, Value::U8(u8::from(!t.signed)))
            })
            .collect();
        let inputs = self
            .input
            .iter()
            .map(|i| {
                let dims = [(i.width, 0), (i.height, 1), (i.channels, 2)]
                    .iter()
                    .map(|&(size, ser)| Dimension {
                        ordinal: 2 - ser,
                        size,
                        serialization_index: ser,
                        padding: 0,
                    })
                    .map(|d| dim_table(&d))
                    .collect();
                TableBuilder::default()
                    .with(slot::IN_ID, Value::U8(0))
                    .with(slot::IN_NAME, Value::Str(i.name.clone()))
                    .with(slot::IN_NUM_DIMS, Value::U8(3))
                    .with(slot::IN_DIMS, Value::Tables(dims))
                    .with(slot::IN_SHIFT, Value::U16(0))
                    .with(slot::IN_SCALE, Value::F32(1.0))
                    .with(slot::IN_FORMAT, Value::U8(1))
            })
            .collect();
        let network = TableBuilder::default()
            .with(slot::NET_ID, Value::U16(self.network_id))
            .with(slot::NET_NAME, Value::Str(self.network.clone()))
            .with(slot::NET_TYPE, Value::Str(self.network.clone()))
            .with(slot::NET_INPUTS, Value::Tables(inputs))
            .with(slot::NET_OUTPUTS, Value::Tables(outputs));
        TableBuilder::default()
            .with(slot::AP_NETWORKS, Value::Tables(vec![network]))
            .finish()
    }

    fn check(&self) -> Result<()> {
        if self.stride <= DNN_HEADER_LEN {
            return Err(TensorError::Stride(self.stride));
        }
        if self.max_line_len == 0 || usize::from(self.max_line_len) > self.stride {
            return Err(TensorError::LineLength {
                max_line_len: self.max_line_len,
                why: format!("it must be 1..={}", self.stride),
            });
        }
        Ok(())
    }

    /// Header, descriptor, then the data bytes, `max_line_len` of them on each line.
    fn tensor(&self, kind: TensorType, frame_count: u8, ap: &[u8], data: &[u8]) -> Vec<u8> {
        let header = DnnHeader {
            frame_valid: true,
            frame_count,
            max_line_len: self.max_line_len,
            ap_param_size: ap.len() as u16,
            network_id: self.network_id,
            tensor_type: kind,
        };
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(ap);
        out.resize(out.len().next_multiple_of(self.stride), 0);
        for chunk in data.chunks(usize::from(self.max_line_len)) {
            let start = out.len();
            out.extend_from_slice(chunk);
            out.resize(start + self.stride, 0);
        }
        out
    }

    /// One frame's DNN lines: the KPI line, the input tensor (only when `input` is given; its
    /// planar pixels), and the output tensors. `values[i]` are output `i`'s values in decoded
    /// order (the first dimension fastest); they are quantised with each tensor's scale and
    /// shift, saturating, and written in serialization order.
    pub fn frame(
        &self,
        frame_count: u8,
        kpi: Kpi,
        input: Option<&[u8]>,
        values: &[Vec<f32>],
    ) -> Result<Vec<u8>> {
        self.check()?;
        let ap = self.ap_params();
        let mut out = vec![0u8; self.stride];
        for (word, v) in [
            (KPI_DNN_WORD, kpi.dnn_runtime_us),
            (KPI_DSP_WORD, kpi.dsp_runtime_us),
        ] {
            out[4 * word..4 * word + 4].copy_from_slice(&v.to_le_bytes());
        }
        if let Some(pixels) = input {
            out.extend(self.tensor(TensorType::Input, frame_count, &ap, pixels));
        }
        let mut data = Vec::new();
        if values.len() != self.outputs.len() {
            return Err(TensorError::ApParams(format!(
                "{} value lists for {} output tensors",
                values.len(),
                self.outputs.len()
            )));
        }
        for (i, (info, v)) in self.outputs.iter().zip(values).enumerate() {
            let bytes = quantise(info, i, v)?;
            // each tensor starts on a line of its own
            data.extend_from_slice(&bytes);
            let line = usize::from(self.max_line_len);
            data.resize(data.len().next_multiple_of(line), 0);
        }
        out.extend(self.tensor(TensorType::Output, frame_count, &ap, &data));
        Ok(out)
    }
}

/// A tensor's values as raw bytes in serialization order.
pub fn quantise(info: &OutputTensorInfo, index: usize, values: &[f32]) -> Result<Vec<u8>> {
    let err = |why: String| TensorError::Tensor {
        index,
        name: info.name.clone(),
        why,
    };
    let n = info.elements();
    if values.len() != n {
        return Err(err(format!("{} values for {n} elements", values.len())));
    }
    let (lo, hi, width): (f64, f64, usize) = match (info.bits, info.signed) {
        (8, true) => (f64::from(i8::MIN), f64::from(i8::MAX), 1),
        (8, false) => (0.0, f64::from(u8::MAX), 1),
        (16, true) => (f64::from(i16::MIN), f64::from(i16::MAX), 2),
        (16, false) => (0.0, f64::from(u16::MAX), 2),
        (32, true) => (f64::from(i32::MIN), f64::from(i32::MAX), 4),
        (32, false) => (0.0, f64::from(u32::MAX), 4),
        (bits, _) => return Err(err(format!("{bits} bits per element"))),
    };
    if !(info.scale.is_finite() && info.scale != 0.0) {
        return Err(err(format!("scale {}", info.scale)));
    }
    // decoded index of each serialized element
    let dims = &info.dims;
    let mut strides = Vec::with_capacity(dims.len());
    let mut acc = 1usize;
    for d in dims {
        strides.push(acc);
        acc *= usize::from(d.size);
    }
    let mut order: Vec<usize> = (0..dims.len()).collect();
    order.sort_by_key(|&d| dims[d].serialization_index);
    let mut idx = vec![0usize; dims.len()];
    let mut out = Vec::with_capacity(n * width);
    for _ in 0..n {
        let src: usize = order.iter().map(|&d| idx[d] * strides[d]).sum();
        let v = values.get(src).copied().unwrap_or(0.0);
        let q = (f64::from(v) / f64::from(info.scale) + f64::from(info.shift))
            .round()
            .clamp(lo, hi);
        match width {
            1 => out.push(if info.signed { q as i8 as u8 } else { q as u8 }),
            2 => out.extend_from_slice(
                &(if info.signed {
                    (q as i16).to_le_bytes()
                } else {
                    (q as u16).to_le_bytes()
                }),
            ),
            _ => out.extend_from_slice(
                &(if info.signed {
                    (q as i32).to_le_bytes()
                } else {
                    (q as u32).to_le_bytes()
                }),
            ),
        }
        for &d in &order {
            idx[d] += 1;
            if idx[d] < usize::from(dims[d].size) {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}
