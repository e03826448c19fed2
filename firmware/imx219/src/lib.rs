//! `no_std` driver for the Sony IMX219 8-megapixel image sensor, the sensor
//! of the Raspberry Pi Camera Module v2, built on the [`embedded-hal`] 1.0
//! I²C and delay traits.
//!
//! The driver configures the sensor over its I²C control interface (CCI):
//! 2-lane MIPI CSI-2, RAW10, 24 MHz external clock, 182.4 Mpixel/s. Receiving
//! the frames is the job of the board's CSI-2 receiver and is out of scope.
//!
//! # Before calling [`Imx219::new`]
//!
//! The driver does not own the power rails, the 24 MHz clock or the `XCLR`
//! (reset / enable) line. Power the sensor (VANA 2.8 V, VDIG 1.8 V, VDDL
//! 1.2 V), start the 24 MHz EXCK, drive `XCLR` high and wait at least 6.2 ms
//! (datasheet t4 + t5, as used by the Linux driver) before the first access.
//!
//! # Usage
//!
//! The sensor's power state is a type parameter: [`Standby`] or
//! [`Streaming`]. Changing the readout mode, flips or test pattern is only
//! possible in standby; exposure and gains are per-frame controls and can be
//! changed in both states. A failed state change hands the device back in
//! its old state together with the error.
//!
//! ```
//! use embedded_hal::{delay::DelayNs, i2c::I2c};
//! use ocellus_imx219::{Error, Imx219, Mode};
//!
//! fn bring_up<I2C: I2c, D: DelayNs>(i2c: I2C, delay: D) -> Result<(), Error<I2C::Error>> {
//!     // Checks MODEL_ID, soft-resets and configures the sensor. On failure
//!     // the bus and delay come back with the error.
//!     let mut camera = match Imx219::new(i2c, delay) {
//!         Ok(camera) => camera,
//!         Err((error, _i2c, _delay)) => return Err(error),
//!     };
//!
//!     camera.set_mode(Mode::Binned1640x1232, 30.0)?;
//!     camera.set_exposure_us(10_000.0)?; // returns the lines applied (529)
//!     camera.set_analog_gain_db(6.0)?; // returns the code applied (128)
//!
//!     let mut camera = camera.start_streaming().map_err(|(error, _standby)| error)?;
//!     camera.set_exposure_lines(800)?; // allowed while streaming
//!     // camera.set_mode(..) would not compile here: stop streaming first.
//!     let camera = camera.stop_streaming().map_err(|(error, _streaming)| error)?;
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
//! * [`Imx219::new`] returns `Err((error, i2c, delay))`, so a wrong chip
//!   ([`Error::UnexpectedChipId`]) or a NACK during initialisation gives the
//!   bus back for another device or another try;
//! * [`Imx219::start_streaming`] / [`Imx219::stop_streaming`] return
//!   `Err((error, driver_in_its_previous_state))`;
//! * [`Imx219::destroy`] releases the bus and delay in any state.
//!
//! Out-of-range numeric requests (exposure, gains) are clamped to the
//! sensor's range and the setters return the value actually written; inputs
//! with no sensible nearest value (NaN, a frame rate the mode cannot reach, a
//! test-pattern colour wider than 10 bits) are rejected with
//! [`Error::InvalidInput`] before anything is written.
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

mod controls;
mod conversion;
mod error;
mod math;
mod mode;
pub mod registers;

pub use controls::{BayerOrder, TestPattern};
pub use conversion::{
    analog_gain_code_from_db, analog_gain_db_from_code, analog_gain_from_code,
    digital_gain_code_from_gain, digital_gain_from_code, exposure_lines_from_us,
    exposure_us_from_lines, frame_rate_from_frame_length, lines_per_second,
};
pub use error::Error;
pub use mode::{Binning, Mode, Window};

/// 7-bit I²C address of the IMX219 (fixed).
pub const I2C_ADDRESS: u8 = 0x10;

