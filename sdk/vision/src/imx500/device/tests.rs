//! [`EmbeddedNode`] against a scripted node: buffers laid out as the driver and libcamera describe
//! them (2 SMIA register lines, then the DNN lines built by `encode.rs`, a PQ line and slack).

use std::collections::VecDeque;
use std::time::Duration;

use super::*;
use crate::imx500::encode::{InputSpec, Layout};
use crate::imx500::format::{DnnHeader, Kpi, STRIDE_2560, TensorType, parse_frame};
use crate::imx500::ssd_outputs;

const STRIDE: usize = STRIDE_2560;
/// `IMX500_MAX_EMBEDDED_SIZE`: what the driver reserves for the register lines.
const RESERVED: usize = 10_144;

/// What the scripted node does on each `next_buffer` call.
#[derive(Debug, Clone)]
enum Step {
    Buf { sequence: u32, data: Vec<u8> },
    Corrupt { sequence: u32 },
    Timeout,
    Gone,
    Fatal(&'static str),
}

struct Scripted {
    steps: VecDeque<Step>,
    current: Vec<u8>,
}

impl MetaDevice for Scripted {
    fn start(&mut self) -> std::result::Result<(), DeviceError> {
        Ok(())
    }
    fn next_buffer(&mut self, _: Duration) -> std::result::Result<Buffer<'_>, DeviceError> {
        match self.steps.pop_front() {
            Some(Step::Buf { sequence, data }) => {
                self.current = data;
                Ok(Buffer {
                    data: &self.current,
                    sequence,
                    corrupt: false,
                })
            }
            Some(Step::Corrupt { sequence }) => {
                // a full-sized buffer: only the flag says it is bad
                self.current = buffer(REGISTER_LINE_WIDTHS[0], &dnn(1));
                Ok(Buffer {
                    data: &self.current,
                    sequence,
                    corrupt: true,
                })
            }
            Some(Step::Timeout) => Err(DeviceError::Timeout),
            Some(Step::Fatal(m)) => Err(DeviceError::Fatal(m.into())),
            Some(Step::Gone) | None => {
                Err(DeviceError::Gone("VIDIOC_DQBUF: No such device".into()))
            }
        }
    }
}

/// Opens a scripted node, or fails as told.
struct Opener(Option<std::result::Result<Vec<Step>, DeviceError>>);

impl MetaOpener for Opener {
    fn open(&mut self) -> std::result::Result<Box<dyn MetaDevice>, DeviceError> {
        match self.0.take() {
            Some(Ok(steps)) => Ok(Box::new(Scripted {
                steps: steps.into(),
                current: Vec::new(),
            })),
            Some(Err(e)) => Err(e),
            None => Err(DeviceError::Gone("opened twice".into())),
        }
    }
    fn name(&self) -> String {
        "/dev/video-embedded".into()
    }
}

fn fast() -> Policy {
    Policy {
        timeout: Duration::from_millis(1),
        stall_timeouts: 3,
        max_consecutive_bad: 5,
    }
}

fn node(steps: Vec<Step>) -> EmbeddedNode {
    EmbeddedNode::with_opener(Box::new(Opener(Some(Ok(steps)))), STRIDE, fast()).unwrap()
}

/// One frame's DNN lines as the sensor sends them: KPI line, an 8×8×3 input tensor, 4 SSD
/// outputs, and the PQ line.
fn dnn(frame_count: u8) -> Vec<u8> {
    let layout = Layout {
        stride: STRIDE,
        max_line_len: 2560,
        network_id: 7,
        network: "ssd".into(),
        input: Some(InputSpec {
            name: "in".into(),
            width: 8,
            height: 8,
            channels: 3,
        }),
        outputs: ssd_outputs(4),
    };
    let pixels: Vec<u8> = (0..8 * 8 * 3).map(|i| (i * 5 % 251) as u8).collect();
    let values = vec![
        vec![0.25; 16],
        vec![0.5, 0.25, 0.0, 0.0],
        vec![1.0, 2.0, 0.0, 0.0],
        vec![2.0],
    ];
    let kpi = Kpi {
        dnn_runtime_us: 7000 + u32::from(frame_count),
        dsp_runtime_us: 900,
    };
    let mut lines = layout
        .frame(frame_count, kpi, Some(&pixels), &values)
        .unwrap();
    lines.extend(std::iter::repeat_n(0x33, STRIDE)); // the PQ line
    lines
}

/// Two SMIA register lines of `width` bytes each: a line start, tagged register bytes with the
/// RAW10 dummy byte 0x55 every fifth, then end-of-line tags.
fn registers(width: usize) -> Vec<u8> {
    let line = (0..width).map(|i| match i {
        0 => SMIA_LINE_START,
        _ if (i + 1) % 5 == 0 => 0x55,
        _ if i < 200 => [0xaa, 0x02, 0xa5, 0x00, 0x5a, 0x01, 0x5a, 0x00][i % 8],
        _ => 0x07,
    });
    line.clone().chain(line).collect()
}

