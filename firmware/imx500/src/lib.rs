//! `no_std` control driver for the Sony IMX500 intelligent vision sensor, the
//! sensor of the Raspberry Pi AI Camera, built on the [`embedded-hal`] 1.0
//! I²C and delay traits.
//!
//! The IMX500 is a 12.3-megapixel stacked sensor with a DNN accelerator on
//! the die: it outputs RAW10 frames and, in the same CSI-2 frame, the result
//! of a neural network run on each image. This crate is the *control* half
//! for bring-up on a board: chip check, readout mode and frame rate,
//! exposure and analogue gain, streaming on/off, DNN on/off, the DNN output
//! line stride, and the DNN status registers. It talks to the sensor over
//! its I²C control interface (CCI, 7-bit address [`I2C_ADDRESS`] = `0x1A`,
//! 16-bit register addresses).
//!
//! Register facts come from the Raspberry Pi Linux driver
//! (`drivers/media/i2c/imx500.c`; Sony has not published a register manual)
//! and libcamera's `cam_helper_imx500.cpp`; see [`registers`].
//!
//! # What this driver expects to be done already
//!
//! The IMX500 does not work from registers alone: its CPU runs a loader and
//! a main firmware, and the network is a third firmware image, all
//! downloaded over **SPI** with a handshake on the `DD_*` registers. On the
//! Raspberry Pi the kernel driver does this (the `imx500-all` package
//! installs `imx500_loader.fpk` and `imx500_firmware.fpk` under
//! `/lib/firmware`; the network `.rpk` is handed to the driver by
//! userspace through a V4L2 control). **This crate implements none of it**:
//! ocellus expects the kernel or the board's boot firmware to have
//!
//! 1. powered the sensor (see *Before calling* [`Imx500::new`] below);
//! 2. written the full sensor initialisation, i.e. what the kernel driver
//!    writes and this crate does not:
//!    * `mode_common_regs`: PLL settings `0x0305`/`0x0306`/`0x030D`/`0x030E`,
//!      `FAST_STANDBY_CTL` `0x0106` = 1, `EXCLK_FREQ` `0x0136`/`0x0137`
//!      (written `0x1B00` by the kernel although the clock is 24 MHz;
//!      unexplained), CSI data format `0x0112`/`0x0113` = RAW10,
//!      `CSI_LANE_MODE` `0x0114` = 2 lanes, the DNN output channel widths
//!      `0x3054..=0x305A` (the tensor line stride, 2560), KPI and PQ line
//!      counts `0x305C`/`0x3062` = 1, channel data types `0x3068..=0x306B`;
//!    * the rest of each mode table: a few hundred writes, most of them to
//!      manufacturer registers in `0x3xxx..=0xBxxx` with no published
//!      meaning (about 30 of those differ between the two modes), the clock
//!      dividers `0x0301..=0x0310`,
//!      `0x0820..=0x0823`, the sub-sampling increments `0x0381..=0x0387`,
//!      scaling `0x0401`/`0x0404`, digital crop offsets `0x0408`/`0x040A`,
//!      `0x0350`, and the per-colour digital gains `0x020E..=0x0215` = 1.0;
//!    * `metadata_output` (after the main firmware is loaded): MIPI output
//!      enable `0x3050`, pixel data in the frame `0x3051`, metadata in the
//!      frame `0x3052`, virtual channel 0 (`0x3064..=0x3067`), data type
//!      `0x12` (`0x3068..=0x306B`) and 8-bit packing (`0x306C..=0x306F`)
//!      for the KPI, input tensor, output tensor and PQ channels;
//!    * `dnn_regs`: the ISP that feeds the network (`0xD960..`, black level
//!      `0xD80C..`, gamma `0xD814`, `0xD850..=0xD954`, lens shading
//!      `0xE000..=0xE5FC`, `0xD822`/`0xD823`), then the register writes the
//!      network file carries (its `imx500_regs` cpio entry: normalisation,
//!      input format, tensor line counts `0x305E`/`0x3060`), network 0
//!      selected (`0xD701` = 0), `IMAGE_ONLY_MODE` `0xA700` = 0;
//!    * newer kernels also turn the temperature sensor (`0x0138`) off for
//!      the downloads and on again before stream on, and every stream on
//!      writes `0xD405` = 0 ("disable sensor startup frame drops") just
//!      before `MODE_SELECT`; this driver's [`Imx500::start_streaming`] does
//!      not;
//! 3. downloaded the loader, main firmware and network weights, so that
//!    [`Imx500::dnn_status`] reads [`DnnStatus::StandbyWithNetwork`].
//!
//! [`Imx500::set_mode`] writes only the registers whose meaning is known
//! (timing, window, binning, crop, output size). Switching between the two
//! modes through this driver alone, without the kernel's manufacturer
//! registers for the new mode, has **not been verified on hardware**; the
//! safe path is to let the init firmware program the mode you use and call
//! `set_mode` with that same mode to set the frame rate.
//!
//! # The DNN output ocellus expects
//!
//! With the network loaded and the DNN enabled ([`Imx500::dnn_enable`]),
//! each CSI-2 frame carries, besides the RAW10 image, embedded-data lines
//! (8 bits per pixel, CSI-2 data type `0x12`, virtual channel 0). On the Pi
//! they arrive on the sensor's second (metadata) pad, i.e. the CSI-2
//! receiver's embedded-data `/dev/videoN` node, as one buffer:
//!
//! * 2 lines of SMIA-style register embedded data, `width · 10 / 8` bytes
//!   each for the current mode's width (libcamera rounds this up to 16 bytes
//!   when the receiver pads lines: 5072 at full resolution, 2544 binned;
//!   the kernel sizes the buffer for 2 × 5072);
//! * then lines of [`TENSOR_LINE_STRIDE_DEFAULT`] (2560) bytes, the stride
//!   set by [`Imx500::set_tensor_line_stride`]:
//!   1 line of KPI (timing) data, the input tensor, the output tensor, and
//!   1 line of PQ settings. The input and output tensors each start on a
//!   new line with a 12-byte DNN header (as libcamera reads it on a
//!   little-endian host: `frame_valid: u8`,
//!   `frame_count: u8`, `max_line_len: u16`, `ap_param_size: u16`,
//!   `network_id: u16`, `tensor_type: u8` (0 = input, 1 = output), 3 bytes
//!   reserved), followed by the `ap_param_size` bytes of FlatBuffers
//!   parameters (tensor shapes, scales) and, from the next line, the tensor
//!   body. The number of tensor lines depends on the network.
//!
//! The host must parse with the stride the sensor was programmed with:
//! the current kernel driver and libcamera use 2560, an earlier libcamera
//! parser assumed 4064 ([`registers::TENSOR_LINE_STRIDE_4064`]).
//!
//! # Before calling [`Imx500::new`]
//!
//! The driver does not own the power rails, the clock or the reset line.
//! What the Raspberry Pi kernel driver does (`imx500_power_on`), with the
//! datasheet timing names it quotes:
//!
//! 1. enable the supplies, in any order: VANA 2.7 V (analogue), VDIG
//!    0.84 V (digital core), VIF 1.8 V (interface);
//! 2. wait ≥ 1 µs (T4; the kernel waits 2 µs) and start the 24 MHz INCK
//!    (the kernel refuses any other frequency);
//! 3. drive XCLR (the reset GPIO, active high) high, after INCK runs (T5);
//! 4. wait ≥ 9 ms (T7, "INCK start and XCLR rising till send streaming
//!    command"; the kernel sleeps 9–12 ms) before the first I²C access.
//!
//! Power off (`imx500_power_off`): stop INCK, XCLR low, then the supplies
//! (not the reverse of power on). A power cycle loses the firmware and the
//! network. On the AI Camera, XCLR, the INCK gate and the SPI link used for
//! the downloads all belong to the camera board's RP2040 (the device tree's
//! `rpi-rp2040-gpio-bridge`), not to the Pi. The CSI-2 link is 2 lanes at
//! 444 MHz (the kernel refuses other device-tree settings); pixel rate
//! 744 Mpixel/s.
//!
//! # Usage
//!
//! The sensor's power state is a type parameter: [`Standby`] or
//! [`Streaming`]. The readout mode, the DNN enable and the tensor line
//! stride only change in standby (the kernel driver enables the DNN before
//! stream on and disables it after stream off); exposure and gain are
//! per-frame controls and can be changed in both states, and the status
//! registers can be read in both. A failed state change hands the device
//! back in its old state together with the error.
//!
//! ```
//! use embedded_hal::{delay::DelayNs, i2c::I2c};
//! use ocellus_imx500::{DnnStatus, Error, Imx500, Mode};
//!
//! fn bring_up<I2C: I2c, D: DelayNs>(i2c: I2C, delay: D) -> Result<(), Error<I2C::Error>> {
//!     // Checks CHIP_ID, puts the sensor in standby and programs the default
//!     // mode. On failure the bus and delay come back with the error.
//!     let mut camera = match Imx500::new(i2c, delay) {
//!         Ok(camera) => camera,
//!         Err((error, _i2c, _delay)) => return Err(error),
//!     };
//!     if camera.dnn_status()? != DnnStatus::StandbyWithNetwork {
//!         // No network: the kernel / boot firmware has not loaded one.
//!     }
//!
//!     camera.set_mode(Mode::Binned2028x1520, 30.0)?;
//!     camera.set_exposure_us(10_000.0)?; // returns the lines applied (792)
//!     camera.set_analog_gain(2.0)?; // returns the code applied (512)
//!     camera.dnn_enable()?;
//!
//!     let mut camera = camera.start_streaming().map_err(|(error, _standby)| error)?;
//!     camera.wait_for_dnn_status(DnnStatus::StreamingWithNetwork, 20)?;
//!     camera.set_exposure_lines(1200)?; // allowed while streaming
//!     // camera.set_mode(..) or camera.dnn_disable() would not compile here.
//!     let mut camera = camera.stop_streaming().map_err(|(error, _streaming)| error)?;
//!     camera.dnn_disable()?;
//!
//!     let (_i2c, _delay) = camera.destroy();
//!     Ok(())
//! }
//! ```
//!
//! # Errors and getting the bus back
//!
//! Every method returns [`Error<E>`](Error), `E` being the bus error type.
//! Methods that consume the driver never lose the bus:
//!
//! * [`Imx500::new`] returns `Err((error, i2c, delay))`, so a wrong chip
//!   ([`Error::UnexpectedChipId`]) or a NACK during initialisation gives the
//!   bus back for another device or another try;
//! * [`Imx500::start_streaming`] / [`Imx500::stop_streaming`] return
//!   `Err((error, driver_in_its_previous_state))`;
//! * [`Imx500::destroy`] releases the bus and delay in any state.
//!
//! Out-of-range numeric requests (exposure, gain) are clamped to the
//! sensor's range and the setters return the value actually written; inputs
//! with no sensible nearest value (NaN, a frame rate the mode cannot reach,
//! a zero line stride) are rejected with [`Error::InvalidInput`] before
//! anything is written.
//!
//! # Features
//!
//! * `defmt`: derives `defmt::Format` for the public types.
//!
//! [`embedded-hal`]: https://docs.rs/embedded-hal/1

