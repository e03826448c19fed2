//! Bus-level tests: every register access the driver makes is scripted with
//! `embedded-hal-mock`, with register addresses and values written out as
//! literals (not the crate's constants) so that the tests check them.
//! Every test ends by taking the bus back and calling `done()`, which fails
//! if an expected transaction was not performed.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as DelayTransaction};
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTransaction};
use ocellus_imx500::{
    CommandReply, DnnErrors, DnnStatus, Error, FirmwareVersion, Imx500, Mode, Standby, State,
};

/// 7-bit address of the IMX500.
const ADDRESS: u8 = 0x1A;

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

/// Read of `bytes.len()` bytes from `register`: write the address, read.
fn read(register: u16, bytes: &[u8]) -> I2cTransaction {
    I2cTransaction::write_read(ADDRESS, register.to_be_bytes().to_vec(), bytes.to_vec())
}

/// `CHIP_ID` read: write `[0x00, 0x16]`, read two bytes.
fn read_chip_id(id: u16) -> I2cTransaction {
    read(0x0016, &id.to_be_bytes())
}

/// `DD_SYS_STATE` read.
fn read_sys_state(value: u8) -> I2cTransaction {
    read(0xD02A, &[value])
}

/// What `set_mode` must write, in order.
struct ModeRegisters {
    frame_length: u16,
    line_length: u16,
    binning_mode: u8,
    binning_type: u8,
    binning_weighting: u8,
    width: u16,
    height: u16,
}

fn mode_script(m: &ModeRegisters) -> Vec<I2cTransaction> {
    vec![
        w16(0x0340, m.frame_length),
        w16(0x0342, m.line_length),
        w8(0x3210, 0),     // long exposure shift off
        w16(0x0344, 0),    // x_addr_start
        w16(0x0346, 0),    // y_addr_start
        w16(0x0348, 4055), // x_addr_end
        w16(0x034A, 3039), // y_addr_end
        w8(0x0900, m.binning_mode),
        w8(0x0901, m.binning_type),
        w8(0x0902, m.binning_weighting),
        w16(0x040C, m.width),  // digital crop width
        w16(0x040E, m.height), // digital crop height
        w16(0x034C, m.width),
        w16(0x034E, m.height),
    ]
}

/// 4056x3040, line length 17900 (0x45EC), no binning.
fn full_resolution(frame_length: u16) -> ModeRegisters {
    ModeRegisters {
        frame_length,
        line_length: 17_900,
        binning_mode: 0,
        binning_type: 0x11,
        binning_weighting: 0,
        width: 4056,
        height: 3040,
    }
}

/// 2028x1520, line length 9398 (0x24B6), 2x2 binned.
fn binned(frame_length: u16) -> ModeRegisters {
    ModeRegisters {
        frame_length,
        line_length: 9_398,
        binning_mode: 1,
        binning_type: 0x22,
        binning_weighting: 2,
        width: 2028,
        height: 1520,
    }
}

/// The complete script of `Imx500::new`.
fn init_script() -> Vec<I2cTransaction> {
    let mut script = vec![
        read_chip_id(0x0500),
        w8(0x0100, 0x00), // MODE_SELECT: standby
    ];
    // Default mode: full resolution, 3040 + 1117 lines of blanking.
    script.extend(mode_script(&full_resolution(4157)));
    script.extend([
        w16(0x0202, 1600), // COARSE_INTEGRATION_TIME
        w16(0x0204, 0),    // ANALOG_GAIN: 1.0x
    ]);
    script
}

/// A sensor through `new`, with `then` expected afterwards.
#[allow(
    clippy::panic,
    reason = "test helper: a failed init fails the calling test"
)]
fn sensor_with<D: DelayNs>(then: &[I2cTransaction], delay: D) -> Imx500<I2cMock, D, Standby> {
    let mut expectations = init_script();
    expectations.extend_from_slice(then);
    match Imx500::new(I2cMock::new(&expectations), delay) {
        Ok(sensor) => sensor,
        Err((error, _, _)) => panic!("init failed: {error:?}"),
    }
}

fn sensor_expecting(then: &[I2cTransaction]) -> Imx500<I2cMock, NoopDelay, Standby> {
    sensor_with(then, NoopDelay::new())
}

/// Takes the bus back and checks every expectation was consumed.
fn finish<S: State>(sensor: Imx500<I2cMock, NoopDelay, S>) {
    let (mut i2c, _delay) = sensor.destroy();
    i2c.done();
}

// ---------------------------------------------------------------------------
// Initialisation and bus recovery
// ---------------------------------------------------------------------------

