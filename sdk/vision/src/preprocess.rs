//! Frames to input tensors: resize (fast_image_resize), letterbox, layout and normalisation, as the
//! model card says. Buffers are allocated once per [`Preprocessor`] and reused for every frame.

use fast_image_resize as fir;

use crate::card::{DType, InputSpec, Layout, Resize};
use crate::error::{Error, Result};
pub use ocellus_core::frame::{
    MAX_FRAME_PIXELS, MAX_FRAME_SIDE, RgbFrame, RgbView, frame_size_problem, rgb_len,
};

/// Maps boxes from the model input's normalised coordinates back to the frame's.
///
/// `frame = (model - offset) / scale`, per axis. For a stretch resize it is the identity; for a
/// letterbox, `scale` is the fraction of the input the frame occupies and `offset` the padding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Fraction of the input width / height covered by the frame.
    pub scale: [f32; 2],
    /// Normalised left / top padding.
    pub offset: [f32; 2],
}

impl Transform {
    /// No change.
    pub const IDENTITY: Transform = Transform {
        scale: [1.0, 1.0],
        offset: [0.0, 0.0],
    };

    /// Map `[x0, y0, x1, y1]` from model to frame coordinates, clamped to 0..=1.
    pub fn to_frame(&self, b: [f32; 4]) -> [f32; 4] {
        let fx = |x: f32| ((x - self.offset[0]) / self.scale[0]).clamp(0.0, 1.0);
        let fy = |y: f32| ((y - self.offset[1]) / self.scale[1]).clamp(0.0, 1.0);
        [fx(b[0]), fy(b[1]), fx(b[2]), fy(b[3])]
    }
}

/// The input tensor's data, in the card's dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 0..255 pixels.
    U8(Vec<u8>),
    /// Normalised values.
    F32(Vec<f32>),
}

/// A `[1, H, W, 3]` or `[1, 3, H, W]` input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    /// Shape, batch first.
    pub shape: [usize; 4],
    /// Elements in row-major order.
    pub data: TensorData,
}

/// Turns frames into the input tensor a card describes. Reuses its buffers across frames.
pub struct Preprocessor {
    width: u32,
    height: u32,
    layout: Layout,
    resize: Resize,
    pad: u8,
    /// `lut[c][v]` = normalised value of 8-bit `v` in channel `c` (float32 inputs).
    lut: Option<Box<[[f32; 256]; 3]>>,
    resizer: fir::Resizer,
    /// The frame fitted to the input size, packed RGB (`width * height * 3`).
    fitted: Vec<u8>,
    /// Scratch for the letterboxed content before it is placed.
    scratch: Vec<u8>,
    tensor: InputTensor,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("layout", &self.layout)
            .field("resize", &self.resize)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// A preprocessor for a card's input.
    pub fn new(spec: &InputSpec) -> Self {
        let (w, h) = (spec.width as usize, spec.height as usize);
        let n = w * h * 3;
        let shape = match spec.layout {
            Layout::Nhwc => [1, h, w, 3],
            Layout::Nchw => [1, 3, h, w],
        };
        let (lut, data) = match spec.dtype {
            DType::Uint8 => (None, TensorData::U8(vec![0; n])),
            DType::Float32 => {
                let mean = spec.mean.unwrap_or([0.0; 3]);
                let std = spec.std.unwrap_or([1.0; 3]);
                let mut lut = Box::new([[0f32; 256]; 3]);
                for (c, table) in lut.iter_mut().enumerate() {
                    for (v, out) in table.iter_mut().enumerate() {
                        *out = (v as f32 / 255.0 - mean[c]) / std[c];
                    }
                }
                (Some(lut), TensorData::F32(vec![0.0; n]))
            }
        };
        Preprocessor {
            width: spec.width,
            height: spec.height,
            layout: spec.layout,
            resize: spec.resize,
            pad: spec.pad,
            lut,
            resizer: fir::Resizer::new(),
            fitted: vec![0; n],
            scratch: Vec::new(),
            tensor: InputTensor { shape, data },
        }
    }

