//! The simulator against the real `ocellus-imx219` driver and against raw
//! bus traffic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource};
use ocellus_imx219::registers as reg;
use ocellus_imx219::{Imx219, Mode, Standby, Streaming, TestPattern};
use ocellus_imx219_sim::{
    COLOUR_BARS, DefaultScene, I2C_ADDRESS, RESET_TIME, RgbFrameData, Scene, SimDelay, SimError,
    SimHandle, SimImx219, Violation,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NACK_DATA: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data);
const NACK_ADDRESS: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);

type Camera<S> = Imx219<SimImx219, SimDelay, S>;

fn init() -> (Camera<Standby>, SimHandle) {
    let sim = SimImx219::new();
    let probe = sim.handle();
    let delay = sim.delay();
    let camera = Imx219::new(sim, delay).map_err(|(e, _, _)| e).unwrap();
    assert_eq!(probe.violations(), vec![]);
    (camera, probe)
}

fn stream(camera: Camera<Standby>) -> Camera<Streaming> {
    camera.start_streaming().map_err(|(e, _)| e).unwrap()
}

fn write(bus: &mut SimImx219, bytes: &[u8]) -> Result<(), ocellus_imx219_sim::SimI2cError> {
    bus.write(I2C_ADDRESS, bytes)
}

fn read_u16(bus: &mut SimImx219, addr: u16) -> Result<u16, ocellus_imx219_sim::SimI2cError> {
    let mut buf = [0; 2];
    bus.write_read(I2C_ADDRESS, &addr.to_be_bytes(), &mut buf)?;
    Ok(u16::from_be_bytes(buf))
}

/// A sim already initialised by the driver, bus handed back.
fn initialised_bus() -> (SimImx219, SimHandle) {
    let (camera, probe) = init();
    let (bus, _delay) = camera.destroy();
    (bus, probe)
}

#[test]
fn driver_initialises_and_every_mode_captures_its_size() {
    let (mut camera, probe) = init();
    assert!(!probe.is_streaming());
    assert_eq!(probe.capture(), Err(SimError::NotStreaming));
    for mode in Mode::ALL {
        camera.set_mode(mode, 10.0).unwrap();
        camera.set_exposure_us(5_000.0).unwrap();
        camera.set_analog_gain_db(3.0).unwrap();
        camera.set_digital_gain(1.5).unwrap();
        let mut streaming = stream(camera);
        assert!(probe.is_streaming());
        streaming.set_exposure_lines(300).unwrap();
        let frame = probe.capture().unwrap();
        assert_eq!(
            (frame.width, frame.height),
            (u32::from(mode.width()), u32::from(mode.height())),
            "{mode:?}"
        );
        assert_eq!(
            frame.data.len(),
            mode.width() as usize * mode.height() as usize * 3
        );
        camera = streaming.stop_streaming().map_err(|(e, _)| e).unwrap();
        assert_eq!(probe.capture(), Err(SimError::NotStreaming));
    }
    // Flips and every test pattern through the driver.
    camera.set_flip(true, true).unwrap();
    for pattern in [
        TestPattern::Solid {
            r: 1,
            gr: 2,
            b: 3,
            gb: 4,
        },
        TestPattern::ColourBars,
        TestPattern::FadeToGreyColourBars,
        TestPattern::Pn9,
        TestPattern::None,
    ] {
        camera.set_test_pattern(pattern).unwrap();
    }
    assert_eq!(probe.frame_count(), 4);
    assert_eq!(probe.violations(), vec![]);
}

#[test]
fn frame_counter_and_clock_advance_per_capture() {
    let (mut camera, probe) = init();
    camera.set_mode(Mode::Binned640x480, 30.0).unwrap();
    let _streaming = stream(camera);
    let t0 = probe.now();
    let a = probe.capture().unwrap();
    let b = probe.capture().unwrap();
    assert_eq!((a.frame_number, b.frame_number), (0, 1));
    assert_eq!(probe.frame_count(), 2);
    let period = probe.frame_duration();
    // 1763 lines × 3448 px at 182.4 Mpx/s ≈ 33.33 ms.
    assert!(
        (period.as_secs_f64() - 1.0 / 30.006).abs() < 1e-4,
        "{period:?}"
    );
    assert_eq!(probe.now() - t0, period * 2);
}

