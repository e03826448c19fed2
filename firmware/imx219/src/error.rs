//! Driver error type.

use core::fmt;

/// Errors returned by the driver.
///
/// `E` is the I²C bus error type (`<I2C as embedded_hal::i2c::ErrorType>::Error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error<E> {
    /// The I²C transfer failed (NACK, arbitration loss, bus error, …).
    ///
    /// A failure in the middle of a multi-register sequence leaves the sensor
    /// partly configured; the driver's own record of the settings is only
    /// updated after a sequence completes, so repeating the call is safe.
    I2c(E),
    /// `MODEL_ID` did not read `0x0219`: the device at address `0x10` is not
    /// an IMX219. Carries the value read.
    UnexpectedChipId(u16),
    /// An argument has no valid register value: NaN, a frame rate outside
    /// the mode's range, or a test-pattern colour wider than 10 bits.
    /// Nothing was written to the sensor.
    InvalidInput,
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::I2c(error) => write!(f, "I2C bus error: {error:?}"),
            Self::UnexpectedChipId(id) => {
                write!(f, "unexpected chip id {id:#06x} (IMX219 reads 0x0219)")
            }
            Self::InvalidInput => f.write_str("invalid input"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}