#[test]
fn new_performs_the_exact_init_script_without_waiting() {
    let i2c = I2cMock::new(&init_script());
    // No delay expected: `new` neither resets nor polls.
    let delay = CheckedDelay::new(&[]);
    let sensor = match Imx500::new(i2c, delay) {
        Ok(sensor) => sensor,
        Err((error, _, _)) => panic!("init failed: {error:?}"),
    };

    assert_eq!(sensor.mode(), Mode::Full4056x3040);
    assert_eq!(sensor.frame_length_lines(), 4157);
    assert!((sensor.frame_rate() - 9.9986).abs() < 0.001);
    assert_eq!(sensor.exposure_lines(), 1600);
    assert!((sensor.exposure_us() - 38_494.8).abs() < 1.0);
    assert_eq!(sensor.max_exposure_lines(), 4135);
    assert_eq!(sensor.analog_gain_code(), 0);
    assert_eq!(sensor.analog_gain(), 1.0);

    let (mut i2c, mut delay) = sensor.destroy();
    i2c.done();
    delay.done();
}

#[test]
fn wrong_chip_id_is_reported_and_the_bus_is_returned() {
    // An IMX477 (HQ camera) answers at the same address with 0x0477.
    let i2c = I2cMock::new(&[read_chip_id(0x0477)]);
    let Err((error, mut i2c, _delay)) = Imx500::new(i2c, NoopDelay::new()) else {
        panic!("a chip answering 0x0477 must be refused");
    };
    assert_eq!(error, Error::UnexpectedChipId { found: 0x0477 });
    // Nothing was written to the foreign chip, and the bus is ours again.
    i2c.done();
}

#[test]
fn nack_on_the_chip_id_read_returns_the_bus() {
    let i2c = I2cMock::new(&[read(0x0016, &[0, 0]).with_error(NACK)]);
    let Err((error, mut i2c, _delay)) = Imx500::new(i2c, NoopDelay::new()) else {
        panic!("a NACK must fail init");
    };
    assert_eq!(error, Error::I2c(NACK));
    i2c.done();
}