/// A buffer of the node: register lines of `width`, the DNN lines, and the rest of the space the
/// driver reserved for register lines as slack.
fn buffer(width: usize, dnn: &[u8]) -> Vec<u8> {
    let mut b = registers(width);
    b.extend_from_slice(dnn);
    b.resize(b.len() + (RESERVED - 2 * width), 0);
    b
}

fn good(sequence: u32, width: usize) -> Step {
    Step::Buf {
        sequence,
        data: buffer(width, &dnn(sequence as u8)),
    }
}

#[test]
fn the_register_line_widths_follow_the_modes_and_the_platforms() {
    assert_eq!(REGISTER_LINE_WIDTHS, [5070, 5072, 2535, 2544]);
    // the driver's reservation holds the widest pair
    assert_eq!(
        REGISTER_LINES * REGISTER_LINE_WIDTHS.iter().max().unwrap(),
        RESERVED
    );
}

#[test]
fn buffers_become_dnn_lines_with_the_register_lines_stripped() {
    for width in REGISTER_LINE_WIDTHS {
        let mut n = node(vec![good(0, width), good(1, width)]);
        let mut last = Duration::ZERO;
        for count in 0..2u8 {
            let (t, data) = n.next().unwrap().unwrap();
            let want = dnn(count);
            assert_eq!(data.len() % STRIDE, 0, "width {width}: whole lines");
            assert!(data.len() >= want.len(), "width {width}");
            assert!(
                data[..want.len()] == want[..],
                "width {width}: not the DNN lines"
            );
            let f = parse_frame(&data, STRIDE, true).unwrap();
            assert_eq!(f.outputs.tensors.len(), 4, "width {width}");
            assert_eq!(f.outputs.header.frame_count, count);
            assert_eq!(f.kpi.dnn_runtime_us, 7000 + u32::from(count));
            assert_eq!(f.input.map(|i| (i.width, i.height)), Some((8, 8)));
            assert!(t >= last);
            last = t;
        }
        assert_eq!(n.register_line, Some(width));
        assert_eq!(n.stats(), SourceStats::default());
    }
}

#[test]
fn a_decoy_header_at_a_wrong_width_does_not_win() {
    // true layout: a Pi 5 in the binned mode (2535-byte register lines); the KPI line starts with
    // 0x0a and the input tensor's padding holds a plausible header exactly where the line after
    // the KPI line would be if the register lines were 5070 bytes (the first width tried)
    let width = 2535;
    let mut data = buffer(width, &dnn(3));
    data[2 * width] = SMIA_LINE_START;
    let decoy_at = 2 * 5070 + STRIDE;
    assert!(decoy_at > 2 * width + 2 * STRIDE && decoy_at + 12 < 2 * width + 3 * STRIDE);
    let decoy = DnnHeader {
        frame_valid: true,
        frame_count: 3,
        max_line_len: 2048,
        ap_param_size: 40,
        network_id: 7,
        tensor_type: TensorType::Input,
    };
    data[decoy_at..decoy_at + 12].copy_from_slice(&decoy.to_bytes());
    assert!(
        evidence(&data, STRIDE, 5070).is_some(),
        "the decoy is plausible"
    );
    let want = data[2 * width..2 * width + dnn(3).len()].to_vec();
    let mut n = node(vec![Step::Buf { sequence: 0, data }]);
    let (_, lines) = n.next().unwrap().unwrap();
    assert!(lines[..want.len()] == want[..], "the decoy won");
    assert_eq!(n.register_line, Some(width));
    parse_frame(&lines, STRIDE, true).unwrap();
}

#[test]
fn corrupt_short_and_headerless_buffers_are_skipped_and_counted() {
    let w = REGISTER_LINE_WIDTHS[1];
    // image-only mode: the driver reserves the register lines and no DNN lines
    let short = Step::Buf {
        sequence: 2,
        data: registers(w)
            .into_iter()
            .chain(std::iter::repeat_n(0, RESERVED - 2 * w))
            .collect(),
    };
    // long enough, but the line after the KPI line is blank
    let headerless = Step::Buf {
        sequence: 3,
        data: buffer(w, &vec![0; 6 * STRIDE]),
    };
    let mut n = node(vec![
        good(0, w),
        Step::Corrupt { sequence: 1 },
        short,
        headerless,
        good(4, w),
    ]);
    let (_, a) = n.next().unwrap().unwrap();
    let (_, b) = n.next().unwrap().unwrap();
    assert_eq!(
        parse_frame(&a, STRIDE, false)
            .unwrap()
            .outputs
            .header
            .frame_count,
        0
    );
    assert_eq!(
        parse_frame(&b, STRIDE, false)
            .unwrap()
            .outputs
            .header
            .frame_count,
        4
    );
    assert_eq!(n.stats().skipped, 3);
    assert_eq!(n.stats().lost, 0, "skipped buffers are not also lost");
}