/// External clock (EXCK / INCK) frequency the PLL set-up assumes.
pub const EXTERNAL_CLOCK_HZ: u32 = 24_000_000;
/// Pixel rate with the driver's PLL set-up (2-lane, 24 MHz EXCK).
pub const PIXEL_RATE_HZ: u32 = 182_400_000;
/// Line length in pixel clocks (`LINE_LENGTH_PCK`), fixed by the driver.
pub const LINE_LENGTH_PIXELS: u16 = 3448;

/// Width of the active pixel array.
pub const PIXEL_ARRAY_WIDTH: u16 = 3280;
/// Height of the active pixel array.
pub const PIXEL_ARRAY_HEIGHT: u16 = 2464;

/// Largest frame length (`FRAME_LENGTH_LINES`, 16 bits).
pub const FRAME_LENGTH_LINES_MAX: u16 = 0xFFFF;
/// Minimum vertical blanking in lines (datasheet; the Raspberry Pi kernel
/// driver uses the same value to avoid corrupt last lines).
pub const VBLANK_MIN_LINES: u16 = 32;
/// Shortest exposure in lines.
pub const EXPOSURE_MIN_LINES: u16 = 4;
/// The exposure must be at least this many lines shorter than the frame.
pub const EXPOSURE_MARGIN_LINES: u16 = 4;

/// Largest analogue gain code (10.67×, 20.56 dB).
pub const ANALOG_GAIN_CODE_MAX: u8 = 232;
/// Smallest digital gain code (1.0×).
pub const DIGITAL_GAIN_CODE_MIN: u16 = 0x0100;
/// Largest digital gain code (15.996×).
pub const DIGITAL_GAIN_CODE_MAX: u16 = 0x0FFF;
/// Largest solid-colour test pattern value (10 bits).
pub const TEST_PATTERN_COLOUR_MAX: u16 = 0x03FF;

/// Mode programmed by [`Imx219::new`].
pub const DEFAULT_MODE: Mode = Mode::Full3280x2464;
/// Frame rate programmed by [`Imx219::new`] (3527 lines at full resolution).
pub const DEFAULT_FRAME_RATE: f32 = 15.0;
/// Exposure programmed by [`Imx219::new`] (the Linux driver's default,
/// ≈ 30.2 ms).
pub const DEFAULT_EXPOSURE_LINES: u16 = 1600;
/// Wait after the software reset before the next register access, in µs.
///
/// The datasheet's power-up sequence allows register access after
/// t4 + t5 = 6.2 ms; the driver applies the same conservative bound after a
/// software reset.
pub const SOFTWARE_RESET_DELAY_US: u32 = 6_200;

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
    Result<Imx219<I2C, D, TO>, (Error<<I2C as ErrorType>::Error>, Imx219<I2C, D, FROM>)>;

/// One register write of a fixed sequence.
#[derive(Clone, Copy)]
enum RegWrite {
    /// 8-bit register.
    U8(u16, u8),
    /// 16-bit register, written high byte first in one transaction.
    U16(u16, u16),
}

/// Written once after the software reset: link, clock and format set-up.
const COMMON_INIT: [RegWrite; 14] = [
    RegWrite::U8(registers::CSI_LANE_MODE, registers::CSI_LANE_MODE_2_LANES),
    RegWrite::U8(registers::DPHY_CTRL, registers::DPHY_CTRL_TIMING_AUTO),
    RegWrite::U16(registers::EXCK_FREQ, registers::EXCK_FREQ_24_MHZ),
    RegWrite::U8(
        registers::PREPLLCK_VT_DIV,
        registers::PREPLLCK_DIV_EXCK_24_MHZ,
    ),
    RegWrite::U8(
        registers::PREPLLCK_OP_DIV,
        registers::PREPLLCK_DIV_EXCK_24_MHZ,
    ),
    RegWrite::U16(registers::PLL_VT_MPY, registers::PLL_VT_MPY_57),
    RegWrite::U8(registers::VTPXCK_DIV, registers::VTPXCK_DIV_5),
    RegWrite::U8(registers::VTSYCK_DIV, registers::VTSYCK_DIV_1),
    RegWrite::U16(registers::PLL_OP_MPY, registers::PLL_OP_MPY_114),
    RegWrite::U8(registers::OPSYCK_DIV, registers::OPSYCK_DIV_1),
    RegWrite::U8(registers::OPPXCK_DIV, registers::OPPXCK_DIV_RAW10),
    RegWrite::U16(registers::CSI_DATA_FORMAT, registers::CSI_DATA_FORMAT_RAW10),
    RegWrite::U8(registers::X_ODD_INC, registers::ODD_INC_NONE),
    RegWrite::U8(registers::Y_ODD_INC, registers::ODD_INC_NONE),
];