#[test]
fn model_id_reads_0219_and_is_read_only() {
    let (mut bus, probe) = initialised_bus();
    assert_eq!(read_u16(&mut bus, reg::MODEL_ID).unwrap(), 0x0219);
    let err = write(&mut bus, &[0x00, 0x00, 0x12, 0x34]).unwrap_err();
    assert_eq!(err.kind(), NACK_DATA);
    assert_eq!(err.violation, Violation::ReadOnly { addr: 0x0000 });
    let err = write(&mut bus, &[0x00, 0x01, 0x99]).unwrap_err();
    assert_eq!(err.kind(), NACK_DATA);
    assert_eq!(
        probe.violations(),
        vec![
            Violation::ReadOnly { addr: 0x0000 },
            Violation::ReadOnly { addr: 0x0001 }
        ]
    );
    assert_eq!(read_u16(&mut bus, reg::MODEL_ID).unwrap(), 0x0219);
}

#[test]
fn wrong_model_id_is_reported_by_the_driver() {
    let sim = SimImx219::new();
    sim.poke(0x0001, 0x19).unwrap();
    sim.poke(0x0000, 0x04).unwrap();
    let delay = sim.delay();
    let Err((error, _bus, _delay)) = Imx219::new(sim, delay) else {
        panic!("expected an error");
    };
    assert_eq!(error, ocellus_imx219::Error::UnexpectedChipId(0x0419));
}

#[test]
fn unknown_registers_are_nacked_and_recorded() {
    let (mut bus, probe) = initialised_bus();
    let err = read_u16(&mut bus, 0x3000).unwrap_err();
    assert_eq!(err.kind(), NACK_DATA);
    let err = write(&mut bus, &[0x30, 0xEB, 0x05]).unwrap_err();
    assert_eq!(err.kind(), NACK_DATA);
    // Auto-increment running off a known register into a hole: 0x0101.
    let err = write(&mut bus, &[0x01, 0x00, 0x00, 0x00]).unwrap_err();
    assert_eq!(err.kind(), NACK_DATA);
    assert_eq!(
        probe.violations(),
        vec![
            Violation::UnknownRegister { addr: 0x3000 },
            Violation::UnknownRegister { addr: 0x30EB },
            Violation::UnknownRegister { addr: 0x0101 },
        ]
    );
    // Wrong device address.
    let err = bus.write(0x36, &[0x00, 0x00]).unwrap_err();
    assert_eq!(err.kind(), NACK_ADDRESS);
    assert_eq!(
        probe.violations().last(),
        Some(&Violation::WrongAddress { address: 0x36 })
    );
}

#[test]
fn software_reset_restores_defaults_and_blocks_access() {
    let (mut bus, probe) = initialised_bus();
    // Change a few registers away from their defaults.
    write(&mut bus, &[0x01, 0x57, 0x80]).unwrap(); // analogue gain
    write(&mut bus, &[0x01, 0x72, 0x03]).unwrap(); // orientation
    write(&mut bus, &[0x01, 0x00, 0x01]).unwrap(); // streaming
    assert!(probe.is_streaming());

    write(&mut bus, &[0x01, 0x03, 0x01]).unwrap();
    assert!(probe.in_reset());
    assert!(!probe.is_streaming());
    // Too early: 6.1 ms after the reset.
    let mut delay = probe.delay();
    delay.delay_us(6_100);
    let err = read_u16(&mut bus, reg::MODEL_ID).unwrap_err();
    assert_eq!(err.kind(), NACK_ADDRESS);
    let err = write(&mut bus, &[0x01, 0x57, 0x10]).unwrap_err();
    assert_eq!(err.violation, Violation::AccessDuringReset);
    assert_eq!(
        probe.violations(),
        vec![Violation::AccessDuringReset, Violation::AccessDuringReset]
    );
    // After the reset time everything is back to the defaults.
    probe.advance(RESET_TIME);
    assert!(!probe.in_reset());
    assert_eq!(read_u16(&mut bus, reg::MODEL_ID).unwrap(), 0x0219);
    for def in ocellus_imx219_sim::map::REGISTER_MAP {
        let value = if def.width == 2 {
            read_u16(&mut bus, def.addr).unwrap()
        } else {
            let mut b = [0];
            bus.write_read(I2C_ADDRESS, &def.addr.to_be_bytes(), &mut b)
                .unwrap();
            u16::from(b[0])
        };
        assert_eq!(value, def.default, "{}", def.name);
    }
    assert_eq!(probe.register(reg::ANALOG_GAIN).unwrap(), 0);
    assert_eq!(probe.register(reg::IMG_ORIENTATION).unwrap(), 0);
    assert_eq!(probe.violations().len(), 2);
}

