//! IMX219 register map: addresses and field values.
//!
//! Register addresses are 16 bits wide and sent big-endian. Registers marked
//! *16-bit* occupy two consecutive addresses (high byte first) and the driver
//! always writes both bytes in a single I²C transaction, so the sensor never
//! latches a half-updated value.
//!
//! Each constant's documentation gives the name the IMX219 datasheet uses for
//! it. Registers in `0x0000..=0x0FFF` follow the SMIA / MIPI CCS layout, so
//! the CCS name is given where it differs. Facts cross-checked against the
//! Linux `drivers/media/i2c/imx219.c` driver.
//!
//! Only registers the driver uses are listed. The undocumented
//! manufacturer-specific writes (`0x30EB` unlock sequence, `0x4xxx` tuning
//! values) that the Linux driver copies from the Raspberry Pi firmware are
//! deliberately left out: they have no datasheet name or documented meaning.

// ---------------------------------------------------------------------------
// General status and control
// ---------------------------------------------------------------------------

/// `MODEL_ID` (16-bit, read-only): sensor model number, reads
/// [`MODEL_ID_IMX219`].
pub const MODEL_ID: u16 = 0x0000;
/// Value of [`MODEL_ID`] on an IMX219.
pub const MODEL_ID_IMX219: u16 = 0x0219;

/// `mode_select` (8-bit): software standby / streaming.
pub const MODE_SELECT: u16 = 0x0100;
/// [`MODE_SELECT`]: software standby (no frames are output).
pub const MODE_SELECT_STANDBY: u8 = 0x00;
/// [`MODE_SELECT`]: streaming.
pub const MODE_SELECT_STREAMING: u8 = 0x01;

/// `software_reset` (8-bit): writing
/// [`SW_RESET_TRIGGER`] resets every register to its default and puts the
/// sensor in software standby.
pub const SW_RESET: u16 = 0x0103;
/// [`SW_RESET`]: start a software reset.
pub const SW_RESET_TRIGGER: u8 = 0x01;

// ---------------------------------------------------------------------------
// Output set-up
// ---------------------------------------------------------------------------

/// `CSI_LANE_MODE` (8-bit): number of MIPI CSI-2 data lanes.
pub const CSI_LANE_MODE: u16 = 0x0114;
/// [`CSI_LANE_MODE`]: 2 data lanes (Raspberry Pi Camera v2 wiring).
pub const CSI_LANE_MODE_2_LANES: u8 = 0x01;
/// [`CSI_LANE_MODE`]: 4 data lanes (needs a different PLL set-up; not used
/// by this driver).
pub const CSI_LANE_MODE_4_LANES: u8 = 0x03;

/// `DPHY_CTRL` (8-bit): MIPI D-PHY timing control.
pub const DPHY_CTRL: u16 = 0x0128;
/// [`DPHY_CTRL`]: D-PHY timing computed automatically from the link rate.
pub const DPHY_CTRL_TIMING_AUTO: u8 = 0x00;

/// `EXCK_FREQ` (16-bit): external clock (INCK) frequency in MHz, as an
/// unsigned 8.8 fixed-point number.
pub const EXCK_FREQ: u16 = 0x012A;
/// [`EXCK_FREQ`]: 24 MHz (`24 << 8`).
pub const EXCK_FREQ_24_MHZ: u16 = 24 << 8;

/// `CSI_DATA_FORMAT_A` (16-bit): high byte = bit
/// depth before compression, low byte = bit depth on the CSI-2 link.
pub const CSI_DATA_FORMAT: u16 = 0x018C;
/// [`CSI_DATA_FORMAT`]: RAW10 in, RAW10 out.
pub const CSI_DATA_FORMAT_RAW10: u16 = 0x0A0A;

// ---------------------------------------------------------------------------
// Integration time and gain (per-frame controls, allowed while streaming)
// ---------------------------------------------------------------------------

/// `ANA_GAIN_GLOBAL_A` (8-bit; CCS `analogue_gain_code_global`): analogue
/// gain code `c`, gain = 256 / (256 − c), `c` in `0..=232`.
pub const ANALOG_GAIN: u16 = 0x0157;

/// `DIG_GAIN_GLOBAL_A` (16-bit): digital gain, unsigned 4.8 fixed point
/// (`0x0100` = 1.0×), valid range `0x0100..=0x0FFF`.
pub const DIGITAL_GAIN: u16 = 0x0158;