#![no_std]
#![deny(clippy::indexing_slicing)]

use core::marker::PhantomData;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorType, I2c};

mod conversion;
mod dnn;
mod error;
mod math;
mod mode;
pub mod registers;

pub use conversion::{analog_gain_code_from_gain, analog_gain_from_code};
pub use dnn::{CommandReply, DnnErrors, DnnStatus, FirmwareVersion};
pub use error::Error;
pub use mode::{Binning, Mode, Window};
pub use registers::TENSOR_LINE_STRIDE_DEFAULT;

/// 7-bit I²C address of the IMX500 (the Raspberry Pi device tree's
/// `imx500@1a`).
pub const I2C_ADDRESS: u8 = 0x1A;

/// External clock (INCK) frequency the kernel driver requires.
pub const EXTERNAL_CLOCK_HZ: u32 = 24_000_000;
/// Pixel rate with the kernel driver's set-up (`IMX500_PIXEL_RATE`).
pub const PIXEL_RATE_HZ: u32 = 744_000_000;
/// CSI-2 link frequency, 2 lanes (`IMX500_DEFAULT_LINK_FREQ`).
pub const LINK_FREQUENCY_HZ: u32 = 444_000_000;

/// Width of the active pixel array.
pub const PIXEL_ARRAY_WIDTH: u16 = 4056;
/// Height of the active pixel array.
pub const PIXEL_ARRAY_HEIGHT: u16 = 3040;

