//! Bare-metal bring-up of an IMX219 and an IMX500 on a Cortex-M4F, through the embedded-hal 1.0
//! traits only.
//!
//! On a real board, replace `BoardI2c` with the HAL's I²C peripheral (any type implementing
//! `embedded_hal::i2c::I2c`) and `CycleDelay` with the HAL's delay; the driver code does not change.
//! Power the sensors, start their 24 MHz clocks and raise XCLR before `Imx219::new` /
//! `Imx500::new` (see the driver docs). The IMX500 also needs its firmware and network downloaded
//! over SPI by the board's init code before its DNN can run; `ocellus-imx500` does not do that.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{self, ErrorType, I2c, Operation, SevenBitAddress};
use ocellus_imx219::{Imx219, Mode, TestPattern};
use ocellus_imx500::{DnnStatus, Imx500, Mode as Imx500Mode, TENSOR_LINE_STRIDE_DEFAULT};
use panic_halt as _;

/// 7-bit I²C address of the IMX219.
const IMX219_ADDRESS: u8 = 0x10;
/// 7-bit I²C address of the IMX500.
const IMX500_ADDRESS: u8 = 0x1A;

/// Stand-in for the board's I²C peripheral (one per camera connector): answers at the address
/// it is given, reads the chip id back (IMX219: MODEL_ID 0x0000 = 0x0219; IMX500: CHIP_ID 0x0016
/// = 0x0500, and DD_SYS_STATE 0xD02A = 2, "standby with network") and accepts every write.
struct BoardI2c {
    address: u8,
    register: u16,
}

impl BoardI2c {
    fn new(address: u8) -> Self {
        Self {
            address,
            register: 0,
        }
    }

    /// The bytes a read at the current register returns.
    fn register_value(&self) -> [u8; 2] {
        match (self.address, self.register) {
            (IMX219_ADDRESS, 0x0000) => 0x0219u16.to_be_bytes(),
            (IMX500_ADDRESS, 0x0016) => 0x0500u16.to_be_bytes(),
            (IMX500_ADDRESS, 0xD02A) => [2, 0],
            _ => [0, 0],
        }
    }
}

#[derive(Debug)]
struct BusError;

impl i2c::Error for BusError {
    fn kind(&self) -> i2c::ErrorKind {
        i2c::ErrorKind::NoAcknowledge(i2c::NoAcknowledgeSource::Address)
    }
}

impl ErrorType for BoardI2c {
    type Error = BusError;
}

impl I2c<SevenBitAddress> for BoardI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), BusError> {
        if address != self.address {
            return Err(BusError);
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    if let [hi, lo, ..] = bytes {
                        self.register = u16::from_be_bytes([*hi, *lo]);
                    }
                }
                Operation::Read(buf) => {
                    let value = self.register_value();
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = value.get(i).copied().unwrap_or(0);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Busy-wait delay from the core clock (16 MHz after reset on STM32F4).
struct CycleDelay {
    cycles_per_us: u32,
}

impl DelayNs for CycleDelay {
    fn delay_ns(&mut self, ns: u32) {
        cortex_m::asm::delay((ns / 1000 + 1).saturating_mul(self.cycles_per_us));
    }
}

/// IMX219: init, mode, controls, test pattern, stream.
fn bring_up_imx219() {
    let bus = BoardI2c::new(IMX219_ADDRESS);
    let delay = CycleDelay { cycles_per_us: 16 };
    if let Ok(mut camera) = Imx219::new(bus, delay) {
        let configured = camera
            .set_mode(Mode::Binned640x480, 30.0)
            .and_then(|_| camera.set_exposure_us(10_000.0))
            .and_then(|_| camera.set_analog_gain_db(6.0))
            .and_then(|_| camera.set_test_pattern(TestPattern::ColourBars));
        if configured.is_ok() {
            if let Ok(mut streaming) = camera.start_streaming() {
                let _ = streaming.set_exposure_lines(400);
            }
        }
    }
}

/// IMX500: chip check, network present, mode, controls, DNN on, tensor stride, stream.
fn bring_up_imx500() {
    let bus = BoardI2c::new(IMX500_ADDRESS);
    let delay = CycleDelay { cycles_per_us: 16 };
    if let Ok(mut camera) = Imx500::new(bus, delay) {
        let configured = camera
            .wait_for_dnn_status(DnnStatus::StandbyWithNetwork, 20)
            .and_then(|()| camera.set_mode(Imx500Mode::Binned2028x1520, 30.0))
            .and_then(|()| camera.set_exposure_us(10_000.0))
            .and_then(|_| camera.set_analog_gain(2.0))
            .and_then(|_| camera.set_tensor_line_stride(TENSOR_LINE_STRIDE_DEFAULT))
            .and_then(|()| camera.dnn_enable());
        if configured.is_ok() {
            if let Ok(mut streaming) = camera.start_streaming() {
                let _ = streaming.set_exposure_lines(1200);
            }
        }
    }
}

#[entry]
fn main() -> ! {
    bring_up_imx219();
    bring_up_imx500();
    loop {
        cortex_m::asm::wfi();
    }
}
