//! Driver error type.

use core::fmt;

use crate::dnn::DnnStatus;

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
    /// `CHIP_ID` (`0x0016`) did not read `0x0500`: the device at address
    /// `0x1A` is not an IMX500 (or is not powered up yet).
    UnexpectedChipId {
        /// The value read.
        found: u16,
    },
    /// An argument has no valid register value: NaN, a frame rate outside
    /// the mode's range, or a zero tensor line stride. Nothing was written to
    /// the sensor.
    InvalidInput,
    /// [`wait_for_dnn_status`](crate::Imx500::wait_for_dnn_status) polled as
    /// often as it was allowed to without seeing the expected status.
    DnnStatusTimeout {
        /// The status read last.
        last: DnnStatus,
    },
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::I2c(error) => write!(f, "I2C bus error: {error:?}"),
            Self::UnexpectedChipId { found } => {
                write!(f, "unexpected chip id {found:#06x} (IMX500 reads 0x0500)")
            }
            Self::InvalidInput => f.write_str("invalid input"),
            Self::DnnStatusTimeout { last } => {
                write!(f, "DNN status did not arrive (last read: {last:?})")
            }
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}