#[test]
fn jumps_in_the_drivers_sequence_numbers_count_as_lost_frames() {
    let w = REGISTER_LINE_WIDTHS[2];
    let mut n = node(vec![good(7, w), good(8, w), good(12, w), good(13, w)]);
    for _ in 0..4 {
        n.next().unwrap().unwrap();
    }
    assert_eq!(n.stats().lost, 3);
    assert_eq!(n.stats().skipped, 0);
}

#[test]
fn a_node_that_goes_away_is_an_error_naming_it() {
    let w = REGISTER_LINE_WIDTHS[3];
    let mut n = node(vec![good(0, w), Step::Gone, good(1, w)]);
    n.next().unwrap().unwrap();
    let e = n.next().unwrap_err();
    assert!(matches!(e, Error::Device { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("/dev/video-embedded: "), "{msg}");
    assert!(
        msg.contains("No such device") && msg.contains("does not reopen"),
        "{msg}"
    );

    let mut n = node(vec![Step::Fatal("VIDIOC_DQBUF: Invalid argument")]);
    let msg = n.next().unwrap_err().to_string();
    assert_eq!(msg, "/dev/video-embedded: VIDIOC_DQBUF: Invalid argument");
}

#[test]
fn a_stalled_node_is_an_error_after_repeated_timeouts() {
    let w = REGISTER_LINE_WIDTHS[0];
    let mut n = node(vec![
        good(0, w),
        Step::Timeout,
        Step::Timeout,
        good(1, w),
        Step::Timeout,
        Step::Timeout,
        Step::Timeout,
        good(2, w),
    ]);
    n.next().unwrap().unwrap();
    n.next().unwrap().unwrap(); // two timeouts are not a stall
    let msg = n.next().unwrap_err().to_string();
    assert!(
        msg.starts_with("/dev/video-embedded: no embedded-data buffer"),
        "{msg}"
    );
}

#[test]
fn a_long_run_of_buffers_without_dnn_lines_is_an_error() {
    let image_only = |sequence| Step::Buf {
        sequence,
        data: registers(5072),
    };
    let mut n = node((0..10).map(image_only).collect());
    let msg = n.next().unwrap_err().to_string();
    assert!(
        msg.starts_with("/dev/video-embedded: 5 buffers in a row"),
        "{msg}"
    );
    assert!(msg.contains("network is loaded"), "{msg}");
    assert_eq!(n.stats().skipped, 5);
}

#[test]
fn open_failures_name_the_node_and_what_to_use() {
    let fail =
        |e| EmbeddedNode::with_opener(Box::new(Opener(Some(Err(e)))), STRIDE, fast()).unwrap_err();
    let e = fail(DeviceError::Fatal(
        "unicam-image (unicam) is not a metadata capture node".into(),
    ));
    assert!(matches!(e, Error::Device { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "/dev/video-embedded: unicam-image (unicam) is not a metadata capture node"
    );
    let msg = fail(DeviceError::Gone("open: No such file or directory".into())).to_string();
    assert!(
        msg.starts_with("/dev/video-embedded: open: No such file"),
        "{msg}"
    );
    assert!(msg.contains("media-ctl -p"), "{msg}");
    // a stride that cannot hold a header
    let r = EmbeddedNode::with_opener(Box::new(Opener(Some(Ok(vec![])))), 12, fast());
    assert!(r.unwrap_err().to_string().contains("stride of 12"));
}

#[test]
fn the_previous_width_wins_a_tie_and_a_line_start_breaks_one() {
    // a buffer that two widths explain equally well: a line start and an output header where
    // each would put them
    let mut data = vec![0u8; RESERVED + 4 * STRIDE];
    let header = DnnHeader {
        frame_valid: true,
        frame_count: 1,
        max_line_len: 2560,
        ap_param_size: 40,
        network_id: 7,
        tensor_type: TensorType::Output,
    }
    .to_bytes();
    for width in [5070, 2544] {
        data[width] = SMIA_LINE_START;
        let at = 2 * width + STRIDE;
        data[at..at + 12].copy_from_slice(&header);
    }
    let score = evidence(&data, STRIDE, 5070);
    assert!(
        score.is_some() && score == evidence(&data, STRIDE, 2544),
        "{score:?}"
    );
    assert_eq!(dnn_lines(&data, STRIDE, Some(2544)).unwrap().0, 2544);
    assert_eq!(dnn_lines(&data, STRIDE, Some(5070)).unwrap().0, 5070);
    assert_eq!(dnn_lines(&data, STRIDE, None).unwrap().0, 5070);
    // the start of the second register line breaks the tie where only one width has it
    data[5070] = 0x07;
    assert_eq!(dnn_lines(&data, STRIDE, Some(5070)).unwrap().0, 2544);
}