#[test]
fn a_delay_that_does_not_advance_the_clock_is_caught() {
    struct NoDelay;
    impl DelayNs for NoDelay {
        fn delay_ns(&mut self, _ns: u32) {}
    }
    let sim = SimImx219::new();
    let probe = sim.handle();
    let Err((error, _bus, _delay)) = Imx219::new(sim, NoDelay) else {
        panic!("expected an error");
    };
    assert!(
        matches!(error, ocellus_imx219::Error::I2c(e) if e.violation == Violation::AccessDuringReset)
    );
    assert_eq!(probe.violations(), vec![Violation::AccessDuringReset]);
}

#[test]
fn geometry_changes_while_streaming_are_nacked() {
    let (camera, probe) = init();
    let streaming = stream(camera);
    let (mut bus, _delay) = streaming.destroy();
    let before = probe.register_u16(reg::X_OUTPUT_SIZE).unwrap();
    for addr in [
        reg::X_OUTPUT_SIZE,
        reg::X_ADDR_START,
        reg::Y_ADDR_END,
        reg::LINE_LENGTH_PCK,
        reg::CSI_DATA_FORMAT,
    ] {
        let [hi, lo] = addr.to_be_bytes();
        let err = write(&mut bus, &[hi, lo, 0x02, 0x80]).unwrap_err();
        assert_eq!(err.kind(), NACK_DATA);
        assert_eq!(err.violation, Violation::ChangeWhileStreaming { addr });
    }
    for addr in [
        reg::BINNING_MODE_H,
        reg::IMG_ORIENTATION,
        reg::CSI_LANE_MODE,
        reg::X_ODD_INC,
    ] {
        let [hi, lo] = addr.to_be_bytes();
        let err = write(&mut bus, &[hi, lo, 0x01]).unwrap_err();
        assert_eq!(err.violation, Violation::ChangeWhileStreaming { addr });
    }
    assert_eq!(probe.violations().len(), 9);
    // Nothing was written.
    assert_eq!(probe.register_u16(reg::X_OUTPUT_SIZE).unwrap(), before);
    // Per-frame controls are fine while streaming.
    write(&mut bus, &[0x01, 0x5A, 0x01, 0x00]).unwrap(); // exposure
    write(&mut bus, &[0x01, 0x57, 0x40]).unwrap(); // analogue gain
    write(&mut bus, &[0x01, 0x58, 0x02, 0x00]).unwrap(); // digital gain
    write(&mut bus, &[0x01, 0x60, 0x10, 0x00]).unwrap(); // frame length
    assert_eq!(probe.violations().len(), 9);
    // Back in standby the geometry may change.
    write(&mut bus, &[0x01, 0x00, 0x00]).unwrap();
    write(&mut bus, &[0x01, 0x72, 0x01]).unwrap();
    assert_eq!(probe.violations().len(), 9);
}