/// Largest frame length without the long-exposure multiplier
/// (`IMX500_FRAME_LENGTH_MAX`).
pub const FRAME_LENGTH_LINES_MAX: u16 = 0xFFDC;
/// Minimum vertical blanking in lines (`IMX500_VBLANK_MIN`).
pub const VBLANK_MIN_LINES: u16 = 1117;
/// Shortest exposure in lines (`IMX500_EXPOSURE_MIN`).
pub const EXPOSURE_MIN_LINES: u16 = 8;
/// The exposure must be at least this many lines shorter than the frame
/// (`IMX500_EXPOSURE_OFFSET`; libcamera's `frameIntegrationDiff`).
pub const EXPOSURE_MARGIN_LINES: u16 = 22;
/// Largest analogue gain code (`IMX500_ANA_GAIN_MAX`; 22.26×).
pub const ANALOG_GAIN_CODE_MAX: u16 = 978;

/// Mode programmed by [`Imx500::new`] (the kernel driver's default).
pub const DEFAULT_MODE: Mode = Mode::Full4056x3040;
/// Exposure programmed by [`Imx500::new`] (`IMX500_EXPOSURE_DEFAULT`,
/// 1600 lines ≈ 38.5 ms at full resolution).
pub const DEFAULT_EXPOSURE_LINES: u16 = 1600;
/// Interval between two reads of [`Imx500::wait_for_dnn_status`], in ms
/// (the kernel driver's `imx500_poll_status_reg` interval).
pub const DNN_STATUS_POLL_INTERVAL_MS: u32 = 50;

