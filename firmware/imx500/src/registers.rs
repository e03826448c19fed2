//! IMX500 register map: addresses and field values.
//!
//! Register addresses are 16 bits wide and sent big-endian. Registers marked
//! *16-bit* or *32-bit* occupy consecutive addresses, most significant byte
//! first; the driver always writes a 16-bit register in one I²C transaction
//! and reads multi-byte registers in one write-read, so neither side ever
//! sees a half-updated value.
//!
//! Sony has not published an IMX500 register manual. Every address and value
//! here is taken from the Raspberry Pi Linux driver
//! `drivers/media/i2c/imx500.c` (its `IMX500_REG_*` definitions and the
//! functions named on each constant); registers in `0x0000..=0x0FFF` follow
//! the SMIA / MIPI CCS layout, and the CCS name is given where the kernel
//! driver only writes the address. Constants whose meaning comes from the
//! CCS layout rather than from the kernel driver say so.
//!
//! Only registers this driver reads or writes are listed. What the kernel
//! driver additionally writes is described in the crate documentation
//! ("What the kernel driver writes that this driver does not").

// ---------------------------------------------------------------------------
// General status and control
// ---------------------------------------------------------------------------

/// `CHIP_ID` (16-bit, read-only): reads [`CHIP_ID_IMX500`] on an IMX500
/// (kernel: `IMX500_REG_CHIP_ID`, read by `imx500_identify_module`).
pub const CHIP_ID: u16 = 0x0016;
/// Value of [`CHIP_ID`] on an IMX500 (kernel: `IMX500_CHIP_ID`).
pub const CHIP_ID_IMX500: u16 = 0x0500;

/// `mode_select` (8-bit): software standby / streaming (kernel:
/// `IMX500_REG_MODE_SELECT`).
pub const MODE_SELECT: u16 = 0x0100;
/// [`MODE_SELECT`]: software standby, no frames are output
/// (`IMX500_MODE_STANDBY`).
pub const MODE_SELECT_STANDBY: u8 = 0x00;
/// [`MODE_SELECT`]: streaming (`IMX500_MODE_STREAMING`).
pub const MODE_SELECT_STREAMING: u8 = 0x01;

// ---------------------------------------------------------------------------
// Integration time and gain (per-frame controls, allowed while streaming)
// ---------------------------------------------------------------------------

/// `coarse_integration_time` (16-bit): exposure time in lines (kernel:
/// `IMX500_REG_EXPOSURE`, written by `imx500_set_ctrl` for
/// `V4L2_CID_EXPOSURE`).
pub const COARSE_INTEGRATION_TIME: u16 = 0x0202;

/// `analogue_gain_code_global` (16-bit): analogue gain code `c`,
/// gain = 1024 / (1024 − c), `c` in `0..=978` (kernel:
/// `IMX500_REG_ANALOG_GAIN`, `IMX500_ANA_GAIN_MAX`; the gain law is
/// libcamera's `CamHelperImx500::gain`).
pub const ANALOG_GAIN: u16 = 0x0204;

// ---------------------------------------------------------------------------
// Frame timing
// ---------------------------------------------------------------------------

/// `frame_length_lines` (16-bit): frame length in lines (VTS), output height
/// plus vertical blanking (kernel: `IMX500_REG_FRAME_LENGTH`, written by
/// `imx500_set_frame_length`).
pub const FRAME_LENGTH_LINES: u16 = 0x0340;

/// `line_length_pck` (16-bit): line length in pixel clocks (HTS) (kernel:
/// `IMX500_REG_LINE_LENGTH`).
pub const LINE_LENGTH_PCK: u16 = 0x0342;

/// Long-exposure shift (8-bit): the frame length and integration time are
/// multiplied by `2^value` (kernel: `IMX500_LONG_EXP_SHIFT_REG`, written by
/// `imx500_set_frame_length`, up to `IMX500_LONG_EXP_SHIFT_MAX` = 7). This
/// driver does not use long exposures and always writes
/// [`LONG_EXP_SHIFT_NONE`].
pub const LONG_EXP_SHIFT: u16 = 0x3210;
/// [`LONG_EXP_SHIFT`]: no multiplier, frame length and exposure in lines.
pub const LONG_EXP_SHIFT_NONE: u8 = 0;

// ---------------------------------------------------------------------------
// Image size and readout (addresses and names from the CCS layout; values
// from the kernel driver's `mode_4056x3040_regs` / `mode_2028x1520_regs`)
// ---------------------------------------------------------------------------