#[test]
fn inconsistent_geometry_is_refused_and_recorded() {
    let (mut bus, probe) = initialised_bus();
    // Output width 1000 does not match the 3280-column unbinned window.
    write(&mut bus, &[0x01, 0x6C, 0x03, 0xE8]).unwrap();
    write(&mut bus, &[0x01, 0x00, 0x01]).unwrap();
    let err = probe.capture().unwrap_err();
    assert!(
        matches!(err, SimError::InvalidConfiguration { .. }),
        "{err:?}"
    );
    assert!(matches!(
        probe.violations().as_slice(),
        [Violation::InvalidConfiguration { .. }]
    ));
}

fn streaming_640x480(pattern: TestPattern, h_mirror: bool) -> (Camera<Streaming>, SimHandle) {
    let (mut camera, probe) = init();
    camera.set_mode(Mode::Binned640x480, 30.0).unwrap();
    camera.set_flip(h_mirror, false).unwrap();
    camera.set_test_pattern(pattern).unwrap();
    (stream(camera), probe)
}

#[test]
fn solid_colour_is_the_programmed_colour_everywhere() {
    let (_camera, probe) = streaming_640x480(
        TestPattern::Solid {
            r: 0x3FF,
            gr: 0x200,
            b: 0x104,
            gb: 0x200,
        },
        false,
    );
    let frame = probe.capture().unwrap();
    assert!(frame.data.chunks_exact(3).all(|p| p == [0xFF, 0x80, 0x41]));
}

fn bar_centres(frame: &RgbFrameData) -> Vec<[u8; 3]> {
    let bar = frame.width / 8;
    (0..8)
        .map(|i| frame.pixel(i * bar + bar / 2, frame.height / 2).unwrap())
        .collect()
}

#[test]
fn colour_bars_are_eight_equal_bars_in_order() {
    let (_camera, probe) = streaming_640x480(TestPattern::ColourBars, false);
    let frame = probe.capture().unwrap();
    assert_eq!(bar_centres(&frame), COLOUR_BARS.to_vec());
    assert_eq!(COLOUR_BARS[0], [255, 255, 255]); // white first
    assert_eq!(COLOUR_BARS[7], [0, 0, 0]); // black last
    // Equal widths: every bar spans exactly width / 8 columns.
    let row: Vec<[u8; 3]> = (0..frame.width)
        .map(|x| frame.pixel(x, 0).unwrap())
        .collect();
    for (i, chunk) in row.chunks(80).enumerate() {
        assert!(chunk.iter().all(|p| *p == COLOUR_BARS[i]), "bar {i}");
    }
    // Vertical bars: every row is the same.
    let first = &frame.data[..640 * 3];
    assert!(frame.data.chunks_exact(640 * 3).all(|r| r == first));
}

#[test]
fn h_flip_mirrors_the_colour_bars() {
    let (_camera, probe) = streaming_640x480(TestPattern::ColourBars, true);
    let frame = probe.capture().unwrap();
    let mut expected = COLOUR_BARS.to_vec();
    expected.reverse();
    assert_eq!(bar_centres(&frame), expected);
}

#[test]
fn fade_to_grey_bars_fade_downwards() {
    let (_camera, probe) = streaming_640x480(TestPattern::FadeToGreyColourBars, false);
    let frame = probe.capture().unwrap();
    assert_eq!(frame.pixel(40, 0).unwrap(), [255, 255, 255]);
    assert_eq!(frame.pixel(600, 0).unwrap(), [0, 0, 0]);
    assert_eq!(frame.pixel(40, 479).unwrap(), [128, 128, 128]);
    assert_eq!(frame.pixel(600, 479).unwrap(), [128, 128, 128]);
}

#[test]
fn pn9_is_deterministic_and_not_constant() {
    let (_camera, probe) = streaming_640x480(TestPattern::Pn9, false);
    let a = probe.capture().unwrap();
    let b = probe.capture().unwrap();
    assert_eq!(a.data, b.data);
    assert!(a.data.iter().any(|&v| v != a.data[0]));
    let table = ocellus_imx219_sim::pn9_bytes();
    assert_eq!(&a.data[..511], &table[..]);
    // A maximal-length 9-bit LFSR: 256 ones and 255 zeros per 511-bit
    // period; the 511-byte table holds 8 periods.
    let ones: u32 = table.iter().map(|b| b.count_ones()).sum();
    assert_eq!(ones, 8 * 256);
    // Bytes repeat with period 511 in the frame.
    assert_eq!(&a.data[511..1022], &table[..]);
}