/// `COARSE_INTEGRATION_TIME_A` (16-bit): exposure time in lines.
pub const COARSE_INTEGRATION_TIME: u16 = 0x015A;

// ---------------------------------------------------------------------------
// Frame timing
// ---------------------------------------------------------------------------

/// `FRM_LENGTH_A` (16-bit; CCS `frame_length_lines`): frame length in lines
/// (VTS); output height plus vertical blanking.
pub const FRAME_LENGTH_LINES: u16 = 0x0160;

/// `LINE_LENGTH_A` (16-bit; CCS `line_length_pck`): line length in pixel
/// clocks (HTS).
pub const LINE_LENGTH_PCK: u16 = 0x0162;

// ---------------------------------------------------------------------------
// Image size and readout
// ---------------------------------------------------------------------------

/// `X_ADD_STA_A` (16-bit; CCS `x_addr_start`): first column read out,
/// relative to the 3280 × 2464 active array.
pub const X_ADDR_START: u16 = 0x0164;
/// `X_ADD_END_A` (16-bit; CCS `x_addr_end`): last column read out
/// (inclusive).
pub const X_ADDR_END: u16 = 0x0166;
/// `Y_ADD_STA_A` (16-bit; CCS `y_addr_start`): first row read out.
pub const Y_ADDR_START: u16 = 0x0168;
/// `Y_ADD_END_A` (16-bit; CCS `y_addr_end`): last row read out (inclusive).
pub const Y_ADDR_END: u16 = 0x016A;
/// `x_output_size_A` (16-bit): output image width in pixels.
pub const X_OUTPUT_SIZE: u16 = 0x016C;
/// `y_output_size_A` (16-bit): output image height in lines.
pub const Y_OUTPUT_SIZE: u16 = 0x016E;

/// `X_ODD_INC_A` (8-bit): column increment for odd pixels (sub-sampling).
pub const X_ODD_INC: u16 = 0x0170;
/// `Y_ODD_INC_A` (8-bit): row increment for odd lines (sub-sampling).
pub const Y_ODD_INC: u16 = 0x0171;
/// [`X_ODD_INC`] / [`Y_ODD_INC`]: increment 1, i.e. no sub-sampling.
pub const ODD_INC_NONE: u8 = 0x01;

/// `IMG_ORIENTATION_A` (8-bit; CCS `image_orientation`): readout direction.
pub const IMG_ORIENTATION: u16 = 0x0172;
/// [`IMG_ORIENTATION`] bit 0: horizontal mirror.
pub const IMG_ORIENTATION_H_MIRROR: u8 = 1 << 0;
/// [`IMG_ORIENTATION`] bit 1: vertical flip.
pub const IMG_ORIENTATION_V_FLIP: u8 = 1 << 1;

/// `BINNING_MODE_H_A` (8-bit): horizontal binning.
pub const BINNING_MODE_H: u16 = 0x0174;
/// `BINNING_MODE_V_A` (8-bit): vertical binning.
pub const BINNING_MODE_V: u16 = 0x0175;
/// [`BINNING_MODE_H`] / [`BINNING_MODE_V`]: no binning.
pub const BINNING_NONE: u8 = 0x00;
/// [`BINNING_MODE_H`] / [`BINNING_MODE_V`]: ×2 binning (the mode the Linux
/// driver uses for RAW10).
pub const BINNING_X2: u8 = 0x01;
/// [`BINNING_MODE_H`] / [`BINNING_MODE_V`]: ×2 analogue ("special") binning
/// (the Linux driver uses it for RAW8 only; not used by this driver).
pub const BINNING_X2_ANALOG: u8 = 0x03;

// ---------------------------------------------------------------------------
// Clock set-up (PLL)
// ---------------------------------------------------------------------------
//
// With EXCK = 24 MHz:
//   PLL input      24 MHz / PREPLLCK_*_DIV (3)     = 8 MHz
//   video timing   8 MHz × PLL_VT_MPY (57)          = 456 MHz
//                  456 MHz / VTPXCK_DIV (5)         = 91.2 MHz per pixel
//                  pipeline; two pipelines          = 182.4 Mpixel/s
//   output         8 MHz × PLL_OP_MPY (114)         = 912 Mbit/s per lane
//                  (456 MHz DDR link clock)