#[test]
fn nack_mid_init_returns_the_bus() {
    let i2c = I2cMock::new(&[
        read_chip_id(0x0500),
        w8(0x0100, 0x00),
        w16(0x0340, 4157),
        w16(0x0342, 17_900).with_error(NACK),
    ]);
    let Err((error, mut i2c, _delay)) = Imx500::new(i2c, NoopDelay::new()) else {
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
    script[last] = w16(0x0204, 0).with_error(NACK);
    let Err((error, mut i2c, _delay)) = Imx500::new(I2cMock::new(&script), NoopDelay::new()) else {
        panic!("a NACK must fail init");
    };
    assert_eq!(error, Error::I2c(NACK));
    i2c.done();
}

// ---------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------

#[test]
fn full_resolution_at_5_fps() {
    // 744e6 / 17900 = 41 564.25 lines/s; / 5 = 8312.85 -> 8313 lines.
    let mut sensor = sensor_expecting(&mode_script(&full_resolution(8313)));
    sensor.set_mode(Mode::Full4056x3040, 5.0).unwrap();
    assert_eq!(sensor.frame_length_lines(), 8313);
    assert_eq!(sensor.max_exposure_lines(), 8291);
    assert_eq!(sensor.exposure_lines(), 1600);
    finish(sensor);
}

#[test]
fn nominal_10_fps_gives_the_shortest_full_resolution_frame() {
    // 41 564.25 / 10 = 4156.4, rounded up to 4157 = 3040 + 1117.
    let mut sensor = sensor_expecting(&mode_script(&full_resolution(4157)));
    sensor.set_mode(Mode::Full4056x3040, 10.0).unwrap();
    assert_eq!(sensor.frame_length_lines(), 4157);
    assert!(sensor.frame_rate() <= 10.0);
    finish(sensor);
}

#[test]
fn binned_at_30_fps() {
    // 744e6 / 9398 = 79 166.84 lines/s; / 30 = 2638.9 -> 2639 lines.
    let mut sensor = sensor_expecting(&mode_script(&binned(2639)));
    sensor.set_mode(Mode::Binned2028x1520, 30.0).unwrap();
    assert_eq!(sensor.mode(), Mode::Binned2028x1520);
    assert_eq!(sensor.frame_length_lines(), 2639);
    assert!((sensor.frame_rate() - 29.998).abs() < 0.001);
    // The default exposure (1600 lines) still fits (max 2639 - 22).
    assert_eq!(sensor.exposure_lines(), 1600);
    finish(sensor);
}

#[test]
fn highest_binned_frame_rate_uses_the_minimum_vertical_blanking() {
    // 1520 lines + 1117 lines of blanking.
    let mut sensor = sensor_expecting(&mode_script(&binned(2637)));
    let max = Mode::Binned2028x1520.max_frame_rate();
    assert!((max - 30.021).abs() < 0.001);
    sensor.set_mode(Mode::Binned2028x1520, max).unwrap();
    assert_eq!(sensor.frame_length_lines(), 2637);
    finish(sensor);
}

#[test]
fn a_shorter_frame_shortens_the_exposure() {
    let mut script = vec![w16(0x0202, 4135)]; // 5000 requested: 4157 - 22
    script.extend(mode_script(&binned(2639)));
    script.push(w16(0x0202, 2617)); // 2639 - 22
    let mut sensor = sensor_expecting(&script);
    assert_eq!(sensor.set_exposure_lines(5000), Ok(4135));
    sensor.set_mode(Mode::Binned2028x1520, 30.0).unwrap();
    assert_eq!(sensor.exposure_lines(), 2617);
    finish(sensor);
}

#[test]
fn unreachable_frame_rates_are_rejected_before_any_write() {
    // No expectation after init: any bus access would fail the test.
    let mut sensor = sensor_expecting(&[]);
    let cases = [
        (Mode::Full4056x3040, 10.01), // max 9.9986 fps (4156 lines)
        (Mode::Full4056x3040, 30.0),
        (Mode::Full4056x3040, 0.6),    // min 0.6346 fps
        (Mode::Binned2028x1520, 31.0), // max 30.021 fps
        (Mode::Binned2028x1520, 1.2),  // min 1.2086 fps
        (Mode::Binned2028x1520, 0.0),
        (Mode::Binned2028x1520, -30.0),
        (Mode::Binned2028x1520, f32::NAN),
        (Mode::Binned2028x1520, f32::INFINITY),
    ];
    for (mode, fps) in cases {
        assert_eq!(
            sensor.set_mode(mode, fps),
            Err(Error::InvalidInput),
            "{mode:?} @ {fps}"
        );
    }
    // Settings are unchanged.
    assert_eq!(sensor.mode(), Mode::Full4056x3040);
    assert_eq!(sensor.frame_length_lines(), 4157);
    finish(sensor);
}

#[test]
fn a_nack_during_set_mode_keeps_the_old_settings() {
    let mut script = mode_script(&binned(2639));
    script.truncate(5);
    script.push(w16(0x0348, 4055).with_error(NACK));
    let mut sensor = sensor_expecting(&script);
    assert_eq!(
        sensor.set_mode(Mode::Binned2028x1520, 30.0),
        Err(Error::I2c(NACK))
    );
    assert_eq!(sensor.mode(), Mode::Full4056x3040);
    assert_eq!(sensor.frame_length_lines(), 4157);
    finish(sensor);
}

// ---------------------------------------------------------------------------
// Exposure and gain
// ---------------------------------------------------------------------------

#[test]
fn exposure_is_clamped_to_the_frame_length() {
    let mut sensor = sensor_expecting(&[
        w16(0x0202, 4135), // 5000 requested; frame is 4157 lines
        w16(0x0202, 8),    // 1 requested; minimum is 8
        w16(0x0202, 1000),
        w16(0x0202, 416),  // 10 ms = 415.6 lines of 24.06 us
        w16(0x0202, 4135), // 1 s requested
    ]);
    assert_eq!(sensor.max_exposure_lines(), 4135);
    assert_eq!(sensor.set_exposure_lines(5000), Ok(4135));
    assert_eq!(sensor.set_exposure_lines(1), Ok(8));
    assert_eq!(sensor.set_exposure_lines(1000), Ok(1000));
    assert_eq!(sensor.set_exposure_us(10_000.0), Ok(416));
    assert_eq!(sensor.set_exposure_us(1_000_000.0), Ok(4135));
    assert_eq!(sensor.set_exposure_us(f32::NAN), Err(Error::InvalidInput));
    assert_eq!(sensor.exposure_lines(), 4135);
    finish(sensor);
}

#[test]
fn exposure_time_follows_the_line_length_of_the_mode() {
    let mut script = mode_script(&binned(2639));
    script.push(w16(0x0202, 792)); // 10 ms = 791.7 lines of 12.63 us
    let mut sensor = sensor_expecting(&script);
    sensor.set_mode(Mode::Binned2028x1520, 30.0).unwrap();
    assert_eq!(sensor.set_exposure_us(10_000.0), Ok(792));
    assert!((sensor.exposure_us() - 10_004.2).abs() < 1.0);
    finish(sensor);
}

#[test]
fn gains_are_written_as_register_codes() {
    let mut sensor = sensor_expecting(&[
        w16(0x0204, 512), // 2.0x
        w16(0x0204, 683), // 3.0x: 1024 - 341.33 = 682.67 -> 683
        w16(0x0204, 978), // code 1000 clamped
        w16(0x0204, 978), // 100x clamped
        w16(0x0204, 0),   // 0.5x clamped
        w16(0x0204, 896), // 8.0x
    ]);
    assert_eq!(sensor.set_analog_gain(2.0), Ok(512));
    assert_eq!(sensor.analog_gain(), 2.0);
    assert_eq!(sensor.set_analog_gain(3.0), Ok(683));
    assert_eq!(sensor.set_analog_gain_code(1000), Ok(978));
    assert_eq!(sensor.set_analog_gain(100.0), Ok(978));
    assert!((sensor.analog_gain() - 22.26).abs() < 0.01);
    assert_eq!(sensor.set_analog_gain(0.5), Ok(0));
    assert_eq!(sensor.set_analog_gain(f32::NAN), Err(Error::InvalidInput));
    assert_eq!(sensor.analog_gain_code(), 0);
    assert_eq!(sensor.set_analog_gain_code(896), Ok(896));
    assert_eq!(sensor.analog_gain(), 8.0);
    finish(sensor);
}

// ---------------------------------------------------------------------------
// DNN control and status
// ---------------------------------------------------------------------------

#[test]
fn dnn_enable_and_disable_write_stream_mode_select() {
    let mut sensor = sensor_expecting(&[w8(0xD100, 4), w8(0xD100, 0)]);
    sensor.dnn_enable().unwrap();
    sensor.dnn_disable().unwrap();
    finish(sensor);
}

#[test]
fn dnn_status_decodes_every_state() {
    let mut sensor = sensor_expecting(&[
        read_sys_state(0),
        read_sys_state(1),
        read_sys_state(2),
        read_sys_state(3),
        read_sys_state(0x57),
    ]);
    assert_eq!(sensor.dnn_status(), Ok(DnnStatus::StandbyNoNetwork));
    assert_eq!(sensor.dnn_status(), Ok(DnnStatus::StreamingNoNetwork));
    assert_eq!(sensor.dnn_status(), Ok(DnnStatus::StandbyWithNetwork));
    assert_eq!(sensor.dnn_status(), Ok(DnnStatus::StreamingWithNetwork));
    assert_eq!(sensor.dnn_status(), Ok(DnnStatus::Other(0x57)));
    finish(sensor);
}

#[test]
fn download_reply_errors_and_firmware_version_are_read() {
    let mut sensor = sensor_expecting(&[
        read(0xD014, &[0x01]),
        read(0xD014, &[0x11]),
        read(0xD014, &[0xFE]),
        read(0xD014, &[0x33]),
        read(0xD020, &[0x00]),
        read(0xD020, &[0x06]),
        read(0xD07C, &[0x00, 0x12, 0x03, 0x45]),
    ]);
    assert_eq!(sensor.command_reply(), Ok(CommandReply::TransDone));
    assert_eq!(sensor.command_reply(), Ok(CommandReply::UpdateDone));
    assert_eq!(sensor.command_reply(), Ok(CommandReply::MacAuthError));
    assert_eq!(sensor.command_reply(), Ok(CommandReply::Other(0x33)));
    assert_eq!(sensor.dnn_errors(), Ok(DnnErrors(0)));
    let errors = sensor.dnn_errors().unwrap();
    assert!(!errors.status_error() && errors.internal_error() && errors.parameter_error());
    let version = sensor.main_firmware_version().unwrap();
    assert_eq!(version, FirmwareVersion(0x0012_0345));
    assert_eq!(version.to_string(), "12.03.45");
    finish(sensor);
}

#[test]
fn a_nack_on_a_status_read_is_reported() {
    let mut sensor = sensor_expecting(&[read_sys_state(0).with_error(NACK)]);
    assert_eq!(sensor.dnn_status(), Err(Error::I2c(NACK)));
    finish(sensor);
}

#[test]
fn waiting_for_the_dnn_polls_every_50_ms() {
    let delay = CheckedDelay::new(&[
        DelayTransaction::delay_ms(50),
        DelayTransaction::delay_ms(50),
    ]);
    let mut sensor = sensor_with(
        &[read_sys_state(2), read_sys_state(2), read_sys_state(3)],
        delay,
    );
    sensor
        .wait_for_dnn_status(DnnStatus::StreamingWithNetwork, 10)
        .unwrap();
    let (mut i2c, mut delay) = sensor.destroy();
    i2c.done();
    delay.done();
}

#[test]
fn waiting_for_the_dnn_gives_up_with_the_last_status() {
    // Three reads, two waits in between, none after the last read; then a
    // budget of 0 still reads once and does not wait.
    let delay = CheckedDelay::new(&[
        DelayTransaction::delay_ms(50),
        DelayTransaction::delay_ms(50),
    ]);
    let mut sensor = sensor_with(
        &[
            read_sys_state(0),
            read_sys_state(0),
            read_sys_state(0),
            read_sys_state(2),
        ],
        delay,
    );
    assert_eq!(
        sensor.wait_for_dnn_status(DnnStatus::StandbyWithNetwork, 3),
        Err(Error::DnnStatusTimeout {
            last: DnnStatus::StandbyNoNetwork
        })
    );
    assert_eq!(
        sensor.wait_for_dnn_status(DnnStatus::StandbyWithNetwork, 0),
        Ok(())
    );
    let (mut i2c, mut delay) = sensor.destroy();
    i2c.done();
    delay.done();
}

#[test]
fn tensor_line_stride_is_written_to_the_four_dnn_channels() {
    let mut sensor = sensor_expecting(&[
        w16(0x3054, 2560), // KPI
        w16(0x3056, 2560), // input tensor
        w16(0x3058, 2560), // output tensor
        w16(0x305A, 2560), // PQ
        w16(0x3054, 4064),
        w16(0x3056, 4064),
        w16(0x3058, 4064),
        w16(0x305A, 4064),
    ]);
    sensor
        .set_tensor_line_stride(ocellus_imx500::TENSOR_LINE_STRIDE_DEFAULT)
        .unwrap();
    sensor.set_tensor_line_stride(4064).unwrap();
    // A zero stride is refused before anything is written.
    assert_eq!(sensor.set_tensor_line_stride(0), Err(Error::InvalidInput));
    finish(sensor);
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

#[test]
fn start_and_stop_streaming() {
    let mut sensor = sensor_expecting(&[
        w8(0xD100, 4),
        w8(0x0100, 0x01),
        w16(0x0202, 1200),
        w16(0x0204, 768),
        read_sys_state(3),
        w8(0x0100, 0x00),
        w8(0xD100, 0),
    ]);
    sensor.dnn_enable().unwrap();
    let mut streaming = sensor.start_streaming().map_err(|(e, _)| e).unwrap();
    // Per-frame controls and status reads are allowed while streaming.
    assert_eq!(streaming.set_exposure_lines(1200), Ok(1200));
    assert_eq!(streaming.set_analog_gain(4.0), Ok(768));
    assert_eq!(streaming.dnn_status(), Ok(DnnStatus::StreamingWithNetwork));
    let mut standby = streaming.stop_streaming().map_err(|(e, _)| e).unwrap();
    standby.dnn_disable().unwrap();
    assert_eq!(standby.exposure_lines(), 1200);
    assert_eq!(standby.analog_gain_code(), 768);
    finish(standby);
}

#[test]
fn failed_start_hands_the_standby_device_back() {
    let mut script = vec![w8(0x0100, 0x01).with_error(NACK)];
    // Still in standby: the mode can be changed, then a retry succeeds.
    script.extend(mode_script(&binned(2639)));
    script.push(w8(0x0100, 0x01));
    let sensor = sensor_expecting(&script);

    let Err((error, mut standby)) = sensor.start_streaming() else {
        panic!("the NACK must fail start_streaming");
    };
    assert_eq!(error, Error::I2c(NACK));
    standby.set_mode(Mode::Binned2028x1520, 30.0).unwrap();
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

// ---------------------------------------------------------------------------
// Error formatting
// ---------------------------------------------------------------------------

#[test]
fn errors_display() {
    assert_eq!(
        Error::<ErrorKind>::UnexpectedChipId { found: 0x0477 }.to_string(),
        "unexpected chip id 0x0477 (IMX500 reads 0x0500)"
    );
    assert_eq!(
        Error::<ErrorKind>::InvalidInput.to_string(),
        "invalid input"
    );
    assert_eq!(
        Error::<ErrorKind>::DnnStatusTimeout {
            last: DnnStatus::Other(9)
        }
        .to_string(),
        "DNN status did not arrive (last read: Other(9))"
    );
    assert!(
        Error::I2c(NACK)
            .to_string()
            .starts_with("I2C bus error: NoAcknowledge")
    );
}