fn scene_mean(camera: &mut Camera<Streaming>, probe: &SimHandle, lines: u16, code: u8) -> f64 {
    assert_eq!(camera.set_exposure_lines(lines).unwrap(), lines);
    assert_eq!(camera.set_analog_gain_code(code).unwrap(), code);
    probe.capture().unwrap().mean()
}

#[test]
fn scene_brightness_follows_exposure_and_gain() {
    let (mut camera, probe) = streaming_640x480(TestPattern::None, false);
    let base = scene_mean(&mut camera, &probe, 200, 0);
    assert!(base > 5.0, "{base}");
    let doubled = scene_mean(&mut camera, &probe, 400, 0);
    let ratio = doubled / base;
    assert!((ratio - 2.0).abs() < 0.04, "exposure ratio {ratio}");
    // 6.02 dB analogue gain = code 128 = 2.0×.
    let code = ocellus_imx219::analog_gain_code_from_db(6.02).unwrap();
    assert_eq!(code, 128);
    let gained = scene_mean(&mut camera, &probe, 200, code);
    let ratio = gained / base;
    assert!((ratio - 2.0).abs() < 0.04, "gain ratio {ratio}");
    // Digital gain 2.0× doubles it as well.
    camera.set_digital_gain(2.0).unwrap();
    let digital = scene_mean(&mut camera, &probe, 200, 0);
    let ratio = digital / base;
    assert!((ratio - 2.0).abs() < 0.04, "digital gain ratio {ratio}");
    // Saturation clips at 255.
    camera.set_digital_gain(15.0).unwrap();
    let frame = {
        camera.set_exposure_lines(1700).unwrap();
        probe.capture().unwrap()
    };
    let saturated = frame.data.iter().filter(|&&v| v == 255).count();
    assert!(saturated > frame.data.len() / 2, "{saturated}");
    assert_eq!(probe.violations(), vec![]);
}

#[test]
fn h_flip_mirrors_the_scene() {
    let (camera, probe) = streaming_640x480(TestPattern::None, false);
    let plain = probe.capture().unwrap();
    let camera = camera.stop_streaming().map_err(|(e, _)| e).unwrap();
    let mut camera = camera;
    camera.set_flip(true, false).unwrap();
    let _camera = stream(camera);
    let mirrored = probe.capture().unwrap();
    for y in [0, 100, 240, 479] {
        for x in [0, 10, 320, 639] {
            assert_eq!(
                plain.pixel(x, y).unwrap(),
                mirrored.pixel(639 - x, y).unwrap()
            );
        }
    }
    assert_ne!(plain.data, mirrored.data);
}

// ---------------------------------------------------------------------------
// Pluggable scene.

/// Array column splitting the centred 1280 × 960 window of
/// `Mode::Binned640x480` (columns 1000..=2279) into two halves.
const ARRAY_CENTRE_X: f32 = 1640.0;

/// Left half of the array reflectance 1.0, right half 0.0.
fn half_scene() -> Arc<dyn Scene> {
    Arc::new(|ax: f32, _ay: f32, _t: Duration| {
        if ax < ARRAY_CENTRE_X {
            [1.0; 3]
        } else {
            [0.0; 3]
        }
    })
}

/// Exposure `lines`, analogue gain 1.0, digital gain 1.0, then a capture.
fn capture_at(camera: &mut Camera<Streaming>, probe: &SimHandle, lines: u16) -> RgbFrameData {
    assert_eq!(camera.set_exposure_lines(lines).unwrap(), lines);
    assert_eq!(camera.set_analog_gain_code(0).unwrap(), 0);
    camera.set_digital_gain(1.0).unwrap();
    probe.capture().unwrap()
}