/// Type-state: the sensor is in software standby (no frames output).
#[derive(Debug)]
pub struct Standby;

/// Type-state: the sensor is streaming frames.
#[derive(Debug)]
pub struct Streaming;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Standby {}
    impl Sealed for super::Streaming {}
}

/// The sensor's power state ([`Standby`] or [`Streaming`]); sealed.
pub trait State: sealed::Sealed {}
impl State for Standby {}
impl State for Streaming {}

/// Result of a type-state change from `FROM` to `TO`: the driver in its new
/// state, or the error together with the driver still in `FROM`.
pub type Transition<I2C, D, FROM, TO> =
    Result<Imx500<I2C, D, TO>, (Error<<I2C as ErrorType>::Error>, Imx500<I2C, D, FROM>)>;

/// One register write of a fixed sequence.
#[derive(Clone, Copy)]
enum RegWrite {
    /// 8-bit register.
    U8(u16, u8),
    /// 16-bit register, written high byte first in one transaction.
    U16(u16, u16),
}

/// What the driver last wrote to the sensor.
#[derive(Clone, Copy, Debug)]
struct Settings {
    mode: Mode,
    frame_length_lines: u16,
    exposure_lines: u16,
    analog_gain_code: u16,
}

/// IMX500 driver.
///
/// `I2C` is an [`embedded_hal::i2c::I2c`] bus, `D` an
/// [`embedded_hal::delay::DelayNs`] provider (only used by
/// [`Imx500::wait_for_dnn_status`], kept so that [`Imx500::destroy`] can
/// return it), `STATE` the type-state ([`Standby`] or [`Streaming`]).
///
/// The type-state makes configuration that needs standby unavailable while
/// streaming; neither of these compiles:
///
/// ```compile_fail
/// use embedded_hal::i2c::I2c;
/// use ocellus_imx500::{Imx500, Mode, Streaming};
///
/// fn reconfigure<I2C: I2c, D>(camera: &mut Imx500<I2C, D, Streaming>) {
///     let _ = camera.set_mode(Mode::Binned2028x1520, 30.0);
/// }
/// ```
///
/// ```compile_fail
/// use embedded_hal::i2c::I2c;
/// use ocellus_imx500::{Imx500, Streaming};
///
/// fn switch_off<I2C: I2c, D>(camera: &mut Imx500<I2C, D, Streaming>) {
///     let _ = camera.dnn_disable();
/// }
/// ```
#[derive(Debug)]
pub struct Imx500<I2C, D, STATE> {
    i2c: I2C,
    delay: D,
    settings: Settings,
    _state: PhantomData<STATE>,
}