    /// The tensor produced by the last [`Preprocessor::run`].
    pub fn tensor(&self) -> &InputTensor {
        &self.tensor
    }

    /// A new tensor of this preprocessor's shape and dtype (for a pool of them).
    pub fn new_tensor(&self) -> InputTensor {
        self.tensor.clone()
    }

    /// Trade the tensor the last [`Preprocessor::run`] filled for `spare`, which the next run
    /// fills: a pipeline stage keeps the filled one and hands it on without copying. `spare` must
    /// come from [`Preprocessor::new_tensor`] (a tensor of another shape is replaced by a new one).
    pub fn swap_tensor(&mut self, spare: &mut InputTensor) {
        std::mem::swap(&mut self.tensor, spare);
        let fits = self.tensor.shape == spare.shape
            && match (&self.tensor.data, &spare.data) {
                (TensorData::U8(a), TensorData::U8(b)) => a.len() == b.len(),
                (TensorData::F32(a), TensorData::F32(b)) => a.len() == b.len(),
                _ => false,
            };
        if !fits {
            self.tensor = spare.clone();
        }
    }

    /// Fit `frame` into the input size and fill the tensor. Returns the box transform back to the frame.
    pub fn run(&mut self, frame: RgbView<'_>) -> Result<Transform> {
        let transform = self.fit(frame)?;
        self.fill_tensor();
        Ok(transform)
    }

    fn fit(&mut self, frame: RgbView<'_>) -> Result<Transform> {
        let (dw, dh) = (self.width, self.height);
        match self.resize {
            Resize::Stretch => {
                resize_into(&mut self.resizer, frame, dw, dh, &mut self.fitted)?;
                Ok(Transform::IDENTITY)
            }
            Resize::Letterbox => {
                let s = f64::min(
                    dw as f64 / frame.width() as f64,
                    dh as f64 / frame.height() as f64,
                );
                let cw = ((frame.width() as f64 * s).round() as u32).clamp(1, dw);
                let ch = ((frame.height() as f64 * s).round() as u32).clamp(1, dh);
                let (px, py) = ((dw - cw) / 2, (dh - ch) / 2);
                self.scratch.resize(cw as usize * ch as usize * 3, 0);
                resize_into(&mut self.resizer, frame, cw, ch, &mut self.scratch)?;
                self.fitted.fill(self.pad);
                let row = cw as usize * 3;
                for y in 0..ch as usize {
                    let dst = ((py as usize + y) * dw as usize + px as usize) * 3;
                    self.fitted[dst..dst + row]
                        .copy_from_slice(&self.scratch[y * row..(y + 1) * row]);
                }
                Ok(Transform {
                    scale: [cw as f32 / dw as f32, ch as f32 / dh as f32],
                    offset: [px as f32 / dw as f32, py as f32 / dh as f32],
                })
            }
        }
    }

    fn fill_tensor(&mut self) {
        let plane = self.width as usize * self.height as usize;
        let src = &self.fitted;
        match (&mut self.tensor.data, self.layout, &self.lut) {
            (TensorData::U8(dst), Layout::Nhwc, _) => dst.copy_from_slice(src),
            (TensorData::U8(dst), Layout::Nchw, _) => {
                for (i, px) in src.chunks_exact(3).enumerate() {
                    dst[i] = px[0];
                    dst[plane + i] = px[1];
                    dst[2 * plane + i] = px[2];
                }
            }
            (TensorData::F32(dst), Layout::Nhwc, Some(lut)) => {
                for (d, px) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                    d[0] = lut[0][px[0] as usize];
                    d[1] = lut[1][px[1] as usize];
                    d[2] = lut[2][px[2] as usize];
                }
            }
            (TensorData::F32(dst), Layout::Nchw, Some(lut)) => {
                let (r, rest) = dst.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                for (i, px) in src.chunks_exact(3).enumerate() {
                    r[i] = lut[0][px[0] as usize];
                    g[i] = lut[1][px[1] as usize];
                    b[i] = lut[2][px[2] as usize];
                }
            }
            // float tensors always have a LUT (built in `new`)
            (TensorData::F32(_), _, None) => {}
        }
    }
}

