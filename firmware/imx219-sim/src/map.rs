//! The simulated register map: which addresses exist, their reset defaults,
//! which are read-only and which may not change while streaming.
//!
//! The map is every constant of [`ocellus_imx219::registers`] plus the
//! test-pattern window offsets (`TP_WINDOW_X_OFFSET` / `TP_WINDOW_Y_OFFSET`,
//! `0x0620..=0x0623`), so that the four test-pattern window registers are
//! complete. Any other address is *unknown*: the simulator NACKs it and
//! records [`crate::Violation::UnknownRegister`].
//!
//! # Defaults
//!
//! The real chip's defaults are those of the IMX219 register table; the
//! values below are the ones this simulator uses:
//!
//! * `MODEL_ID` = `0x0219` (datasheet; the driver checks it).
//! * `MODE_SELECT` = 0 (software standby after power-on and reset;
//!   datasheet).
//! * `SW_RESET` reads 0: it is a self-clearing trigger.
//! * Readout geometry defaults to the full 3280 × 2464 array, unbinned
//!   (`X_ADDR_END` = 3279, `Y_ADDR_END` = 2463, output 3280 × 2464,
//!   `*_ODD_INC` = 1, binning 0, orientation 0), `LINE_LENGTH_PCK` = 3448 —
//!   the full-resolution values of the datasheet / Linux mode table, so that
//!   a freshly reset sensor is self-consistent.
//! * Gains default to 1.0× (analogue code 0, digital `0x0100`).
//! * Clock set-up defaults to the values the driver programs (EXCK 24 MHz,
//!   PLL ÷3 ×57 / ×114, `VTPXCK_DIV` 5, `OPPXCK_DIV` 10, RAW10, 2 lanes).
//!   **Assumed**: these and the defaults of `COARSE_INTEGRATION_TIME`
//!   (`0x03E8` = 1000 lines), `FRAME_LENGTH_LINES` (`0x0A83` = 2691 lines),
//!   `CSI_LANE_MODE` and `EXCK_FREQ` were not checked against the datasheet
//!   table. The driver writes every one of them after its reset, so nothing
//!   it does depends on them.
//! * Test pattern off, colours 0, test-pattern window offset 0 and size
//!   3280 × 2464.

use ocellus_imx219::registers as r;

/// Who may write a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Readable, not writable: a write is NACKed and recorded as
    /// [`crate::Violation::ReadOnly`].
    ReadOnly,
    /// Readable and writable.
    ReadWrite,
    /// Self-clearing trigger (`SW_RESET`): writable, always reads 0.
    Trigger,
}

/// Whether a register may be written while streaming (`MODE_SELECT` = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WhileStreaming {
    /// Per-frame control or state control: allowed.
    Allowed,
    /// Readout geometry, output format or clock set-up: a write while
    /// streaming is NACKed and recorded as
    /// [`crate::Violation::ChangeWhileStreaming`].
    StandbyOnly,
}

/// One register of the simulated map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisterDef {
    /// Datasheet name (see [`ocellus_imx219::registers`]).
    pub name: &'static str,
    /// First (high-byte) address.
    pub addr: u16,
    /// Width in bytes: 1 or 2 (2 = big-endian at `addr`, `addr + 1`).
    pub width: u8,
    /// Reset default.
    pub default: u16,
    /// Who may write it.
    pub access: Access,
    /// Whether it may change while streaming.
    pub while_streaming: WhileStreaming,
}

const fn reg(
    name: &'static str,
    addr: u16,
    width: u8,
    default: u16,
    access: Access,
    while_streaming: WhileStreaming,
) -> RegisterDef {
    RegisterDef {
        name,
        addr,
        width,
        default,
        access,
        while_streaming,
    }
}

use Access::{ReadOnly, ReadWrite, Trigger};
use WhileStreaming::{Allowed, StandbyOnly};

/// `TP_WINDOW_X_OFFSET` (16-bit): horizontal offset of the test-pattern
/// window (not used by the driver; part of the simulated map).
pub const TP_WINDOW_X_OFFSET: u16 = 0x0620;
/// `TP_WINDOW_Y_OFFSET` (16-bit): vertical offset of the test-pattern
/// window (not used by the driver; part of the simulated map).
pub const TP_WINDOW_Y_OFFSET: u16 = 0x0622;