/// `VTPXCK_DIV` (8-bit): video-timing pixel clock divider.
pub const VTPXCK_DIV: u16 = 0x0301;
/// [`VTPXCK_DIV`]: ÷5 (456 MHz → 91.2 MHz per pixel pipeline).
pub const VTPXCK_DIV_5: u8 = 5;

/// `VTSYCK_DIV` (8-bit): video-timing system clock divider.
pub const VTSYCK_DIV: u16 = 0x0303;
/// [`VTSYCK_DIV`]: ÷1.
pub const VTSYCK_DIV_1: u8 = 1;

/// `PREPLLCK_VT_DIV` (8-bit): pre-PLL divider of the video-timing PLL.
pub const PREPLLCK_VT_DIV: u16 = 0x0304;
/// `PREPLLCK_OP_DIV` (8-bit): pre-PLL divider of the output PLL.
pub const PREPLLCK_OP_DIV: u16 = 0x0305;
/// [`PREPLLCK_VT_DIV`] / [`PREPLLCK_OP_DIV`]: value 3, which gives the
/// 8 MHz PLL input from a 24 MHz EXCK (the Linux driver labels it "auto").
pub const PREPLLCK_DIV_EXCK_24_MHZ: u8 = 3;

/// `PLL_VT_MPY` (16-bit, 11 bits used): video-timing PLL multiplier.
pub const PLL_VT_MPY: u16 = 0x0306;
/// [`PLL_VT_MPY`]: ×57 (8 MHz → 456 MHz).
pub const PLL_VT_MPY_57: u16 = 57;

/// `OPPXCK_DIV` (8-bit): output pixel clock divider; equals the bit depth.
pub const OPPXCK_DIV: u16 = 0x0309;
/// [`OPPXCK_DIV`]: 10 (RAW10).
pub const OPPXCK_DIV_RAW10: u8 = 10;

/// `OPSYCK_DIV` (8-bit): output system clock divider.
pub const OPSYCK_DIV: u16 = 0x030B;
/// [`OPSYCK_DIV`]: ÷1.
pub const OPSYCK_DIV_1: u8 = 1;

/// `PLL_OP_MPY` (16-bit, 11 bits used): output PLL multiplier.
pub const PLL_OP_MPY: u16 = 0x030C;
/// [`PLL_OP_MPY`]: ×114 (8 MHz → 912 MHz, i.e. a 456 MHz DDR link clock).
pub const PLL_OP_MPY_114: u16 = 114;

// ---------------------------------------------------------------------------
// Test pattern
// ---------------------------------------------------------------------------

/// `test_pattern_mode` (16-bit, `0x0600..=0x0601`): test pattern generator
/// selection.
pub const TEST_PATTERN: u16 = 0x0600;
/// [`TEST_PATTERN`]: disabled, sensor image is output.
pub const TEST_PATTERN_DISABLED: u16 = 0;
/// [`TEST_PATTERN`]: solid colour from [`TEST_PATTERN_RED`] …
/// [`TEST_PATTERN_GREEN_B`].
pub const TEST_PATTERN_SOLID_COLOUR: u16 = 1;
/// [`TEST_PATTERN`]: 100 % colour bars.
pub const TEST_PATTERN_COLOUR_BARS: u16 = 2;
/// [`TEST_PATTERN`]: fade-to-grey colour bars.
pub const TEST_PATTERN_FADE_TO_GREY: u16 = 3;
/// [`TEST_PATTERN`]: PN9 pseudo-random pattern.
pub const TEST_PATTERN_PN9: u16 = 4;

/// `TD_R` (16-bit): solid-colour red value (10 bits).
pub const TEST_PATTERN_RED: u16 = 0x0602;
/// `TD_GR` (16-bit): solid-colour green-on-red-row value (10 bits).
pub const TEST_PATTERN_GREEN_R: u16 = 0x0604;
/// `TD_B` (16-bit): solid-colour blue value (10 bits).
pub const TEST_PATTERN_BLUE: u16 = 0x0606;
/// `TD_GB` (16-bit): solid-colour green-on-blue-row value (10 bits).
pub const TEST_PATTERN_GREEN_B: u16 = 0x0608;

/// `TP_WINDOW_WIDTH` (16-bit): width of the test-pattern window; the driver
/// keeps it equal to the output width.
pub const TP_WINDOW_WIDTH: u16 = 0x0624;
/// `TP_WINDOW_HEIGHT` (16-bit): height of the test-pattern window; the
/// driver keeps it equal to the output height.
pub const TP_WINDOW_HEIGHT: u16 = 0x0626;