/// Asserts columns `0..320` are `left` and `320..640` are `right` on every
/// row of a 640 × 480 frame.
fn assert_halves(frame: &RgbFrameData, left: u8, right: u8) {
    assert_eq!((frame.width, frame.height), (640, 480));
    for (y, row) in frame.data.chunks_exact(640 * 3).enumerate() {
        let (l, r) = row.split_at(320 * 3);
        assert!(l.iter().all(|&v| v == left), "row {y}, left half");
        assert!(r.iter().all(|&v| v == right), "row {y}, right half");
    }
}

#[test]
fn custom_scene_appears_in_the_frame() {
    let (mut camera, probe) = streaming_640x480(TestPattern::None, false);
    probe.set_scene(half_scene());
    // 1.0 × 1200 lines × 1.0 × 1.0 × 0.1 = 120.
    let frame = capture_at(&mut camera, &probe, 1200);
    assert_halves(&frame, 120, 0);
    assert_eq!(probe.violations(), vec![]);
}

#[test]
fn custom_scene_brightness_follows_exposure_and_saturates() {
    let (mut camera, probe) = streaming_640x480(TestPattern::None, false);
    probe.set_scene(Arc::new(|_ax: f32, _ay: f32, _t: Duration| {
        [0.5, 0.25, 1.0]
    }));
    let base = capture_at(&mut camera, &probe, 200);
    assert!(base.data.chunks_exact(3).all(|p| p == [10, 5, 20]));
    let doubled = capture_at(&mut camera, &probe, 400);
    assert!(doubled.data.chunks_exact(3).all(|p| p == [20, 10, 40]));
    let ratio = doubled.mean() / base.mean();
    assert!((ratio - 2.0).abs() < 1e-9, "exposure ratio {ratio}");
    // The gains act on a custom scene as on the default one.
    camera.set_exposure_lines(200).unwrap();
    camera.set_digital_gain(2.0).unwrap();
    let gained = probe.capture().unwrap();
    assert!(gained.data.chunks_exact(3).all(|p| p == [20, 10, 40]));
    // Saturation clips at 255.
    camera.set_exposure_lines(1700).unwrap();
    camera.set_digital_gain(15.0).unwrap();
    let saturated = probe.capture().unwrap();
    assert!(saturated.data.iter().all(|&v| v == 255));
    assert_eq!(probe.violations(), vec![]);
}

#[test]
fn h_flip_mirrors_a_custom_scene() {
    let (mut camera, probe) = streaming_640x480(TestPattern::None, true);
    assert_eq!(probe.register(reg::IMG_ORIENTATION).unwrap() & 1, 1);
    probe.set_scene(half_scene());
    let mirrored = capture_at(&mut camera, &probe, 1200);
    assert_halves(&mirrored, 0, 120);
    // An asymmetric ramp: output column x shows what unmirrored column
    // 639 - x shows.
    let ramp: Arc<dyn Scene> =
        Arc::new(|ax: f32, _ay: f32, _t: Duration| [(ax - 1000.0) / 1280.0; 3]);
    probe.set_scene(ramp.clone());
    let mirrored = capture_at(&mut camera, &probe, 1700);
    let (plain_camera, plain_probe) = streaming_640x480(TestPattern::None, false);
    let mut plain_camera = plain_camera;
    plain_probe.set_scene(ramp);
    let plain = capture_at(&mut plain_camera, &plain_probe, 1700);
    for y in [0, 240, 479] {
        for x in 0..640 {
            assert_eq!(plain.pixel(x, y), mirrored.pixel(639 - x, y), "({x}, {y})");
        }
    }
    assert_ne!(plain.data, mirrored.data);
}

