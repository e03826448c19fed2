//! Bus-level tests: every register access the driver makes is scripted with
//! `embedded-hal-mock`, with register addresses and values written out as
//! literals (not the crate's constants) so that the tests check them.
//! Every test ends by taking the bus back and calling `done()`, which fails
//! if an expected transaction was not performed.

use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as DelayTransaction};
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTransaction};
use ocellus_imx219::{
    BayerOrder, Error, Imx219, Mode, Standby, State, TestPattern, analog_gain_code_from_db,
    analog_gain_db_from_code,
};

/// 7-bit address of the IMX219.
const ADDRESS: u8 = 0x10;

const NACK: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);

/// Write of an 8-bit register: `[addr_hi, addr_lo, value]`.
fn w8(register: u16, value: u8) -> I2cTransaction {
    let [high, low] = register.to_be_bytes();
    I2cTransaction::write(ADDRESS, vec![high, low, value])
}

/// Write of a 16-bit register in one transaction: `[addr_hi, addr_lo, hi, lo]`.
fn w16(register: u16, value: u16) -> I2cTransaction {
    let [high, low] = register.to_be_bytes();
    let [value_high, value_low] = value.to_be_bytes();
    I2cTransaction::write(ADDRESS, vec![high, low, value_high, value_low])
}

/// `MODEL_ID` read: write `[0x00, 0x00]`, read two bytes.
fn read_chip_id(id: u16) -> I2cTransaction {
    I2cTransaction::write_read(ADDRESS, vec![0x00, 0x00], id.to_be_bytes().to_vec())
}

/// What `set_mode` must write, in order.
struct ModeRegisters {
    x_start: u16,
    x_end: u16,
    y_start: u16,
    y_end: u16,
    width: u16,
    height: u16,
    binning: u8,
    frame_length: u16,
}

fn mode_script(m: &ModeRegisters) -> Vec<I2cTransaction> {
    vec![
        w16(0x0164, m.x_start),
        w16(0x0166, m.x_end),
        w16(0x0168, m.y_start),
        w16(0x016A, m.y_end),
        w16(0x016C, m.width),
        w16(0x016E, m.height),
        w8(0x0174, m.binning),
        w8(0x0175, m.binning),
        w16(0x0624, m.width),
        w16(0x0626, m.height),
        w16(0x0162, 3448),
        w16(0x0160, m.frame_length),
    ]
}

/// 3280x2464, full array (0..=3279, 0..=2463), no binning.
fn full_resolution(frame_length: u16) -> ModeRegisters {
    ModeRegisters {
        x_start: 0,
        x_end: 3279,
        y_start: 0,
        y_end: 2463,
        width: 3280,
        height: 2464,
        binning: 0,
        frame_length,
    }
}

/// The complete script of `Imx219::new` (the delay is checked separately).
fn init_script() -> Vec<I2cTransaction> {
    let mut script = vec![
        read_chip_id(0x0219),
        w8(0x0103, 0x01),    // SW_RESET
        w8(0x0114, 0x01),    // CSI_LANE_MODE: 2 lanes
        w8(0x0128, 0x00),    // DPHY_CTRL: auto
        w16(0x012A, 0x1800), // EXCK_FREQ: 24 MHz
        w8(0x0304, 0x03),    // PREPLLCK_VT_DIV
        w8(0x0305, 0x03),    // PREPLLCK_OP_DIV
        w16(0x0306, 0x0039), // PLL_VT_MPY = 57
        w8(0x0301, 0x05),    // VTPXCK_DIV
        w8(0x0303, 0x01),    // VTSYCK_DIV
        w16(0x030C, 0x0072), // PLL_OP_MPY = 114
        w8(0x030B, 0x01),    // OPSYCK_DIV
        w8(0x0309, 0x0A),    // OPPXCK_DIV: RAW10
        w16(0x018C, 0x0A0A), // CSI_DATA_FORMAT: RAW10
        w8(0x0170, 0x01),    // X_ODD_INC
        w8(0x0171, 0x01),    // Y_ODD_INC
    ];
    // Default mode: full resolution at 15 fps.
    // 182.4e6 / (3448 * 15) = 3526.68 -> 3527 lines.
    script.extend(mode_script(&full_resolution(3527)));
    script.extend([
        w16(0x015A, 1600),   // COARSE_INTEGRATION_TIME
        w8(0x0157, 0),       // ANALOG_GAIN: 1.0x
        w16(0x0158, 0x0100), // DIGITAL_GAIN: 1.0x
        w8(0x0172, 0x00),    // IMG_ORIENTATION
        w16(0x0600, 0),      // TEST_PATTERN: off
    ]);
    script
}