/// Every register the simulator knows, with its default and access rules.
pub const REGISTER_MAP: &[RegisterDef] = &[
    reg("MODEL_ID", r::MODEL_ID, 2, 0x0219, ReadOnly, Allowed),
    reg("MODE_SELECT", r::MODE_SELECT, 1, 0, ReadWrite, Allowed),
    reg("SW_RESET", r::SW_RESET, 1, 0, Trigger, Allowed),
    reg(
        "CSI_LANE_MODE",
        r::CSI_LANE_MODE,
        1,
        0x01,
        ReadWrite,
        StandbyOnly,
    ),
    reg("DPHY_CTRL", r::DPHY_CTRL, 1, 0x00, ReadWrite, StandbyOnly),
    reg("EXCK_FREQ", r::EXCK_FREQ, 2, 0x1800, ReadWrite, StandbyOnly),
    reg(
        "CSI_DATA_FORMAT",
        r::CSI_DATA_FORMAT,
        2,
        0x0A0A,
        ReadWrite,
        StandbyOnly,
    ),
    reg("ANALOG_GAIN", r::ANALOG_GAIN, 1, 0, ReadWrite, Allowed),
    reg(
        "DIGITAL_GAIN",
        r::DIGITAL_GAIN,
        2,
        0x0100,
        ReadWrite,
        Allowed,
    ),
    reg(
        "COARSE_INTEGRATION_TIME",
        r::COARSE_INTEGRATION_TIME,
        2,
        0x03E8,
        ReadWrite,
        Allowed,
    ),
    reg(
        "FRAME_LENGTH_LINES",
        r::FRAME_LENGTH_LINES,
        2,
        0x0A83,
        ReadWrite,
        Allowed,
    ),
    reg(
        "LINE_LENGTH_PCK",
        r::LINE_LENGTH_PCK,
        2,
        3448,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "X_ADDR_START",
        r::X_ADDR_START,
        2,
        0,
        ReadWrite,
        StandbyOnly,
    ),
    reg("X_ADDR_END", r::X_ADDR_END, 2, 3279, ReadWrite, StandbyOnly),
    reg(
        "Y_ADDR_START",
        r::Y_ADDR_START,
        2,
        0,
        ReadWrite,
        StandbyOnly,
    ),
    reg("Y_ADDR_END", r::Y_ADDR_END, 2, 2463, ReadWrite, StandbyOnly),
    reg(
        "X_OUTPUT_SIZE",
        r::X_OUTPUT_SIZE,
        2,
        3280,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "Y_OUTPUT_SIZE",
        r::Y_OUTPUT_SIZE,
        2,
        2464,
        ReadWrite,
        StandbyOnly,
    ),
    reg("X_ODD_INC", r::X_ODD_INC, 1, 1, ReadWrite, StandbyOnly),
    reg("Y_ODD_INC", r::Y_ODD_INC, 1, 1, ReadWrite, StandbyOnly),
    reg(
        "IMG_ORIENTATION",
        r::IMG_ORIENTATION,
        1,
        0,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "BINNING_MODE_H",
        r::BINNING_MODE_H,
        1,
        0,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "BINNING_MODE_V",
        r::BINNING_MODE_V,
        1,
        0,
        ReadWrite,
        StandbyOnly,
    ),
    reg("VTPXCK_DIV", r::VTPXCK_DIV, 1, 5, ReadWrite, StandbyOnly),
    reg("VTSYCK_DIV", r::VTSYCK_DIV, 1, 1, ReadWrite, StandbyOnly),
    reg(
        "PREPLLCK_VT_DIV",
        r::PREPLLCK_VT_DIV,
        1,
        3,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "PREPLLCK_OP_DIV",
        r::PREPLLCK_OP_DIV,
        1,
        3,
        ReadWrite,
        StandbyOnly,
    ),
    reg("PLL_VT_MPY", r::PLL_VT_MPY, 2, 57, ReadWrite, StandbyOnly),
    reg("OPPXCK_DIV", r::OPPXCK_DIV, 1, 10, ReadWrite, StandbyOnly),
    reg("OPSYCK_DIV", r::OPSYCK_DIV, 1, 1, ReadWrite, StandbyOnly),
    reg("PLL_OP_MPY", r::PLL_OP_MPY, 2, 114, ReadWrite, StandbyOnly),
    reg("TEST_PATTERN", r::TEST_PATTERN, 2, 0, ReadWrite, Allowed),
    reg(
        "TEST_PATTERN_RED",
        r::TEST_PATTERN_RED,
        2,
        0,
        ReadWrite,
        Allowed,
    ),
    reg(
        "TEST_PATTERN_GREEN_R",
        r::TEST_PATTERN_GREEN_R,
        2,
        0,
        ReadWrite,
        Allowed,
    ),
    reg(
        "TEST_PATTERN_BLUE",
        r::TEST_PATTERN_BLUE,
        2,
        0,
        ReadWrite,
        Allowed,
    ),
    reg(
        "TEST_PATTERN_GREEN_B",
        r::TEST_PATTERN_GREEN_B,
        2,
        0,
        ReadWrite,
        Allowed,
    ),
    reg(
        "TP_WINDOW_X_OFFSET",
        TP_WINDOW_X_OFFSET,
        2,
        0,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "TP_WINDOW_Y_OFFSET",
        TP_WINDOW_Y_OFFSET,
        2,
        0,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "TP_WINDOW_WIDTH",
        r::TP_WINDOW_WIDTH,
        2,
        3280,
        ReadWrite,
        StandbyOnly,
    ),
    reg(
        "TP_WINDOW_HEIGHT",
        r::TP_WINDOW_HEIGHT,
        2,
        2464,
        ReadWrite,
        StandbyOnly,
    ),
];

/// The register covering `addr` and the byte offset of `addr` in it
/// (0 = high byte), or `None` for an unknown address.
#[must_use]
pub fn lookup(addr: u16) -> Option<(&'static RegisterDef, u16)> {
    REGISTER_MAP.iter().find_map(|def| {
        let offset = addr.checked_sub(def.addr)?;
        (offset < u16::from(def.width)).then_some((def, offset))
    })
}