impl<I2C, D> Imx500<I2C, D, Standby>
where
    I2C: I2c,
    D: DelayNs,
{
    /// Probes the sensor, puts it in standby and programs the defaults.
    ///
    /// Sequence: read `CHIP_ID` (`0x0016`, must be `0x0500`), write
    /// `MODE_SELECT` = standby, program [`DEFAULT_MODE`] at its shortest
    /// frame (the kernel's default vertical blanking, ≈ 9.9986 fps, see
    /// [`Imx500::set_mode`]), then exposure [`DEFAULT_EXPOSURE_LINES`] and
    /// analogue gain 1.0×.
    ///
    /// There is no software reset: it would discard the firmware and
    /// network the kernel or boot firmware downloaded. The DNN enable and
    /// the tensor line stride are left as they are.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedChipId`] if another chip answers (nothing is
    /// written to it), [`Error::I2c`] if a transfer fails. In both cases the
    /// bus and delay are handed back: `Err((error, i2c, delay))`.
    pub fn new(i2c: I2C, delay: D) -> Result<Self, (Error<I2C::Error>, I2C, D)> {
        let mut sensor = Self {
            i2c,
            delay,
            settings: Settings {
                mode: DEFAULT_MODE,
                frame_length_lines: DEFAULT_MODE.min_frame_length_lines(),
                exposure_lines: DEFAULT_EXPOSURE_LINES,
                analog_gain_code: 0,
            },
            _state: PhantomData,
        };
        match sensor.init() {
            Ok(()) => Ok(sensor),
            Err(error) => {
                let (i2c, delay) = sensor.destroy();
                Err((error, i2c, delay))
            }
        }
    }

    fn init(&mut self) -> Result<(), Error<I2C::Error>> {
        let found = self.read_u16(registers::CHIP_ID)?;
        if found != registers::CHIP_ID_IMX500 {
            return Err(Error::UnexpectedChipId { found });
        }
        self.write_u8(registers::MODE_SELECT, registers::MODE_SELECT_STANDBY)?;
        self.program_mode(DEFAULT_MODE, DEFAULT_MODE.min_frame_length_lines())?;
        self.set_exposure_lines(DEFAULT_EXPOSURE_LINES)?;
        self.set_analog_gain_code(0)?;
        Ok(())
    }
}

impl<I2C, D, STATE> Imx500<I2C, D, STATE>
where
    STATE: State,
{
    /// Releases the bus and the delay provider.
    ///
    /// The sensor is left as it is (a streaming sensor keeps streaming).
    pub fn destroy(self) -> (I2C, D) {
        (self.i2c, self.delay)
    }

    /// Current readout mode.
    pub fn mode(&self) -> Mode {
        self.settings.mode
    }

    /// Current frame length (VTS) in lines.
    pub fn frame_length_lines(&self) -> u16 {
        self.settings.frame_length_lines
    }

    /// Current frame rate in frames per second.
    pub fn frame_rate(&self) -> f32 {
        self.settings
            .mode
            .frame_rate(self.settings.frame_length_lines)
    }

    /// Longest exposure the current frame length allows, in lines.
    pub fn max_exposure_lines(&self) -> u16 {
        self.settings
            .frame_length_lines
            .saturating_sub(EXPOSURE_MARGIN_LINES)
            .max(EXPOSURE_MIN_LINES)
    }

    /// Current exposure in lines.
    pub fn exposure_lines(&self) -> u16 {
        self.settings.exposure_lines
    }

    /// Current exposure in microseconds (depends on the mode's line
    /// length).
    pub fn exposure_us(&self) -> f32 {
        self.settings
            .mode
            .exposure_us_from_lines(self.settings.exposure_lines)
    }

    /// Current analogue gain code.
    pub fn analog_gain_code(&self) -> u16 {
        self.settings.analog_gain_code
    }

    /// Current analogue gain as a linear factor.
    pub fn analog_gain(&self) -> f32 {
        analog_gain_from_code(self.settings.analog_gain_code)
    }

    fn into_state<NEXT: State>(self) -> Imx500<I2C, D, NEXT> {
        Imx500 {
            i2c: self.i2c,
            delay: self.delay,
            settings: self.settings,
            _state: PhantomData,
        }
    }
}