/// A sensor through `new`, with `then` expected afterwards.
#[allow(
    clippy::panic,
    reason = "test helper: a failed init fails the calling test"
)]
fn sensor_expecting(then: &[I2cTransaction]) -> Imx219<I2cMock, NoopDelay, Standby> {
    let mut expectations = init_script();
    expectations.extend_from_slice(then);
    match Imx219::new(I2cMock::new(&expectations), NoopDelay::new()) {
        Ok(sensor) => sensor,
        Err((error, _, _)) => panic!("init failed: {error:?}"),
    }
}

/// Takes the bus back and checks every expectation was consumed.
fn finish<S: State>(sensor: Imx219<I2cMock, NoopDelay, S>) {
    let (mut i2c, _delay) = sensor.destroy();
    i2c.done();
}

// ---------------------------------------------------------------------------
// Initialisation and bus recovery
// ---------------------------------------------------------------------------

#[test]
fn new_performs_the_exact_init_script() {
    let i2c = I2cMock::new(&init_script());
    let delay = CheckedDelay::new(&[DelayTransaction::delay_us(6_200)]);
    let sensor = match Imx219::new(i2c, delay) {
        Ok(sensor) => sensor,
        Err((error, _, _)) => panic!("init failed: {error:?}"),
    };

    assert_eq!(sensor.mode(), Mode::Full3280x2464);
    assert_eq!(sensor.frame_length_lines(), 3527);
    assert!((sensor.frame_rate() - 15.0).abs() < 0.01);
    assert_eq!(sensor.exposure_lines(), 1600);
    assert_eq!(sensor.analog_gain_code(), 0);
    assert_eq!(sensor.digital_gain_code(), 0x0100);
    assert_eq!(sensor.bayer_order(), BayerOrder::Rggb);
    assert_eq!(sensor.test_pattern(), TestPattern::None);

    let (mut i2c, mut delay) = sensor.destroy();
    i2c.done();
    delay.done();
}

#[test]
fn wrong_chip_id_is_reported_and_the_bus_is_returned() {
    let i2c = I2cMock::new(&[read_chip_id(0x0477)]);
    let Err((error, mut i2c, _delay)) = Imx219::new(i2c, NoopDelay::new()) else {
        panic!("a chip answering 0x0477 must be refused");
    };
    assert_eq!(error, Error::UnexpectedChipId(0x0477));
    // Nothing was written to the foreign chip, and the bus is ours again.
    i2c.done();
}

#[test]
fn nack_on_the_chip_id_read_returns_the_bus() {
    let i2c = I2cMock::new(&[
        I2cTransaction::write_read(ADDRESS, vec![0x00, 0x00], vec![0, 0]).with_error(NACK),
    ]);
    let Err((error, mut i2c, _delay)) = Imx219::new(i2c, NoopDelay::new()) else {
        panic!("a NACK must fail init");
    };
    assert_eq!(error, Error::I2c(NACK));
    i2c.done();
}

