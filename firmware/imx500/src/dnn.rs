//! Typed values of the DNN status registers.

use core::fmt;

use crate::registers;

/// System state of the sensor's CPU (`DD_SYS_STATE`, `0xD02A`): whether a
/// network is loaded and whether the sensor streams.
///
/// The register is maintained by the sensor's main firmware; before the
/// loader and main firmware have been downloaded its content is not
/// documented (unverified on hardware).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DnnStatus {
    /// 0: standby, no network loaded.
    StandbyNoNetwork,
    /// 1: streaming, no network loaded (image only).
    StreamingNoNetwork,
    /// 2: standby, network loaded.
    StandbyWithNetwork,
    /// 3: streaming with a network loaded.
    StreamingWithNetwork,
    /// Any other value, kept as read.
    Other(u8),
}

impl DnnStatus {
    /// Decodes a `DD_SYS_STATE` value.
    #[must_use]
    pub const fn from_register(value: u8) -> Self {
        match value {
            registers::SYS_STATE_STANDBY_NO_NETWORK => Self::StandbyNoNetwork,
            registers::SYS_STATE_STREAMING_NO_NETWORK => Self::StreamingNoNetwork,
            registers::SYS_STATE_STANDBY_WITH_NETWORK => Self::StandbyWithNetwork,
            registers::SYS_STATE_STREAMING_WITH_NETWORK => Self::StreamingWithNetwork,
            other => Self::Other(other),
        }
    }

    /// The `DD_SYS_STATE` value.
    #[must_use]
    pub const fn register_value(self) -> u8 {
        match self {
            Self::StandbyNoNetwork => registers::SYS_STATE_STANDBY_NO_NETWORK,
            Self::StreamingNoNetwork => registers::SYS_STATE_STREAMING_NO_NETWORK,
            Self::StandbyWithNetwork => registers::SYS_STATE_STANDBY_WITH_NETWORK,
            Self::StreamingWithNetwork => registers::SYS_STATE_STREAMING_WITH_NETWORK,
            Self::Other(value) => value,
        }
    }

    /// Whether a network is loaded; `None` for [`DnnStatus::Other`].
    #[must_use]
    pub const fn network_loaded(self) -> Option<bool> {
        match self {
            Self::StandbyNoNetwork | Self::StreamingNoNetwork => Some(false),
            Self::StandbyWithNetwork | Self::StreamingWithNetwork => Some(true),
            Self::Other(_) => None,
        }
    }

    /// Whether the sensor streams; `None` for [`DnnStatus::Other`].
    #[must_use]
    pub const fn streaming(self) -> Option<bool> {
        match self {
            Self::StandbyNoNetwork | Self::StandbyWithNetwork => Some(false),
            Self::StreamingNoNetwork | Self::StreamingWithNetwork => Some(true),
            Self::Other(_) => None,
        }
    }
}

/// Reply to the last firmware / network download command
/// (`DD_CMD_REPLY_STS`, `0xD014`).
///
/// The kernel driver expects [`CommandReply::TransReady`] /
/// [`CommandReply::UpdateReady`] before each SPI download and
/// [`CommandReply::TransDone`] / [`CommandReply::UpdateDone`] after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CommandReply {
    /// 0x00: ready for a state-transition download.
    TransReady,
    /// 0x01: state transition done.
    TransDone,
    /// 0x10: ready for an update download.
    UpdateReady,
    /// 0x11: update done.
    UpdateDone,
    /// 0x12: update cancelled.
    UpdateCancelDone,
    /// 0xFA: packet format error.
    PacketFormatError,
    /// 0xFB: internal error.
    InternalError,
    /// 0xFC: parameter error.
    ParameterError,
    /// 0xFD: timeout error.
    TimeoutError,
    /// 0xFE: MAC authentication error.
    MacAuthError,
    /// 0xFF: status error.
    StatusError,
    /// Any other value, kept as read.
    Other(u8),
}

impl CommandReply {
    /// Decodes a `DD_CMD_REPLY_STS` value.
    #[must_use]
    pub const fn from_register(value: u8) -> Self {
        match value {
            registers::CMD_REPLY_TRANS_READY => Self::TransReady,
            registers::CMD_REPLY_TRANS_DONE => Self::TransDone,
            registers::CMD_REPLY_UPDATE_READY => Self::UpdateReady,
            registers::CMD_REPLY_UPDATE_DONE => Self::UpdateDone,
            registers::CMD_REPLY_UPDATE_CANCEL_DONE => Self::UpdateCancelDone,
            registers::CMD_REPLY_PACKET_FORMAT_ERROR => Self::PacketFormatError,
            registers::CMD_REPLY_INTERNAL_ERROR => Self::InternalError,
            registers::CMD_REPLY_PARAMETER_ERROR => Self::ParameterError,
            registers::CMD_REPLY_TIMEOUT_ERROR => Self::TimeoutError,
            registers::CMD_REPLY_MAC_AUTH_ERROR => Self::MacAuthError,
            registers::CMD_REPLY_STATUS_ERROR => Self::StatusError,
            other => Self::Other(other),
        }
    }