/// Per-frame controls and status reads, allowed in standby and while
/// streaming.
impl<I2C, D, STATE> Imx500<I2C, D, STATE>
where
    I2C: I2c,
    STATE: State,
{
    /// Sets the exposure in lines, clamped to
    /// [`EXPOSURE_MIN_LINES`]`..=`[`Self::max_exposure_lines`]
    /// (frame length − 22). Returns the value written.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the write fails.
    pub fn set_exposure_lines(&mut self, lines: u16) -> Result<u16, Error<I2C::Error>> {
        let applied = lines.max(EXPOSURE_MIN_LINES).min(self.max_exposure_lines());
        self.write_u16(registers::COARSE_INTEGRATION_TIME, applied)?;
        self.settings.exposure_lines = applied;
        Ok(applied)
    }

    /// Sets the exposure time in microseconds, rounded to the nearest line
    /// of the current mode (≈ 24.06 µs at full resolution, ≈ 12.63 µs
    /// binned) and clamped like [`Self::set_exposure_lines`]. Returns the
    /// number of lines written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for NaN, [`Error::I2c`] if the write fails.
    pub fn set_exposure_us(&mut self, us: f32) -> Result<u16, Error<I2C::Error>> {
        let lines = self
            .settings
            .mode
            .exposure_lines_from_us(us)
            .ok_or(Error::InvalidInput)?;
        self.set_exposure_lines(lines)
    }

    /// Sets the analogue gain code (gain = 1024 / (1024 − code)), clamped to
    /// `0..=`[`ANALOG_GAIN_CODE_MAX`]. Returns the code written.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the write fails.
    pub fn set_analog_gain_code(&mut self, code: u16) -> Result<u16, Error<I2C::Error>> {
        let applied = code.min(ANALOG_GAIN_CODE_MAX);
        self.write_u16(registers::ANALOG_GAIN, applied)?;
        self.settings.analog_gain_code = applied;
        Ok(applied)
    }

    /// Sets the analogue gain as a linear factor, using the nearest code
    /// `1024 − 1024 / gain` (see [`analog_gain_code_from_gain`]; requests
    /// outside 1.0 ..= 22.26× saturate). Returns the code written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for NaN, [`Error::I2c`] if the write fails.
    pub fn set_analog_gain(&mut self, gain: f32) -> Result<u16, Error<I2C::Error>> {
        let code = analog_gain_code_from_gain(gain).ok_or(Error::InvalidInput)?;
        self.set_analog_gain_code(code)
    }

    /// Reads the sensor CPU's system state (`DD_SYS_STATE`, `0xD02A`):
    /// whether a network is loaded and whether the sensor streams.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the read fails.
    pub fn dnn_status(&mut self) -> Result<DnnStatus, Error<I2C::Error>> {
        self.read_u8(registers::DD_SYS_STATE)
            .map(DnnStatus::from_register)
    }

    /// Reads the reply to the last firmware / network download command
    /// (`DD_CMD_REPLY_STS`, `0xD014`): after a successful download by the
    /// kernel it reads [`CommandReply::TransDone`] or
    /// [`CommandReply::UpdateDone`].
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the read fails.
    pub fn command_reply(&mut self) -> Result<CommandReply, Error<I2C::Error>> {
        self.read_u8(registers::DD_CMD_REPLY_STS)
            .map(CommandReply::from_register)
    }

    /// Reads the error notification bits (`DD_ERR_STS`, `0xD020`).
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the read fails.
    pub fn dnn_errors(&mut self) -> Result<DnnErrors, Error<I2C::Error>> {
        self.read_u8(registers::DD_ERR_STS).map(DnnErrors)
    }

    /// Reads the main firmware version (`0xD07C`, 32-bit); the kernel logs
    /// it after downloading the main firmware. Before that download the
    /// value is undocumented.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the read fails.
    pub fn main_firmware_version(&mut self) -> Result<FirmwareVersion, Error<I2C::Error>> {
        self.read_u32(registers::MAIN_FW_VERSION)
            .map(FirmwareVersion)
    }

    fn write(&mut self, write: RegWrite) -> Result<(), Error<I2C::Error>> {
        match write {
            RegWrite::U8(register, value) => self.write_u8(register, value),
            RegWrite::U16(register, value) => self.write_u16(register, value),
        }
    }

    /// `[addr_hi, addr_lo, value]`.
    fn write_u8(&mut self, register: u16, value: u8) -> Result<(), Error<I2C::Error>> {
        let [address_high, address_low] = register.to_be_bytes();
        self.i2c
            .write(I2C_ADDRESS, &[address_high, address_low, value])
            .map_err(Error::I2c)
    }

    /// `[addr_hi, addr_lo, value_hi, value_lo]`, one transaction.
    fn write_u16(&mut self, register: u16, value: u16) -> Result<(), Error<I2C::Error>> {
        let [address_high, address_low] = register.to_be_bytes();
        let [value_high, value_low] = value.to_be_bytes();
        self.i2c
            .write(
                I2C_ADDRESS,
                &[address_high, address_low, value_high, value_low],
            )
            .map_err(Error::I2c)
    }

    /// Write `[addr_hi, addr_lo]`, repeated start, read `N` bytes.
    fn read<const N: usize>(&mut self, register: u16) -> Result<[u8; N], Error<I2C::Error>> {
        let mut value = [0; N];
        self.i2c
            .write_read(I2C_ADDRESS, &register.to_be_bytes(), &mut value)
            .map_err(Error::I2c)?;
        Ok(value)
    }

    fn read_u8(&mut self, register: u16) -> Result<u8, Error<I2C::Error>> {
        self.read::<1>(register).map(|[value]| value)
    }

    fn read_u16(&mut self, register: u16) -> Result<u16, Error<I2C::Error>> {
        self.read(register).map(u16::from_be_bytes)
    }

    fn read_u32(&mut self, register: u16) -> Result<u32, Error<I2C::Error>> {
        self.read(register).map(u32::from_be_bytes)
    }

    /// Writes the timing and geometry of `mode` with the given frame length,
    /// then shortens the exposure if it no longer fits.
    fn program_mode(
        &mut self,
        mode: Mode,
        frame_length_lines: u16,
    ) -> Result<(), Error<I2C::Error>> {
        let window = mode.crop();
        let [binning_mode, binning_type, binning_weighting] = mode.binning().register_values();
        // Same order as the kernel's mode tables.
        let sequence = [
            RegWrite::U16(registers::FRAME_LENGTH_LINES, frame_length_lines),
            RegWrite::U16(registers::LINE_LENGTH_PCK, mode.line_length_pixels()),
            RegWrite::U8(registers::LONG_EXP_SHIFT, registers::LONG_EXP_SHIFT_NONE),
            RegWrite::U16(registers::X_ADDR_START, window.x_start),
            RegWrite::U16(registers::Y_ADDR_START, window.y_start),
            RegWrite::U16(registers::X_ADDR_END, window.x_end()),
            RegWrite::U16(registers::Y_ADDR_END, window.y_end()),
            RegWrite::U8(registers::BINNING_MODE, binning_mode),
            RegWrite::U8(registers::BINNING_TYPE, binning_type),
            RegWrite::U8(registers::BINNING_WEIGHTING, binning_weighting),
            RegWrite::U16(registers::DIGITAL_CROP_IMAGE_WIDTH, mode.width()),
            RegWrite::U16(registers::DIGITAL_CROP_IMAGE_HEIGHT, mode.height()),
            RegWrite::U16(registers::X_OUTPUT_SIZE, mode.width()),
            RegWrite::U16(registers::Y_OUTPUT_SIZE, mode.height()),
        ];
        for write in sequence {
            self.write(write)?;
        }
        let max_exposure = frame_length_lines.saturating_sub(EXPOSURE_MARGIN_LINES);
        if self.settings.exposure_lines > max_exposure {
            self.write_u16(registers::COARSE_INTEGRATION_TIME, max_exposure)?;
            self.settings.exposure_lines = max_exposure;
        }
        self.settings.mode = mode;
        self.settings.frame_length_lines = frame_length_lines;
        Ok(())
    }
}