#[test]
fn nack_mid_init_returns_the_bus() {
    let i2c = I2cMock::new(&[
        read_chip_id(0x0219),
        w8(0x0103, 0x01),
        w8(0x0114, 0x01),
        w8(0x0128, 0x00),
        w16(0x012A, 0x1800).with_error(NACK),
    ]);
    let Err((error, mut i2c, _delay)) = Imx219::new(i2c, NoopDelay::new()) else {
        panic!("a NACK must fail init");
    };
    assert_eq!(error, Error::I2c(NACK));
    // The driver stopped at the failed write and gave the bus back.
    i2c.done();
}

#[test]
fn nack_on_the_last_init_write_returns_the_bus() {
    let mut script = init_script();
    let last = script.len() - 1;
    script[last] = w16(0x0600, 0).with_error(NACK);
    let Err((error, mut i2c, _delay)) = Imx219::new(I2cMock::new(&script), NoopDelay::new()) else {
        panic!("a NACK must fail init");
    };
    assert_eq!(error, Error::I2c(NACK));
    i2c.done();
}

// ---------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------

#[test]
fn mode_3280x2464_at_10_fps() {
    // 182.4e6 / (3448 * 10) = 5290.02 -> 5290 lines.
    let mut sensor = sensor_expecting(&mode_script(&full_resolution(5290)));
    sensor.set_mode(Mode::Full3280x2464, 10.0).unwrap();
    assert_eq!(sensor.frame_length_lines(), 5290);
    assert_eq!(sensor.exposure_lines(), 1600);
    finish(sensor);
}

#[test]
fn mode_1920x1080_at_30_fps() {
    // Centre crop: x (3280 - 1920) / 2 = 680 ..= 2599,
    //              y (2464 - 1080) / 2 = 692 ..= 1771.
    // 182.4e6 / (3448 * 30) = 1763.34 -> 1763 lines (the Linux default).
    let mut sensor = sensor_expecting(&mode_script(&ModeRegisters {
        x_start: 680,
        x_end: 2599,
        y_start: 692,
        y_end: 1771,
        width: 1920,
        height: 1080,
        binning: 0,
        frame_length: 1763,
    }));
    sensor.set_mode(Mode::Crop1920x1080, 30.0).unwrap();
    assert_eq!(sensor.mode(), Mode::Crop1920x1080);
    assert_eq!(sensor.frame_length_lines(), 1763);
    finish(sensor);
}

#[test]
fn mode_1640x1232_at_25_fps() {
    // Full array, 2x2 binned. 182.4e6 / (3448 * 25) = 2116.01 -> 2116 lines.
    let mut sensor = sensor_expecting(&mode_script(&ModeRegisters {
        x_start: 0,
        x_end: 3279,
        y_start: 0,
        y_end: 2463,
        width: 1640,
        height: 1232,
        binning: 1,
        frame_length: 2116,
    }));
    sensor.set_mode(Mode::Binned1640x1232, 25.0).unwrap();
    assert_eq!(sensor.frame_length_lines(), 2116);
    finish(sensor);
}

#[test]
fn mode_640x480_at_90_fps_shortens_the_exposure() {
    // 1280x960 centre crop: x 1000 ..= 2279, y 752 ..= 1711, 2x2 binned.
    // 182.4e6 / (3448 * 90) = 587.78 -> 588 lines, so the default exposure
    // (1600 lines) no longer fits and is cut to 588 - 4 = 584.
    let mut script = mode_script(&ModeRegisters {
        x_start: 1000,
        x_end: 2279,
        y_start: 752,
        y_end: 1711,
        width: 640,
        height: 480,
        binning: 1,
        frame_length: 588,
    });
    script.push(w16(0x015A, 584));
    let mut sensor = sensor_expecting(&script);
    sensor.set_mode(Mode::Binned640x480, 90.0).unwrap();
    assert_eq!(sensor.frame_length_lines(), 588);
    assert_eq!(sensor.exposure_lines(), 584);
    finish(sensor);
}