/// Resize packed RGB `frame` to `w`×`h` into `out` (exactly `w*h*3` bytes). Same size = copy.
fn resize_into(
    resizer: &mut fir::Resizer,
    frame: RgbView<'_>,
    w: u32,
    h: u32,
    out: &mut [u8],
) -> Result<()> {
    if frame.width() == w && frame.height() == h {
        out.copy_from_slice(frame.data());
        return Ok(());
    }
    let src = fir::images::ImageRef::new(
        frame.width(),
        frame.height(),
        frame.data(),
        fir::PixelType::U8x3,
    )
    .map_err(|e| Error::Frame(format!("resize source: {e}")))?;
    let mut dst = fir::images::Image::from_slice_u8(w, h, out, fir::PixelType::U8x3)
        .map_err(|e| Error::Frame(format!("resize target: {e}")))?;
    let opts = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    resizer
        .resize(&src, &mut dst, &opts)
        .map_err(|e| Error::Frame(format!("resize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_takes_the_pixels_inside_the_box() -> Result<()> {
        // 4x2, pixel (x, y) = [x, y, 7]
        let data = (0..2u8)
            .flat_map(|y| (0..4u8).flat_map(move |x| [x, y, 7]))
            .collect();
        let f = RgbFrame::new(4, 2, data)?;
        let c = f.crop([0.25, 0.5, 0.75, 1.0])?;
        assert_eq!((c.width(), c.height()), (2, 1));
        assert_eq!(c.data(), &[1, 1, 7, 2, 1, 7]);
        assert!(f.crop([0.5, 0.5, 0.5, 1.0]).is_err());
        assert_eq!(f.crop([-1.0, -1.0, 2.0, 2.0])?.data(), f.data());
        Ok(())
    }

    fn spec(w: u32, h: u32, layout: Layout, dtype: DType, resize: Resize) -> InputSpec {
        InputSpec {
            name: "x".into(),
            layout,
            dtype,
            width: w,
            height: h,
            resize,
            pad: 7,
            mean: None,
            std: None,
        }
    }

    /// 2x2 frame: red, green / blue, white.
    fn quad() -> RgbFrame {
        let d = vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        RgbFrame::new(2, 2, d).expect("2x2 RGB")
    }

    #[test]
    fn frame_size_is_checked() {
        assert!(RgbFrame::new(2, 2, vec![0; 11]).is_err());
        assert!(RgbFrame::new(0, 2, vec![]).is_err());
        assert!(RgbView::new(2, 1, &[0; 6]).is_ok());
    }

    #[test]
    fn same_size_nhwc_u8_is_a_copy() -> Result<()> {
        let mut p = Preprocessor::new(&spec(2, 2, Layout::Nhwc, DType::Uint8, Resize::Stretch));
        let t = p.run(quad().as_view())?;
        assert_eq!(t, Transform::IDENTITY);
        assert_eq!(p.tensor().shape, [1, 2, 2, 3]);
        assert_eq!(p.tensor().data, TensorData::U8(quad().into_raw()));
        Ok(())
    }

    #[test]
    fn nchw_u8_splits_planes() -> Result<()> {
        let mut p = Preprocessor::new(&spec(2, 2, Layout::Nchw, DType::Uint8, Resize::Stretch));
        p.run(quad().as_view())?;
        assert_eq!(p.tensor().shape, [1, 3, 2, 2]);
        assert_eq!(
            p.tensor().data,
            TensorData::U8(vec![255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255])
        );
        Ok(())
    }

    #[test]
    fn float_normalisation_to_minus_one_one() -> Result<()> {
        let mut s = spec(2, 2, Layout::Nhwc, DType::Float32, Resize::Stretch);
        s.mean = Some([0.5; 3]);
        s.std = Some([0.5; 3]);
        let mut p = Preprocessor::new(&s);
        p.run(quad().as_view())?;
        let want: Vec<f32> = quad()
            .into_raw()
            .iter()
            .map(|&v| if v == 255 { 1.0 } else { -1.0 })
            .collect();
        assert_eq!(p.tensor().data, TensorData::F32(want));
        Ok(())
    }

    #[test]
    fn float_nchw_default_is_zero_to_one() -> Result<()> {
        let mut p = Preprocessor::new(&spec(2, 2, Layout::Nchw, DType::Float32, Resize::Stretch));
        p.run(quad().as_view())?;
        assert_eq!(
            p.tensor().data,
            TensorData::F32(vec![1., 0., 0., 1., 0., 1., 0., 1., 0., 0., 1., 1.])
        );
        Ok(())
    }

    #[test]
    fn uniform_frame_resizes_to_the_same_colour() -> Result<()> {
        let frame = RgbFrame::new(40, 30, [10u8, 120, 250].repeat(40 * 30))?;
        let mut p = Preprocessor::new(&spec(8, 8, Layout::Nhwc, DType::Uint8, Resize::Stretch));
        p.run(frame.as_view())?;
        assert_eq!(p.tensor().data, TensorData::U8([10u8, 120, 250].repeat(64)));
        Ok(())
    }

    #[test]
    fn letterbox_pads_and_maps_boxes_back() -> Result<()> {
        // 40x20 white frame into 8x8: content 8x4 at rows 2..6, pad value 7 elsewhere.
        let frame = RgbFrame::new(40, 20, vec![255; 40 * 20 * 3])?;
        let mut p = Preprocessor::new(&spec(8, 8, Layout::Nhwc, DType::Uint8, Resize::Letterbox));
        let t = p.run(frame.as_view())?;
        let TensorData::U8(d) = &p.tensor().data else {
            return Err(Error::Frame("dtype".into()));
        };
        for y in 0..8 {
            let want = if (2..6).contains(&y) { 255 } else { 7 };
            assert!(
                d[y * 24..(y + 1) * 24].iter().all(|&v| v == want),
                "row {y}"
            );
        }
        assert_eq!(t.scale, [1.0, 0.5]);
        assert_eq!(t.offset, [0.0, 0.25]);
        // the content's full extent in model coordinates is the whole frame
        assert_eq!(t.to_frame([0.0, 0.25, 1.0, 0.75]), [0.0, 0.0, 1.0, 1.0]);
        // a box in the padding clamps to the frame edge
        assert_eq!(t.to_frame([0.5, 0.0, 0.5, 0.1]), [0.5, 0.0, 0.5, 0.0]);
        Ok(())
    }

    #[test]
    fn buffers_are_reused_across_frames() -> Result<()> {
        let mut p = Preprocessor::new(&spec(8, 8, Layout::Nchw, DType::Float32, Resize::Letterbox));
        let a = RgbFrame::new(30, 20, vec![0; 30 * 20 * 3])?;
        p.run(a.as_view())?;
        let ptr = match &p.tensor().data {
            TensorData::F32(v) => v.as_ptr(),
            TensorData::U8(v) => v.as_ptr().cast(),
        };
        let b = RgbFrame::new(20, 30, vec![9; 20 * 30 * 3])?;
        p.run(b.as_view())?;
        let ptr2 = match &p.tensor().data {
            TensorData::F32(v) => v.as_ptr(),
            TensorData::U8(v) => v.as_ptr().cast(),
        };
        assert_eq!(ptr, ptr2);
        Ok(())
    }
}