/// What the driver last wrote to the sensor.
#[derive(Clone, Copy, Debug)]
struct Settings {
    mode: Mode,
    frame_length_lines: u16,
    exposure_lines: u16,
    analog_gain_code: u8,
    digital_gain_code: u16,
    h_mirror: bool,
    v_flip: bool,
    test_pattern: TestPattern,
}

/// IMX219 driver.
///
/// `I2C` is an [`embedded_hal::i2c::I2c`] bus, `D` an
/// [`embedded_hal::delay::DelayNs`] provider (only used by [`Imx219::new`],
/// kept so that [`Imx219::destroy`] can return it), `STATE` the type-state
/// ([`Standby`] or [`Streaming`]).
///
/// The type-state makes configuration that needs standby unavailable while
/// streaming; this does not compile:
///
/// ```compile_fail
/// use embedded_hal::i2c::I2c;
/// use ocellus_imx219::{Imx219, Mode, Streaming};
///
/// fn reconfigure<I2C: I2c, D>(camera: &mut Imx219<I2C, D, Streaming>) {
///     let _ = camera.set_mode(Mode::Binned640x480, 30.0);
/// }
/// ```
#[derive(Debug)]
pub struct Imx219<I2C, D, STATE> {
    i2c: I2C,
    delay: D,
    settings: Settings,
    _state: PhantomData<STATE>,
}

impl<I2C, D> Imx219<I2C, D, Standby>
where
    I2C: I2c,
    D: DelayNs,
{
    /// Probes and initialises the sensor, leaving it in standby.
    ///
    /// Sequence: read `MODEL_ID` (must be `0x0219`), write `SW_RESET`, wait
    /// [`SOFTWARE_RESET_DELAY_US`], write the link / PLL / RAW10 set-up, then
    /// program [`DEFAULT_MODE`] at [`DEFAULT_FRAME_RATE`] and the default
    /// controls: exposure [`DEFAULT_EXPOSURE_LINES`], analogue gain 1.0×,
    /// digital gain 1.0×, no mirror / flip, no test pattern.
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
                digital_gain_code: DIGITAL_GAIN_CODE_MIN,
                h_mirror: false,
                v_flip: false,
                test_pattern: TestPattern::None,
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
        let id = self.read_u16(registers::MODEL_ID)?;
        if id != registers::MODEL_ID_IMX219 {
            return Err(Error::UnexpectedChipId(id));
        }
        self.write_u8(registers::SW_RESET, registers::SW_RESET_TRIGGER)?;
        self.delay.delay_us(SOFTWARE_RESET_DELAY_US);
        for write in COMMON_INIT {
            self.write(write)?;
        }
        self.set_mode(DEFAULT_MODE, DEFAULT_FRAME_RATE)?;
        self.set_exposure_lines(DEFAULT_EXPOSURE_LINES)?;
        self.set_analog_gain_code(0)?;
        self.set_digital_gain_code(DIGITAL_GAIN_CODE_MIN)?;
        self.set_flip(false, false)?;
        self.set_test_pattern(TestPattern::None)
    }
}

impl<I2C, D, STATE> Imx219<I2C, D, STATE>
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
        frame_rate_from_frame_length(self.settings.frame_length_lines)
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

    /// Current exposure in microseconds.
    pub fn exposure_us(&self) -> f32 {
        exposure_us_from_lines(self.settings.exposure_lines)
    }

    /// Current analogue gain code.
    pub fn analog_gain_code(&self) -> u8 {
        self.settings.analog_gain_code
    }

    /// Current digital gain code (`0x0100` = 1.0×).
    pub fn digital_gain_code(&self) -> u16 {
        self.settings.digital_gain_code
    }

    /// Current `(horizontal mirror, vertical flip)`.
    pub fn flip(&self) -> (bool, bool) {
        (self.settings.h_mirror, self.settings.v_flip)
    }

    /// Bayer order of the output for the current mirror / flip settings.
    pub fn bayer_order(&self) -> BayerOrder {
        BayerOrder::from_flip(self.settings.h_mirror, self.settings.v_flip)
    }

    /// Current test pattern.
    pub fn test_pattern(&self) -> TestPattern {
        self.settings.test_pattern
    }

    fn into_state<NEXT: State>(self) -> Imx219<I2C, D, NEXT> {
        Imx219 {
            i2c: self.i2c,
            delay: self.delay,
            settings: self.settings,
            _state: PhantomData,
        }
    }
}