#[test]
fn unreachable_frame_rates_are_rejected_before_any_write() {
    // No expectation after init: any bus access would fail the test.
    let mut sensor = sensor_expecting(&[]);
    let cases = [
        (Mode::Full3280x2464, 30.0),   // max 21.19 fps
        (Mode::Crop1920x1080, 60.0),   // max 47.57 fps
        (Mode::Binned1640x1232, 42.0), // max 41.85 fps
        (Mode::Binned640x480, 120.0),  // max 103.32 fps
        (Mode::Binned640x480, 0.5),    // min 0.807 fps
        (Mode::Binned640x480, 0.0),
        (Mode::Binned640x480, -30.0),
        (Mode::Binned640x480, f32::NAN),
        (Mode::Binned640x480, f32::INFINITY),
    ];
    for (mode, fps) in cases {
        assert_eq!(
            sensor.set_mode(mode, fps),
            Err(Error::InvalidInput),
            "{mode:?} @ {fps}"
        );
    }
    // Settings are unchanged.
    assert_eq!(sensor.mode(), Mode::Full3280x2464);
    assert_eq!(sensor.frame_length_lines(), 3527);
    finish(sensor);
}

#[test]
fn highest_frame_rate_uses_the_minimum_vertical_blanking() {
    // 480 lines + 32 lines of blanking.
    let mut script = mode_script(&ModeRegisters {
        x_start: 1000,
        x_end: 2279,
        y_start: 752,
        y_end: 1711,
        width: 640,
        height: 480,
        binning: 1,
        frame_length: 512,
    });
    script.push(w16(0x015A, 508));
    let mut sensor = sensor_expecting(&script);
    let max = Mode::Binned640x480.max_frame_rate();
    sensor.set_mode(Mode::Binned640x480, max).unwrap();
    assert_eq!(sensor.frame_length_lines(), 512);
    finish(sensor);
}

// ---------------------------------------------------------------------------
// Exposure and gain
// ---------------------------------------------------------------------------

#[test]
fn exposure_is_clamped_to_the_frame_length() {
    let mut sensor = sensor_expecting(&[
        w16(0x015A, 3523), // 5000 requested; frame is 3527 lines
        w16(0x015A, 4),    // 1 requested; minimum is 4
        w16(0x015A, 1000),
        w16(0x015A, 529),  // 10 ms = 529.0 lines of 18.90 us
        w16(0x015A, 3523), // 1 s requested
    ]);
    assert_eq!(sensor.max_exposure_lines(), 3523);
    assert_eq!(sensor.set_exposure_lines(5000), Ok(3523));
    assert_eq!(sensor.set_exposure_lines(1), Ok(4));
    assert_eq!(sensor.set_exposure_lines(1000), Ok(1000));
    assert_eq!(sensor.set_exposure_us(10_000.0), Ok(529));
    assert_eq!(sensor.set_exposure_us(1_000_000.0), Ok(3523));
    assert_eq!(sensor.set_exposure_us(f32::NAN), Err(Error::InvalidInput));
    assert_eq!(sensor.exposure_lines(), 3523);
    finish(sensor);
}

#[test]
fn gains_are_written_as_register_codes() {
    let mut sensor = sensor_expecting(&[
        w8(0x0157, 128),     // 6.02 dB
        w8(0x0157, 232),     // code 250 clamped
        w8(0x0157, 232),     // 40 dB clamped
        w8(0x0157, 0),       // -6 dB clamped
        w16(0x0158, 0x0200), // 2.0x
        w16(0x0158, 0x0FFF), // 20x clamped
        w16(0x0158, 0x0100), // 0.5x clamped
    ]);
    assert_eq!(sensor.set_analog_gain_db(6.02), Ok(128));
    assert_eq!(sensor.set_analog_gain_code(250), Ok(232));
    assert_eq!(sensor.set_analog_gain_db(40.0), Ok(232));
    assert_eq!(sensor.set_analog_gain_db(-6.0), Ok(0));
    assert_eq!(
        sensor.set_analog_gain_db(f32::NAN),
        Err(Error::InvalidInput)
    );
    assert_eq!(sensor.set_digital_gain(2.0), Ok(0x0200));
    assert_eq!(sensor.set_digital_gain(20.0), Ok(0x0FFF));
    assert_eq!(sensor.set_digital_gain(0.5), Ok(0x0100));
    assert_eq!(sensor.set_digital_gain(f32::NAN), Err(Error::InvalidInput));
    finish(sensor);
}

