//! Bare-metal bring-up of an IMX219 on a Cortex-M4F, through the embedded-hal 1.0 traits only.
//!
//! On a real board, replace `BoardI2c` with the HAL's I²C peripheral (any type implementing
//! `embedded_hal::i2c::I2c`) and `CycleDelay` with the HAL's delay; the driver code does not change.
//! Power the sensor, start its 24 MHz clock and raise XCLR before `Imx219::new` (see the driver docs).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{self, ErrorType, I2c, Operation, SevenBitAddress};
use ocellus_imx219::{Imx219, Mode, TestPattern};
use panic_halt as _;

/// Stand-in for the board's I²C peripheral: answers at the IMX219's address, reads MODEL_ID back
/// as 0x0219 and accepts every write.
struct BoardI2c {
    register: u16,
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
        if address != 0x10 {
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
                    let id = 0x0219u16.to_be_bytes();
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = if self.register == 0 {
                            id.get(i).copied().unwrap_or(0)
                        } else {
                            0
                        };
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

#[entry]
fn main() -> ! {
    let bus = BoardI2c { register: 0 };
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
    loop {
        cortex_m::asm::wfi();
    }
}