/// `x_addr_start` (16-bit): first column read out.
pub const X_ADDR_START: u16 = 0x0344;
/// `y_addr_start` (16-bit): first row read out.
pub const Y_ADDR_START: u16 = 0x0346;
/// `x_addr_end` (16-bit): last column read out (inclusive).
pub const X_ADDR_END: u16 = 0x0348;
/// `y_addr_end` (16-bit): last row read out (inclusive).
pub const Y_ADDR_END: u16 = 0x034A;
/// `x_output_size` (16-bit): output image width in pixels.
pub const X_OUTPUT_SIZE: u16 = 0x034C;
/// `y_output_size` (16-bit): output image height in lines.
pub const Y_OUTPUT_SIZE: u16 = 0x034E;

/// `digital_crop_image_width` (16-bit): width after the digital crop; the
/// kernel's mode tables keep it equal to the output width.
pub const DIGITAL_CROP_IMAGE_WIDTH: u16 = 0x040C;
/// `digital_crop_image_height` (16-bit): height after the digital crop; the
/// kernel's mode tables keep it equal to the output height.
pub const DIGITAL_CROP_IMAGE_HEIGHT: u16 = 0x040E;

/// `binning_mode` (8-bit): 0 = binning off, 1 = binning on.
pub const BINNING_MODE: u16 = 0x0900;
/// [`BINNING_MODE`]: off.
pub const BINNING_MODE_OFF: u8 = 0x00;
/// [`BINNING_MODE`]: on.
pub const BINNING_MODE_ON: u8 = 0x01;

/// `binning_type` (8-bit): high nibble = column binning factor, low nibble =
/// row binning factor.
pub const BINNING_TYPE: u16 = 0x0901;
/// [`BINNING_TYPE`]: 1 × 1 (no binning), as in the kernel's full-resolution
/// table.
pub const BINNING_TYPE_1X1: u8 = 0x11;
/// [`BINNING_TYPE`]: 2 × 2, as in the kernel's 2028 × 1520 table.
pub const BINNING_TYPE_2X2: u8 = 0x22;

/// `binning_weighting` (8-bit): how binned pixels are combined. The encoding
/// is manufacturer-specific and not published for the IMX500; the driver
/// writes the kernel tables' values.
pub const BINNING_WEIGHTING: u16 = 0x0902;
/// [`BINNING_WEIGHTING`]: value of the kernel's full-resolution table.
pub const BINNING_WEIGHTING_FULL: u8 = 0x00;
/// [`BINNING_WEIGHTING`]: value of the kernel's 2028 × 1520 table.
pub const BINNING_WEIGHTING_BINNED: u8 = 0x02;

// ---------------------------------------------------------------------------
// DNN (on-sensor inference) control and status
// ---------------------------------------------------------------------------

/// Stream mode select (8-bit): enables or disables the DNN (kernel:
/// `IMX500_REG_STRM_MODE_SEL`; older versions write `CCI_REG8(0xD100)`
/// directly). `imx500_start_streaming` writes [`DNN_ENABLE`] before stream
/// on when a network is loaded, `imx500_stop_streaming` writes
/// [`DNN_DISABLE`] after stream off.
pub const STREAM_MODE_SELECT: u16 = 0xD100;
/// [`STREAM_MODE_SELECT`]: DNN enabled (the kernel's "Enable DNN" value).
pub const DNN_ENABLE: u8 = 4;
/// [`STREAM_MODE_SELECT`]: DNN disabled (the kernel's "Disable DNN" value).
pub const DNN_DISABLE: u8 = 0;

/// `DD_SYS_STATE` (8-bit, read): the sensor CPU's system state (kernel:
/// `IMX500_REG_DD_SYS_STATE`, read by `imx500_transition_to_network` and
/// `imx500_clear_weights`). Values: [`SYS_STATE_STANDBY_NO_NETWORK`] …
/// [`SYS_STATE_STREAMING_WITH_NETWORK`]; bit 0 set = streaming.
pub const DD_SYS_STATE: u16 = 0xD02A;
/// [`DD_SYS_STATE`]: standby, no network loaded.
pub const SYS_STATE_STANDBY_NO_NETWORK: u8 = 0;
/// [`DD_SYS_STATE`]: streaming, no network loaded (the kernel spells it
/// `..._STEAMING_NO_NETWORK`).
pub const SYS_STATE_STREAMING_NO_NETWORK: u8 = 1;
/// [`DD_SYS_STATE`]: standby, network loaded.
pub const SYS_STATE_STANDBY_WITH_NETWORK: u8 = 2;
/// [`DD_SYS_STATE`]: streaming, network loaded.
pub const SYS_STATE_STREAMING_WITH_NETWORK: u8 = 3;