/// Per-frame controls, allowed in standby and while streaming.
impl<I2C, D, STATE> Imx219<I2C, D, STATE>
where
    I2C: I2c,
    STATE: State,
{
    /// Sets the exposure in lines, clamped to
    /// [`EXPOSURE_MIN_LINES`]`..=`[`Self::max_exposure_lines`]
    /// (frame length − 4). Returns the value written.
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
    /// (≈ 18.90 µs) and clamped like [`Self::set_exposure_lines`]. Returns
    /// the number of lines written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for NaN, [`Error::I2c`] if the write fails.
    pub fn set_exposure_us(&mut self, us: f32) -> Result<u16, Error<I2C::Error>> {
        let lines = exposure_lines_from_us(us).ok_or(Error::InvalidInput)?;
        self.set_exposure_lines(lines)
    }

    /// Sets the analogue gain code (gain = 256 / (256 − code)), clamped to
    /// `0..=`[`ANALOG_GAIN_CODE_MAX`]. Returns the code written.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the write fails.
    pub fn set_analog_gain_code(&mut self, code: u8) -> Result<u8, Error<I2C::Error>> {
        let applied = code.min(ANALOG_GAIN_CODE_MAX);
        self.write_u8(registers::ANALOG_GAIN, applied)?;
        self.settings.analog_gain_code = applied;
        Ok(applied)
    }

    /// Sets the analogue gain in dB, using the nearest code (see
    /// [`analog_gain_code_from_db`]; requests outside 0 ..= 20.56 dB
    /// saturate). Returns the code written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for NaN, [`Error::I2c`] if the write fails.
    pub fn set_analog_gain_db(&mut self, db: f32) -> Result<u8, Error<I2C::Error>> {
        let code = analog_gain_code_from_db(db).ok_or(Error::InvalidInput)?;
        self.set_analog_gain_code(code)
    }

    /// Sets the digital gain as a linear factor, rounded to 1/256 and clamped
    /// to 1.0 ..= 15.996 (codes `0x0100..=0x0FFF`). Returns the code written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for NaN, [`Error::I2c`] if the write fails.
    pub fn set_digital_gain(&mut self, gain: f32) -> Result<u16, Error<I2C::Error>> {
        let code = digital_gain_code_from_gain(gain).ok_or(Error::InvalidInput)?;
        self.set_digital_gain_code(code)
    }

    /// Sets the digital gain code (`0x0100` = 1.0×), clamped to
    /// [`DIGITAL_GAIN_CODE_MIN`]`..=`[`DIGITAL_GAIN_CODE_MAX`]. Returns the
    /// code written.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the write fails.
    pub fn set_digital_gain_code(&mut self, code: u16) -> Result<u16, Error<I2C::Error>> {
        let applied = code.clamp(DIGITAL_GAIN_CODE_MIN, DIGITAL_GAIN_CODE_MAX);
        self.write_u16(registers::DIGITAL_GAIN, applied)?;
        self.settings.digital_gain_code = applied;
        Ok(applied)
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

    /// Write `[addr_hi, addr_lo]`, repeated start, read two bytes.
    fn read_u16(&mut self, register: u16) -> Result<u16, Error<I2C::Error>> {
        let mut value = [0; 2];
        self.i2c
            .write_read(I2C_ADDRESS, &register.to_be_bytes(), &mut value)
            .map_err(Error::I2c)?;
        Ok(u16::from_be_bytes(value))
    }
}

/// Configuration that needs the sensor in standby.
impl<I2C, D> Imx219<I2C, D, Standby>
where
    I2C: I2c,
{
    /// Selects a readout mode and frame rate.
    ///
    /// Writes the readout window (`X/Y_ADDR_START/END`), the output size, the
    /// binning, the test-pattern window, `LINE_LENGTH_PCK` (3448) and
    /// `FRAME_LENGTH_LINES` (see [`Mode::frame_length_lines_for`]). If the
    /// current exposure no longer fits the new frame, it is shortened to the
    /// new maximum and written too.
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
        let window = mode.crop();
        let binning = mode.binning().register_value();
        let sequence = [
            RegWrite::U16(registers::X_ADDR_START, window.x_start),
            RegWrite::U16(registers::X_ADDR_END, window.x_end()),
            RegWrite::U16(registers::Y_ADDR_START, window.y_start),
            RegWrite::U16(registers::Y_ADDR_END, window.y_end()),
            RegWrite::U16(registers::X_OUTPUT_SIZE, mode.width()),
            RegWrite::U16(registers::Y_OUTPUT_SIZE, mode.height()),
            RegWrite::U8(registers::BINNING_MODE_H, binning),
            RegWrite::U8(registers::BINNING_MODE_V, binning),
            RegWrite::U16(registers::TP_WINDOW_WIDTH, mode.width()),
            RegWrite::U16(registers::TP_WINDOW_HEIGHT, mode.height()),
            RegWrite::U16(registers::LINE_LENGTH_PCK, LINE_LENGTH_PIXELS),
            RegWrite::U16(registers::FRAME_LENGTH_LINES, frame_length_lines),
        ];
        for write in sequence {
            self.write(write)?;
        }
        let max_exposure = frame_length_lines.saturating_sub(EXPOSURE_MARGIN_LINES);
        let exposure = self.settings.exposure_lines;
        if exposure > max_exposure {
            self.write_u16(registers::COARSE_INTEGRATION_TIME, max_exposure)?;
            self.settings.exposure_lines = max_exposure;
        }
        self.settings.mode = mode;
        self.settings.frame_length_lines = frame_length_lines;
        Ok(())
    }

    /// Sets horizontal mirroring and vertical flipping (`IMG_ORIENTATION`).
    /// This changes the [`BayerOrder`] of the output.
    ///
    /// # Errors
    ///
    /// [`Error::I2c`] if the write fails.
    pub fn set_flip(&mut self, h_mirror: bool, v_flip: bool) -> Result<(), Error<I2C::Error>> {
        let mut orientation = 0;
        if h_mirror {
            orientation |= registers::IMG_ORIENTATION_H_MIRROR;
        }
        if v_flip {
            orientation |= registers::IMG_ORIENTATION_V_FLIP;
        }
        self.write_u8(registers::IMG_ORIENTATION, orientation)?;
        self.settings.h_mirror = h_mirror;
        self.settings.v_flip = v_flip;
        Ok(())
    }

    /// Selects the test pattern. For [`TestPattern::Solid`] the four colour
    /// registers are written first, then `TEST_PATTERN`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (nothing written) if a solid colour value
    /// exceeds [`TEST_PATTERN_COLOUR_MAX`]; [`Error::I2c`] if a write fails.
    pub fn set_test_pattern(&mut self, pattern: TestPattern) -> Result<(), Error<I2C::Error>> {
        if !pattern.is_valid() {
            return Err(Error::InvalidInput);
        }
        if let TestPattern::Solid { r, gr, b, gb } = pattern {
            self.write_u16(registers::TEST_PATTERN_RED, r)?;
            self.write_u16(registers::TEST_PATTERN_GREEN_R, gr)?;
            self.write_u16(registers::TEST_PATTERN_BLUE, b)?;
            self.write_u16(registers::TEST_PATTERN_GREEN_B, gb)?;
        }
        self.write_u16(registers::TEST_PATTERN, pattern.register_value())?;
        self.settings.test_pattern = pattern;
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

impl<I2C, D> Imx219<I2C, D, Streaming>
where
    I2C: I2c,
{
    /// Stops streaming (`MODE_SELECT` = 0): the sensor enters software
    /// standby.
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