/// Waiting for the DNN, in both states.
impl<I2C, D, STATE> Imx500<I2C, D, STATE>
where
    I2C: I2c,
    D: DelayNs,
    STATE: State,
{
    /// Reads [`Self::dnn_status`] until it equals `expected`, at most
    /// `max_reads` times (at least once), waiting
    /// [`DNN_STATUS_POLL_INTERVAL_MS`] between two reads.
    ///
    /// For example, after [`Self::dnn_enable`] and
    /// [`Self::start_streaming`], wait for
    /// [`DnnStatus::StreamingWithNetwork`].
    ///
    /// # Errors
    ///
    /// [`Error::DnnStatusTimeout`] with the last status read if `expected`
    /// was never read, [`Error::I2c`] if a read fails.
    pub fn wait_for_dnn_status(
        &mut self,
        expected: DnnStatus,
        max_reads: u16,
    ) -> Result<(), Error<I2C::Error>> {
        let mut reads_left = max_reads.max(1);
        loop {
            let last = self.dnn_status()?;
            if last == expected {
                return Ok(());
            }
            reads_left -= 1;
            if reads_left == 0 {
                return Err(Error::DnnStatusTimeout { last });
            }
            self.delay.delay_ms(DNN_STATUS_POLL_INTERVAL_MS);
        }
    }
}