/// `DD_CMD_REPLY_STS` (8-bit, read): reply to the last download / state
/// transition command (kernel: `IMX500_REG_DD_CMD_REPLY_STS`, read by
/// `imx500_state_transition`). Values `CMD_REPLY_*`.
pub const DD_CMD_REPLY_STS: u16 = 0xD014;
/// [`DD_CMD_REPLY_STS`]: ready for a state-transition download.
pub const CMD_REPLY_TRANS_READY: u8 = 0x00;
/// [`DD_CMD_REPLY_STS`]: state transition done.
pub const CMD_REPLY_TRANS_DONE: u8 = 0x01;
/// [`DD_CMD_REPLY_STS`]: ready for an update download.
pub const CMD_REPLY_UPDATE_READY: u8 = 0x10;
/// [`DD_CMD_REPLY_STS`]: update done.
pub const CMD_REPLY_UPDATE_DONE: u8 = 0x11;
/// [`DD_CMD_REPLY_STS`]: update cancelled.
pub const CMD_REPLY_UPDATE_CANCEL_DONE: u8 = 0x12;
/// [`DD_CMD_REPLY_STS`]: packet format error.
pub const CMD_REPLY_PACKET_FORMAT_ERROR: u8 = 0xFA;
/// [`DD_CMD_REPLY_STS`]: internal error.
pub const CMD_REPLY_INTERNAL_ERROR: u8 = 0xFB;
/// [`DD_CMD_REPLY_STS`]: parameter error.
pub const CMD_REPLY_PARAMETER_ERROR: u8 = 0xFC;
/// [`DD_CMD_REPLY_STS`]: timeout error.
pub const CMD_REPLY_TIMEOUT_ERROR: u8 = 0xFD;
/// [`DD_CMD_REPLY_STS`]: MAC authentication error (firmware signature).
pub const CMD_REPLY_MAC_AUTH_ERROR: u8 = 0xFE;
/// [`DD_CMD_REPLY_STS`]: status error.
pub const CMD_REPLY_STATUS_ERROR: u8 = 0xFF;

/// `DD_ERR_STS` (8-bit, read): error notification bits (kernel:
/// `IMX500_REG_DD_ERR_STS`, defined but not read by the kernel driver).
pub const DD_ERR_STS: u16 = 0xD020;
/// [`DD_ERR_STS`] bit 0: status error.
pub const ERR_STS_STATUS_ERROR: u8 = 1 << 0;
/// [`DD_ERR_STS`] bit 1: internal error.
pub const ERR_STS_INTERNAL_ERROR: u8 = 1 << 1;
/// [`DD_ERR_STS`] bit 2: parameter error.
pub const ERR_STS_PARAMETER_ERROR: u8 = 1 << 2;

/// Main firmware version (32-bit, read) (kernel:
/// `IMX500_REG_MAIN_FW_VERSION`, read and logged by
/// `imx500_transition_to_standby_wo_network` as six 4-bit digits).
pub const MAIN_FW_VERSION: u16 = 0xD07C;

// ---------------------------------------------------------------------------
// DNN output on the CSI-2 link (embedded data lines)
// ---------------------------------------------------------------------------

/// `DD_CH06_X_OUT_SIZE` (16-bit): pixels (bytes at 8 bits/pixel) per output
/// line of the KPI channel. The kernel's `mode_common_regs` writes
/// [`TENSOR_LINE_STRIDE_DEFAULT`] to this and the three following channels.
pub const DD_CH06_X_OUT_SIZE_KPI: u16 = 0x3054;
/// `DD_CH07_X_OUT_SIZE` (16-bit): pixels per line of the input tensor.
pub const DD_CH07_X_OUT_SIZE_INPUT_TENSOR: u16 = 0x3056;
/// `DD_CH08_X_OUT_SIZE` (16-bit): pixels per line of the output tensor.
pub const DD_CH08_X_OUT_SIZE_OUTPUT_TENSOR: u16 = 0x3058;
/// `DD_CH09_X_OUT_SIZE` (16-bit): pixels per line of the PQ settings.
pub const DD_CH09_X_OUT_SIZE_PQ: u16 = 0x305A;
/// Line stride of the DNN output the kernel driver programs
/// (`IMX500_INFERENCE_LINE_WIDTH`), in pixels = bytes at 8 bits/pixel.
pub const TENSOR_LINE_STRIDE_DEFAULT: u16 = 2560;
/// Line stride assumed by an earlier libcamera IMX500 tensor parser
/// (`TensorStride = 4064`, "setup in the IMX500 driver"); kept for hosts that
/// still parse with it.
pub const TENSOR_LINE_STRIDE_4064: u16 = 4064;