    /// Whether the reply is one of the error codes (`0xFA..=0xFF`).
    #[must_use]
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Self::PacketFormatError
                | Self::InternalError
                | Self::ParameterError
                | Self::TimeoutError
                | Self::MacAuthError
                | Self::StatusError
        )
    }
}

/// Error notification bits (`DD_ERR_STS`, `0xD020`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DnnErrors(pub u8);

impl DnnErrors {
    /// Bit 0: status error.
    #[must_use]
    pub const fn status_error(self) -> bool {
        self.0 & registers::ERR_STS_STATUS_ERROR != 0
    }

    /// Bit 1: internal error.
    #[must_use]
    pub const fn internal_error(self) -> bool {
        self.0 & registers::ERR_STS_INTERNAL_ERROR != 0
    }

    /// Bit 2: parameter error.
    #[must_use]
    pub const fn parameter_error(self) -> bool {
        self.0 & registers::ERR_STS_PARAMETER_ERROR != 0
    }

    /// No bit set (bits without a documented meaning included).
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Main firmware version (`0xD07C`, 32-bit), as six 4-bit digits.
///
/// `Display` prints it the way the kernel driver logs it: `AB.CD.EF` from
/// the digits in bits 23..0, most significant first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FirmwareVersion(pub u32);

impl FirmwareVersion {
    /// The six 4-bit digits of bits 23..0, most significant first.
    #[must_use]
    pub const fn digits(self) -> [u8; 6] {
        let v = self.0;
        [
            nibble(v, 20),
            nibble(v, 16),
            nibble(v, 12),
            nibble(v, 8),
            nibble(v, 4),
            nibble(v, 0),
        ]
    }
}

const fn nibble(value: u32, shift: u32) -> u8 {
    // Masked to four bits: the cast is lossless.
    #[allow(clippy::cast_possible_truncation)]
    let digit = ((value >> shift) & 0xF) as u8;
    digit
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.digits();
        write!(f, "{a}{b}.{c}{d}.{e}{g}")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::ToString;

    use super::*;

    #[test]
    fn status_round_trips() {
        for value in 0..=u8::MAX {
            assert_eq!(DnnStatus::from_register(value).register_value(), value);
        }
        assert_eq!(DnnStatus::from_register(4), DnnStatus::Other(4));
        assert_eq!(DnnStatus::StandbyWithNetwork.network_loaded(), Some(true));
        assert_eq!(DnnStatus::StreamingNoNetwork.network_loaded(), Some(false));
        assert_eq!(DnnStatus::StreamingWithNetwork.streaming(), Some(true));
        assert_eq!(DnnStatus::StandbyWithNetwork.streaming(), Some(false));
        assert_eq!(DnnStatus::Other(9).streaming(), None);
        assert_eq!(DnnStatus::Other(9).network_loaded(), None);
    }

    #[test]
    fn command_replies() {
        assert_eq!(CommandReply::from_register(0x01), CommandReply::TransDone);
        assert_eq!(CommandReply::from_register(0x11), CommandReply::UpdateDone);
        assert_eq!(
            CommandReply::from_register(0xFE),
            CommandReply::MacAuthError
        );
        assert_eq!(CommandReply::from_register(0x42), CommandReply::Other(0x42));
        let errors = (0..=u8::MAX)
            .filter(|v| CommandReply::from_register(*v).is_error())
            .count();
        assert_eq!(errors, 6);
        assert!(!CommandReply::TransDone.is_error());
    }

    #[test]
    fn error_bits() {
        let e = DnnErrors(0b101);
        assert!(e.status_error() && !e.internal_error() && e.parameter_error());
        assert!(DnnErrors(0).is_empty());
        assert!(!DnnErrors(0x80).is_empty());
    }

    #[test]
    fn firmware_version_prints_like_the_kernel_log() {
        let v = FirmwareVersion(0x0012_0345);
        assert_eq!(v.digits(), [1, 2, 0, 3, 4, 5]);
        assert_eq!(v.to_string(), "12.03.45");
        // Bits above 23 are not part of the version.
        assert_eq!(FirmwareVersion(0xFF12_0345).to_string(), "12.03.45");
    }
}