/// Configuration that needs the sensor in standby.
impl<I2C, D> Imx500<I2C, D, Standby>
where
    I2C: I2c,
{
    /// Selects a readout mode and frame rate.
    ///
    /// Writes `FRAME_LENGTH_LINES` (see [`Mode::frame_length_lines_for`]:
    /// rounded up, so 10 fps at full resolution is accepted and gives
    /// 9.9986 fps), `LINE_LENGTH_PCK`, the long-exposure shift (0), the
    /// readout window, the binning, the digital crop size and the output
    /// size. If the current exposure no longer fits the new frame, it is
    /// shortened to the new maximum (frame length − 22) and written too.
    ///
    /// The ~30 manufacturer registers that also differ between the kernel's
    /// two mode tables are not written (see the crate documentation).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (nothing written) if `fps` is not finite and
    /// positive or lies outside [`Mode::min_frame_rate`]`..=`
    /// [`Mode::max_frame_rate`]; [`Error::I2c`] if a write fails.
    pub fn set_mode(&mut self, mode: Mode, fps: f32) -> Result<(), Error<I2C::Error>> {
        let frame_length_lines = mode
            .frame_length_lines_for(fps)
            .ok_or(Error::InvalidInput)?;
        self.program_mode(mode, frame_length_lines)
    }

    /// Enables the DNN: `STREAM_MODE_SELECT` (`0xD100`) = 4, what the kernel
    /// driver writes before stream on when a network is loaded.
    ///
    /// Without a loaded network ([`Self::dnn_status`] not
    /// [`DnnStatus::StandbyWithNetwork`]) the effect is undocumented; the
    /// kernel never enables the DNN then.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the write fails.
    pub fn dnn_enable(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_u8(registers::STREAM_MODE_SELECT, registers::DNN_ENABLE)
    }

    /// Disables the DNN: `STREAM_MODE_SELECT` (`0xD100`) = 0, what the
    /// kernel driver writes after stream off. The network stays loaded.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the write fails.
    pub fn dnn_disable(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_u8(registers::STREAM_MODE_SELECT, registers::DNN_DISABLE)
    }

    /// Sets the line stride of the DNN output in the embedded data, in
    /// bytes (8 bits per pixel): writes `DD_CH06..09_X_OUT_SIZE`
    /// (`0x3054`, `0x3056`, `0x3058`, `0x305A`: KPI, input tensor, output
    /// tensor, PQ), as the kernel's `mode_common_regs` does with
    /// [`TENSOR_LINE_STRIDE_DEFAULT`] (2560). The host's tensor parser must
    /// use the same value.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (nothing written) for 0; [`Error::I2c`] if a
    /// write fails.
    pub fn set_tensor_line_stride(&mut self, bytes: u16) -> Result<(), Error<I2C::Error>> {
        if bytes == 0 {
            return Err(Error::InvalidInput);
        }
        for register in [
            registers::DD_CH06_X_OUT_SIZE_KPI,
            registers::DD_CH07_X_OUT_SIZE_INPUT_TENSOR,
            registers::DD_CH08_X_OUT_SIZE_OUTPUT_TENSOR,
            registers::DD_CH09_X_OUT_SIZE_PQ,
        ] {
            self.write_u16(register, bytes)?;
        }
        Ok(())
    }

    /// Starts streaming (`MODE_SELECT` = 1).
    ///
    /// # Errors
    ///
    /// If the write fails, returns the [`Error::I2c`] together with the
    /// driver, still in [`Standby`].
    pub fn start_streaming(mut self) -> Transition<I2C, D, Standby, Streaming> {
        match self.write_u8(registers::MODE_SELECT, registers::MODE_SELECT_STREAMING) {
            Ok(()) => Ok(self.into_state()),
            Err(error) => Err((error, self)),
        }
    }
}

impl<I2C, D> Imx500<I2C, D, Streaming>
where
    I2C: I2c,
{
    /// Stops streaming (`MODE_SELECT` = 0): the sensor enters software
    /// standby. The DNN stays enabled until [`Imx500::dnn_disable`].
    ///
    /// # Errors
    ///
    /// If the write fails, returns the [`Error::I2c`] together with the
    /// driver, still in [`Streaming`].
    pub fn stop_streaming(mut self) -> Transition<I2C, D, Streaming, Standby> {
        match self.write_u8(registers::MODE_SELECT, registers::MODE_SELECT_STANDBY) {
            Ok(()) => Ok(self.into_state()),
            Err(error) => Err((error, self)),
        }
    }
}
