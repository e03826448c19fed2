//! Sensors that run the network themselves: Sony's IMX500 (the Raspberry Pi AI Camera).
//!
//! The IMX500 runs the detector on the chip and sends, with each frame, lines of embedded data
//! holding the network's output tensors (and, when asked, the picture the network saw). The host
//! runs no model: [`Imx500Inference`] parses those lines ([`format`]) and decodes the tensors with
//! the model card's own decoder, so the same card, threshold and labels apply as on the host
//! path. [`Imx500Source`] delivers the lines from a recorded capture ([`capture`]), the simulated
//! sensor ([`sim`]) or, on a board, the V4L2 node that carries the embedded data.
//!
//! By default the host reads no pixels. When someone asks to see the scene (a snapshot, the
//! setup page), the source returns the network's input tensor, a low-resolution picture, once;
//! it goes through the same privacy blur as any snapshot.

pub mod capture;
mod device;
pub mod encode;
mod flatbuf;
pub mod format;
mod infer;
pub mod sim;
mod source;

pub use format::{STRIDE_2560, STRIDE_4064, TensorError};
pub use infer::Imx500Inference;
pub use source::{Imx500Settings, Imx500Source, TensorFeed};

use format::{Dimension, OutputTensorInfo};

/// Detections an SSD network on the sensor reports per frame (the TF Object Detection API's
/// post-processor keeps 100).
pub const SSD_DETECTIONS: u16 = 100;

/// The output tensors of an SSD network post-processed on the chip, as IMX500 SSD networks
/// deliver them (and as picamera2's object detection demo reads them): boxes `[N, 4]`
/// (ymin, xmin, ymax, xmax, normalised), scores `[N]`, classes `[N]`, count `[1]`. Quantised as
/// the simulated sensor sends them: boxes 16-bit, scores 8-bit (1/255 steps), classes and count
/// 8-bit integers.
pub fn ssd_outputs(n: u16) -> Vec<OutputTensorInfo> {
    let flat = |size: u16| {
        vec![Dimension {
            ordinal: 0,
            size,
            serialization_index: 0,
            padding: 0,
        }]
    };
    let tensor =
        |id: u8, name: &str, dims: Vec<Dimension>, bits: u8, scale: f32| OutputTensorInfo {
            id,
            name: name.to_owned(),
            dims,
            bits,
            signed: false,
            shift: 0,
            scale,
        };
    vec![
        tensor(
            0,
            "boxes",
            vec![
                Dimension {
                    ordinal: 0,
                    size: 4,
                    serialization_index: 0,
                    padding: 0,
                },
                Dimension {
                    ordinal: 1,
                    size: n,
                    serialization_index: 1,
                    padding: 0,
                },
            ],
            16,
            1.0 / 65535.0,
        ),
        tensor(1, "scores", flat(n), 8, 1.0 / 255.0),
        tensor(2, "classes", flat(n), 8, 1.0),
        tensor(3, "count", flat(1), 8, 1.0),
    ]
}

#[cfg(test)]
mod tests;