#[test]
fn analog_gain_conversion_edges_and_round_trips() {
    assert_eq!(analog_gain_db_from_code(0), 0.0);
    assert!((analog_gain_db_from_code(128) - 6.02).abs() < 0.01);
    assert!((analog_gain_db_from_code(232) - 20.56).abs() < 0.01);
    assert_eq!(analog_gain_code_from_db(0.0), Some(0));
    assert_eq!(analog_gain_code_from_db(6.02), Some(128));
    assert_eq!(analog_gain_code_from_db(20.56), Some(232));
    // Out of range saturates; NaN has no nearest code.
    assert_eq!(analog_gain_code_from_db(-1.0), Some(0));
    assert_eq!(analog_gain_code_from_db(21.0), Some(232));
    assert_eq!(analog_gain_code_from_db(f32::NAN), None);
    for code in 0..=232 {
        assert_eq!(
            analog_gain_code_from_db(analog_gain_db_from_code(code)),
            Some(code)
        );
    }
    // Against the formula, computed with std.
    for code in 0..=232_u8 {
        let expected = 20.0 * (256.0 / (256.0 - f32::from(code))).log10();
        assert!(
            (analog_gain_db_from_code(code) - expected).abs() < 1e-4,
            "code {code}"
        );
    }
}

// ---------------------------------------------------------------------------
// Orientation and test pattern
// ---------------------------------------------------------------------------

#[test]
fn flip_sets_orientation_and_bayer_order() {
    let mut sensor = sensor_expecting(&[
        w8(0x0172, 0x01),
        w8(0x0172, 0x02),
        w8(0x0172, 0x03),
        w8(0x0172, 0x00),
    ]);
    sensor.set_flip(true, false).unwrap();
    assert_eq!(sensor.bayer_order(), BayerOrder::Grbg);
    sensor.set_flip(false, true).unwrap();
    assert_eq!(sensor.bayer_order(), BayerOrder::Gbrg);
    sensor.set_flip(true, true).unwrap();
    assert_eq!(sensor.bayer_order(), BayerOrder::Bggr);
    assert_eq!(sensor.flip(), (true, true));
    sensor.set_flip(false, false).unwrap();
    assert_eq!(sensor.bayer_order(), BayerOrder::Rggb);
    finish(sensor);
}