#[test]
fn custom_scene_sees_the_simulated_time_advance() {
    let (mut camera, probe) = streaming_640x480(TestPattern::None, false);
    assert_eq!(camera.set_exposure_lines(1200).unwrap(), 1200);
    let t0 = probe.now();
    let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    // A bright figure, 200 array columns wide, walking right at 2000
    // array columns per simulated second from column 1100.
    let walker = {
        let seen = Arc::clone(&seen);
        let calls = Arc::clone(&calls);
        move |ax: f32, _ay: f32, t: Duration| {
            calls.fetch_add(1, Ordering::Relaxed);
            let mut seen = seen.lock().unwrap();
            if seen.last() != Some(&t) {
                seen.push(t);
            }
            let left = 1100.0 + 2000.0 * (t - t0).as_secs_f32();
            if (left..left + 200.0).contains(&ax) {
                [1.0; 3]
            } else {
                [0.0; 3]
            }
        }
    };
    probe.set_scene(Arc::new(walker));
    let first_bright =
        |frame: &RgbFrameData| (0..640).find(|&x| frame.pixel(x, 240) != Some([0; 3]));
    let a = probe.capture().unwrap();
    let b = probe.capture().unwrap();
    let period = probe.frame_duration();
    // Once per output pixel, with the time at the start of each frame.
    assert_eq!(calls.load(Ordering::Relaxed), 2 * 640 * 480);
    assert_eq!(*seen.lock().unwrap(), vec![t0, t0 + period]);
    assert_eq!(b.timestamp, t0 + period * 2);
    assert_ne!(a.data, b.data);
    // Output column x samples array column 1000 + 2 (x + 0.5). The figure
    // starts at column 1100 (output column 50); one frame (33.3 ms) later it
    // is at 1166.7, first sampled by output column 83.
    assert_eq!(first_bright(&a), Some(50));
    assert_eq!(first_bright(&b), Some(83));
}

#[test]
fn a_scene_may_use_the_sim_handle() {
    let (_camera, probe) = streaming_640x480(TestPattern::None, false);
    let inner = probe.clone();
    // Would deadlock if the scene were called under the simulator's lock.
    probe.set_scene(Arc::new(move |_ax: f32, _ay: f32, _t: Duration| {
        [if inner.frame_count() == 1 { 1.0 } else { 0.0 }; 3]
    }));
    let frame = probe.capture().unwrap();
    assert!(frame.data.iter().all(|&v| v > 0));
    probe.reset_scene(); // drops the scene and its handle
}

#[test]
fn reset_scene_restores_the_default_scene() {
    let (_camera, probe) = streaming_640x480(TestPattern::None, false);
    let default = probe.capture().unwrap();
    assert!(default.mean() > 5.0);
    probe.set_scene(Arc::new(|_ax: f32, _ay: f32, _t: Duration| [0.0; 3]));
    let black = probe.capture().unwrap();
    assert!(black.data.iter().all(|&v| v == 0));
    probe.reset_scene();
    let restored = probe.capture().unwrap();
    assert_eq!(restored.data, default.data);
    // DefaultScene is the built-in scene as a Scene.
    probe.set_scene(Arc::new(DefaultScene));
    assert_eq!(probe.capture().unwrap().data, default.data);
}

#[test]
fn custom_scene_survives_software_reset() {
    let (mut bus, probe) = initialised_bus();
    probe.set_scene(half_scene());
    write(&mut bus, &[0x01, 0x03, 0x01]).unwrap(); // SW_RESET
    assert!(probe.in_reset());
    probe.advance(RESET_TIME);
    // The driver resets once more on the way in.
    let mut camera = Imx219::new(bus, probe.delay())
        .map_err(|(e, _, _)| e)
        .unwrap();
    camera.set_mode(Mode::Binned640x480, 30.0).unwrap();
    let mut camera = stream(camera);
    let frame = capture_at(&mut camera, &probe, 1200);
    assert_halves(&frame, 120, 0);
    // Test patterns are unaffected by the scene.
    let mut camera = camera.stop_streaming().map_err(|(e, _)| e).unwrap();
    camera.set_test_pattern(TestPattern::ColourBars).unwrap();
    let _camera = stream(camera);
    assert_eq!(bar_centres(&probe.capture().unwrap()), COLOUR_BARS.to_vec());
    assert_eq!(probe.violations(), vec![]);
}