#[test]
fn test_patterns() {
    let mut sensor = sensor_expecting(&[
        w16(0x0602, 0x03FF), // red
        w16(0x0604, 0x0000), // green (red rows)
        w16(0x0606, 0x0123), // blue
        w16(0x0608, 0x0000), // green (blue rows)
        w16(0x0600, 1),
        w16(0x0600, 2),
        w16(0x0600, 3),
        w16(0x0600, 4),
        w16(0x0600, 0),
    ]);
    let solid = TestPattern::Solid {
        r: 0x03FF,
        gr: 0,
        b: 0x0123,
        gb: 0,
    };
    sensor.set_test_pattern(solid).unwrap();
    assert_eq!(sensor.test_pattern(), solid);
    sensor.set_test_pattern(TestPattern::ColourBars).unwrap();
    sensor
        .set_test_pattern(TestPattern::FadeToGreyColourBars)
        .unwrap();
    sensor.set_test_pattern(TestPattern::Pn9).unwrap();
    sensor.set_test_pattern(TestPattern::None).unwrap();
    // An 11-bit colour is refused before anything is written.
    let too_wide = TestPattern::Solid {
        r: 0,
        gr: 0x0400,
        b: 0,
        gb: 0,
    };
    assert_eq!(sensor.set_test_pattern(too_wide), Err(Error::InvalidInput));
    assert_eq!(sensor.test_pattern(), TestPattern::None);
    finish(sensor);
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

#[test]
fn start_and_stop_streaming() {
    let sensor = sensor_expecting(&[
        w8(0x0100, 0x01),
        w16(0x015A, 800),
        w8(0x0157, 128),
        w16(0x0158, 0x0180),
        w8(0x0100, 0x00),
    ]);
    let mut streaming = sensor.start_streaming().map_err(|(e, _)| e).unwrap();
    // Per-frame controls are allowed while streaming.
    assert_eq!(streaming.set_exposure_lines(800), Ok(800));
    assert_eq!(streaming.set_analog_gain_code(128), Ok(128));
    assert_eq!(streaming.set_digital_gain(1.5), Ok(0x0180));
    let standby = streaming.stop_streaming().map_err(|(e, _)| e).unwrap();
    assert_eq!(standby.exposure_lines(), 800);
    finish(standby);
}

#[test]
fn failed_start_hands_the_standby_device_back() {
    let mut script = vec![w8(0x0100, 0x01).with_error(NACK)];
    // Still in standby: the mode can be changed, then a retry succeeds.
    script.extend(mode_script(&ModeRegisters {
        x_start: 680,
        x_end: 2599,
        y_start: 692,
        y_end: 1771,
        width: 1920,
        height: 1080,
        binning: 0,
        frame_length: 1763,
    }));
    script.push(w8(0x0100, 0x01));
    let sensor = sensor_expecting(&script);

    let Err((error, mut standby)) = sensor.start_streaming() else {
        panic!("the NACK must fail start_streaming");
    };
    assert_eq!(error, Error::I2c(NACK));
    standby.set_mode(Mode::Crop1920x1080, 30.0).unwrap();
    let streaming = standby.start_streaming().map_err(|(e, _)| e).unwrap();
    finish(streaming);
}

#[test]
fn failed_stop_hands_the_streaming_device_back() {
    let sensor = sensor_expecting(&[
        w8(0x0100, 0x01),
        w8(0x0100, 0x00).with_error(NACK),
        w8(0x0100, 0x00),
    ]);
    let streaming = sensor.start_streaming().map_err(|(e, _)| e).unwrap();
    let Err((error, streaming)) = streaming.stop_streaming() else {
        panic!("the NACK must fail stop_streaming");
    };
    assert_eq!(error, Error::I2c(NACK));
    let standby = streaming.stop_streaming().map_err(|(e, _)| e).unwrap();
    finish(standby);
}

#[test]
fn a_nack_during_set_mode_keeps_the_old_settings() {
    let mut script = mode_script(&full_resolution(5290));
    script.truncate(5);
    script.push(w16(0x016E, 2464).with_error(NACK));
    let mut sensor = sensor_expecting(&script);
    assert_eq!(
        sensor.set_mode(Mode::Full3280x2464, 10.0),
        Err(Error::I2c(NACK))
    );
    assert_eq!(sensor.frame_length_lines(), 3527);
    finish(sensor);
}

// ---------------------------------------------------------------------------
// Error formatting
// ---------------------------------------------------------------------------

#[test]
fn errors_display() {
    assert_eq!(
        Error::<ErrorKind>::UnexpectedChipId(0x0477).to_string(),
        "unexpected chip id 0x0477 (IMX219 reads 0x0219)"
    );
    assert_eq!(
        Error::<ErrorKind>::InvalidInput.to_string(),
        "invalid input"
    );
    assert!(
        Error::I2c(NACK)
            .to_string()
            .starts_with("I2C bus error: NoAcknowledge")
    );
}
