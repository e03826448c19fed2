//! A simulated Sony IMX219 image sensor for tests and hardware-less runs.
//!
//! [`SimImx219`] is an [`embedded_hal::i2c::I2c`] bus with one device on it:
//! an IMX219 at address `0x10` with a checked register file, so the real
//! [`ocellus_imx219::Imx219`] driver runs against it unchanged. A cheap,
//! clonable [`SimHandle`] (from [`SimImx219::handle`]) shares the state, so a
//! test can inspect registers, violations and frames while the driver owns
//! the bus; [`SimImx219`] also dereferences to its handle.
//!
//! ```
//! use ocellus_imx219::{Imx219, Mode};
//! use ocellus_imx219_sim::SimImx219;
//!
//! let sim = SimImx219::new();
//! let probe = sim.handle();
//! let delay = sim.delay(); // advances the simulated clock: use it
//! let Ok(mut camera) = Imx219::new(sim, delay) else { unreachable!() };
//! camera.set_mode(Mode::Binned640x480, 30.0).ok();
//! let Ok(_camera) = camera.start_streaming() else { unreachable!() };
//! let frame = probe.capture().ok();
//! assert_eq!(frame.map(|f| (f.width, f.height)), Some((640, 480)));
//! assert!(probe.violations().is_empty());
//! ```
//!
//! # The scene
//!
//! With `TEST_PATTERN` = 0 a capture renders what the sensor looks at: a
//! [`Scene`], by default the built-in, time-independent [`DefaultScene`]
//! ([`scene_reflectance`]). [`SimHandle::set_scene`] replaces it with any
//! `Arc<dyn Scene>`, a closure `Fn(ax, ay, t) -> [r, g, b]` included, so a
//! test can script the world, e.g. a figure walking across the field of
//! view as the simulated time `t` advances; [`SimHandle::reset_scene`]
//! goes back to the default. A scene gives reflectances (nominally
//! `0.0..=1.0`) at a point of the full pixel array in pixel units, before
//! any flip; everything the chip does stays modelled as before: exposure,
//! analogue and digital gains and saturation ([`SCENE_COUNTS_PER_LINE`]),
//! the readout window, binning / sub-sampling (one sample per output pixel,
//! at the centre of its block) and mirroring / flipping. The scene belongs
//! to the world, not the chip, so `SW_RESET` keeps it. It is called without
//! the simulator's lock held, so it may itself use a [`SimHandle`].
//!
//! # Bus protocol
//!
//! Transactions follow the IMX219 CCI: a write message is
//! `[addr_hi, addr_lo, data…]`, the data bytes going to consecutive
//! addresses (auto-increment); a read message returns bytes from the current
//! address pointer with auto-increment. The pointer is set by the last write
//! message and persists between transactions, so both `write_read` and a
//! write followed by a separate read work. Adjacent operations of the same
//! kind in one [`embedded_hal::i2c::I2c::transaction`] form one message, as
//! embedded-hal specifies. A write message of 0 bytes is an address probe
//! (ACKed, no effect).
//!
//! Multi-byte values are big-endian. A 16-bit register written in one message
//! is updated atomically; writing one byte of it (a 1-byte write that splits
//! the register) is allowed, as on the real chip, and is not flagged.
//!
//! # Violations: what is NACKed and recorded
//!
//! Every rule the simulator enforces is both *reported to the caller* (the
//! transaction fails with [`SimI2cError`], whose [`embedded_hal::i2c::Error::kind`]
//! is a NACK) and *recorded* (see [`SimHandle::violations`]; the last
//! [`MAX_VIOLATIONS`] are kept). A write message is checked byte by byte
//! before anything is stored: if any byte violates a rule, none of the
//! message's data is written. Earlier messages of the same transaction stay
//! applied; later ones are not executed.
//!
//! | Rule | Error kind | Recorded |
//! |---|---|---|
//! | address ≠ `0x10` | `NoAcknowledge(Address)` | [`Violation::WrongAddress`] |
//! | any access within [`RESET_TIME`] of a `SW_RESET` | `NoAcknowledge(Address)` | [`Violation::AccessDuringReset`] |
//! | read or write of an address outside [`map::REGISTER_MAP`] | `NoAcknowledge(Data)` | [`Violation::UnknownRegister`] |
//! | write to a read-only register (`MODEL_ID`, `0x0000..=0x0001`) | `NoAcknowledge(Data)` | [`Violation::ReadOnly`] |
//! | write to a [`map::WhileStreaming::StandbyOnly`] register while `MODE_SELECT` = 1 | `NoAcknowledge(Data)` | [`Violation::ChangeWhileStreaming`] |
//! | write message of exactly 1 byte (half a register address) | `Other` | [`Violation::IncompleteAddress`] |
//! | [`SimHandle::capture`] with inconsistent geometry / unsupported setting | ([`SimError::InvalidConfiguration`]) | [`Violation::InvalidConfiguration`] |
//!
//! Standby-only registers: the readout window (`X/Y_ADDR_START/END`), the
//! output size, `X/Y_ODD_INC`, binning, `IMG_ORIENTATION`,
//! `LINE_LENGTH_PCK`, `CSI_LANE_MODE`, `CSI_DATA_FORMAT`, `DPHY_CTRL`,
//! `EXCK_FREQ`, the PLL / clock dividers and the test-pattern window.
//! Allowed while streaming: `MODE_SELECT`, `SW_RESET`, exposure, both gains,
//! `FRAME_LENGTH_LINES`, `TEST_PATTERN` and the test-pattern colours.
//!
//! # Time and the software reset
//!
//! The simulator has its own clock ([`SimHandle::now`]), which only moves
//! when told to: by [`SimDelay`] (an [`embedded_hal::delay::DelayNs`] that
//! advances it), by [`SimHandle::advance`], and by one frame period per
//! [`SimHandle::capture`]. Bus transactions take no simulated time.
//!
//! Writing 1 to `SW_RESET` restores every register default (so also
//! `MODE_SELECT` = 0, standby; the clock, counters and [`Scene`] are kept) at
//! the end of that message, and the sensor is then *in reset*
//! for [`RESET_TIME`] (6.2 ms, the driver's
//! [`ocellus_imx219::SOFTWARE_RESET_DELAY_US`]) of simulated time: any
//! transaction before it has passed is NACKed and recorded. **Tests must
//! give the driver a [`SimDelay`] from [`SimHandle::delay`]**; a delay that does not advance the simulated clock
//! (e.g. a no-op delay) makes the driver's first access after its reset a
//! violation, exactly as it would be on hardware.

#![deny(missing_docs)]

use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};
use ocellus_imx219::registers as r;

mod frame;
pub mod map;
mod scene;

use frame::RegisterRead;
pub use frame::{
    COLOUR_BARS, FADE_GREY, RgbFrameData, SCENE_COUNTS_PER_LINE, pn9_bytes, scene_reflectance,
};
use map::{Access, WhileStreaming};
use scene::SceneSlot;
pub use scene::{DefaultScene, Scene};

/// 7-bit I²C address the simulated sensor answers on.
pub const I2C_ADDRESS: u8 = ocellus_imx219::I2C_ADDRESS;

/// How long the sensor stays in reset after `SW_RESET`, in simulated time.
pub const RESET_TIME: Duration =
    Duration::from_micros(ocellus_imx219::SOFTWARE_RESET_DELAY_US as u64);

/// Number of violations kept by [`SimHandle::violations`] (the most recent).
pub const MAX_VIOLATIONS: usize = 256;

/// A rule of the real chip that a bus access or capture broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// A transaction addressed another device (nothing answers there).
    WrongAddress {
        /// The 7-bit address used.
        address: u8,
    },
    /// A write to a read-only register.
    ReadOnly {
        /// The byte address written.
        addr: u16,
    },
    /// A read or write of an address outside the register map.
    UnknownRegister {
        /// The byte address accessed.
        addr: u16,
    },
    /// A bus access while the sensor was still in reset after `SW_RESET`.
    AccessDuringReset,
    /// A write to a readout-geometry / format / clock register while
    /// streaming.
    ChangeWhileStreaming {
        /// The byte address written.
        addr: u16,
    },
    /// A write message of a single byte: half a register address.
    IncompleteAddress,
    /// A capture found the registers inconsistent or unsupported.
    InvalidConfiguration {
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |addr: u16| map::lookup(addr).map_or("?", |(def, _)| def.name);
        match *self {
            Self::WrongAddress { address } => write!(f, "no device at address {address:#04x}"),
            Self::ReadOnly { addr } => {
                write!(
                    f,
                    "write to read-only register {addr:#06x} ({})",
                    name(addr)
                )
            }
            Self::UnknownRegister { addr } => write!(f, "access to unknown register {addr:#06x}"),
            Self::AccessDuringReset => f.write_str("bus access during software reset"),
            Self::ChangeWhileStreaming { addr } => {
                write!(f, "write to {addr:#06x} ({}) while streaming", name(addr))
            }
            Self::IncompleteAddress => f.write_str("1-byte write: incomplete register address"),
            Self::InvalidConfiguration { reason } => write!(f, "invalid configuration: {reason}"),
        }
    }
}

/// The bus error of [`SimImx219`]: a NACK (or `Other`) with the violation
/// that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimI2cError {
    /// What the bus master sees.
    pub kind: ErrorKind,
    /// The rule that was broken (also recorded in the violation log).
    pub violation: Violation,
}

impl fmt::Display for SimI2cError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.violation)
    }
}

impl std::error::Error for SimI2cError {}

impl embedded_hal::i2c::Error for SimI2cError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Errors of [`SimHandle::capture`] and the back-door accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// `MODE_SELECT` is not 1 (standby, or in reset).
    NotStreaming,
    /// The registers do not describe a frame the sensor could output
    /// (window vs output size vs binning, unsupported test pattern, …).
    /// Also recorded as [`Violation::InvalidConfiguration`].
    InvalidConfiguration {
        /// What is wrong.
        reason: &'static str,
    },
    /// A back-door access named an address outside the register map.
    UnknownRegister {
        /// The address.
        addr: u16,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotStreaming => f.write_str("sensor is not streaming"),
            Self::InvalidConfiguration { reason } => write!(f, "invalid configuration: {reason}"),
            Self::UnknownRegister { addr } => write!(f, "unknown register {addr:#06x}"),
        }
    }
}

impl std::error::Error for SimError {}

const NACK_ADDRESS: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
const NACK_DATA: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data);

/// The shared simulator state.
#[derive(Debug)]
struct State {
    /// 64 KiB register file; only addresses of the map are meaningful.
    regs: Vec<u8>,
    now: Duration,
    /// Accesses are allowed once `now >= reset_until`.
    reset_until: Duration,
    pointer: u16,
    violations: VecDeque<Violation>,
    violation_total: u64,
    frames: u64,
    transactions: u64,
    /// What the sensor looks at; the world, not the chip: `SW_RESET` keeps
    /// it.
    scene: SceneSlot,
}

impl RegisterRead for State {
    fn u8_at(&self, addr: u16) -> u8 {
        self.regs.get(usize::from(addr)).copied().unwrap_or(0)
    }
}

impl State {
    fn new() -> Self {
        let mut state = Self {
            regs: vec![0; 0x1_0000],
            now: Duration::ZERO,
            reset_until: Duration::ZERO,
            pointer: 0,
            violations: VecDeque::with_capacity(MAX_VIOLATIONS),
            violation_total: 0,
            frames: 0,
            transactions: 0,
            scene: SceneSlot::default_scene(),
        };
        state.load_defaults();
        state
    }

    fn load_defaults(&mut self) {
        for def in map::REGISTER_MAP {
            let bytes = def.default.to_be_bytes();
            let bytes: &[u8] = if def.width == 2 { &bytes } else { &bytes[1..] };
            for (addr, &value) in (def.addr..).zip(bytes) {
                self.set(addr, value);
            }
        }
    }

    fn set(&mut self, addr: u16, value: u8) {
        if let Some(slot) = self.regs.get_mut(usize::from(addr)) {
            *slot = value;
        }
    }

    fn streaming(&self) -> bool {
        self.u8_at(r::MODE_SELECT) & r::MODE_SELECT_STREAMING != 0
    }

    fn in_reset(&self) -> bool {
        self.now < self.reset_until
    }

    fn record(&mut self, violation: Violation) {
        if self.violations.len() == MAX_VIOLATIONS {
            self.violations.pop_front();
        }
        self.violations.push_back(violation);
        self.violation_total += 1;
    }

    fn violate(&mut self, violation: Violation, kind: ErrorKind) -> SimI2cError {
        self.record(violation);
        SimI2cError { kind, violation }
    }

    /// One write message. Returns whether it triggered a software reset.
    fn write_message(&mut self, bytes: &[u8]) -> Result<bool, SimI2cError> {
        let (addr, data) = match bytes {
            [] => return Ok(false),
            [_] => return Err(self.violate(Violation::IncompleteAddress, ErrorKind::Other)),
            [high, low, data @ ..] => (u16::from_be_bytes([*high, *low]), data),
        };
        let streaming = self.streaming();
        for a in (0..data.len()).map(|i| addr.wrapping_add(i as u16)) {
            let Some((def, _)) = map::lookup(a) else {
                return Err(self.violate(Violation::UnknownRegister { addr: a }, NACK_DATA));
            };
            if def.access == Access::ReadOnly {
                return Err(self.violate(Violation::ReadOnly { addr: a }, NACK_DATA));
            }
            if streaming && def.while_streaming == WhileStreaming::StandbyOnly {
                return Err(self.violate(Violation::ChangeWhileStreaming { addr: a }, NACK_DATA));
            }
        }
        let mut reset = false;
        for (i, &value) in data.iter().enumerate() {
            let a = addr.wrapping_add(i as u16);
            if a == r::SW_RESET {
                reset |= value & r::SW_RESET_TRIGGER != 0;
            } else {
                self.set(a, value);
            }
        }
        self.pointer = addr.wrapping_add(data.len() as u16);
        Ok(reset)
    }

    /// One read buffer, continuing from the address pointer.
    fn read_into(&mut self, buffer: &mut [u8]) -> Result<(), SimI2cError> {
        for byte in buffer {
            let a = self.pointer;
            let Some((def, _)) = map::lookup(a) else {
                return Err(self.violate(Violation::UnknownRegister { addr: a }, NACK_DATA));
            };
            *byte = if def.access == Access::Trigger {
                0
            } else {
                self.u8_at(a)
            };
            self.pointer = a.wrapping_add(1);
        }
        Ok(())
    }

    fn software_reset(&mut self) {
        self.load_defaults();
        self.pointer = 0;
        self.reset_until = self.now + RESET_TIME;
    }

    fn check_access(&mut self) -> Result<(), SimI2cError> {
        if self.in_reset() {
            return Err(self.violate(Violation::AccessDuringReset, NACK_ADDRESS));
        }
        Ok(())
    }

    fn flush_writes(
        &mut self,
        pending: &mut Vec<u8>,
        started: &mut bool,
    ) -> Result<(), SimI2cError> {
        if !*started {
            return Ok(());
        }
        *started = false;
        self.check_access()?;
        let reset = self.write_message(pending);
        pending.clear();
        if reset? {
            self.software_reset();
        }
        Ok(())
    }

    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), SimI2cError> {
        self.transactions += 1;
        if address != I2C_ADDRESS {
            return Err(self.violate(Violation::WrongAddress { address }, NACK_ADDRESS));
        }
        self.check_access()?;
        let mut pending = Vec::new();
        let mut writing = false;
        for operation in operations {
            match operation {
                Operation::Write(bytes) => {
                    pending.extend_from_slice(bytes);
                    writing = true;
                }
                Operation::Read(buffer) => {
                    self.flush_writes(&mut pending, &mut writing)?;
                    self.check_access()?;
                    self.read_into(buffer)?;
                }
            }
        }
        self.flush_writes(&mut pending, &mut writing)
    }

    /// The part of a capture that needs the registers: checks them, takes
    /// the frame number and the frame's time slot, and snapshots what
    /// [`PendingFrame::render`] needs (outside the lock).
    fn begin_capture(&mut self) -> Result<PendingFrame, SimError> {
        if self.in_reset() || !self.streaming() {
            return Err(SimError::NotStreaming);
        }
        let checked = frame::geometry(self).and_then(|geometry| {
            let pattern = self.u16_at(r::TEST_PATTERN);
            if pattern > r::TEST_PATTERN_PN9 {
                return Err("unsupported TEST_PATTERN value (0..=4 are modelled)");
            }
            if pattern != r::TEST_PATTERN_DISABLED
                && (self.u16_at(r::TP_WINDOW_WIDTH) != geometry.width
                    || self.u16_at(r::TP_WINDOW_HEIGHT) != geometry.height
                    || self.u16_at(map::TP_WINDOW_X_OFFSET) != 0
                    || self.u16_at(map::TP_WINDOW_Y_OFFSET) != 0)
            {
                return Err("test-pattern window does not cover the output image");
            }
            Ok((geometry, pattern))
        });
        let (geometry, pattern) = match checked {
            Ok(ok) => ok,
            Err(reason) => {
                self.record(Violation::InvalidConfiguration { reason });
                return Err(SimError::InvalidConfiguration { reason });
            }
        };
        let render = frame::Render::new(self, geometry, pattern);
        let start = self.now;
        self.now += frame::frame_duration(self);
        let frame_number = self.frames;
        self.frames += 1;
        Ok(PendingFrame {
            render,
            scene: self.scene.clone(),
            start,
            width: u32::from(geometry.width),
            height: u32::from(geometry.height),
            frame_number,
            timestamp: self.now,
        })
    }
}

/// A frame whose registers were read (and whose number and time were
/// taken) but whose pixels are not rendered yet.
struct PendingFrame {
    render: frame::Render,
    scene: SceneSlot,
    /// Simulated time at the start of the frame (what the scene sees).
    start: Duration,
    width: u32,
    height: u32,
    frame_number: u64,
    timestamp: Duration,
}

impl PendingFrame {
    fn render(self) -> RgbFrameData {
        RgbFrameData {
            width: self.width,
            height: self.height,
            frame_number: self.frame_number,
            timestamp: self.timestamp,
            data: self.render.run(&*self.scene.0, self.start),
        }
    }
}

/// A clonable handle on a simulator's shared state: inspect it, drive its
/// clock and capture frames while the driver owns the [`SimImx219`] bus.
#[derive(Clone, Debug)]
pub struct SimHandle {
    state: Arc<Mutex<State>>,
}

impl SimHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A [`DelayNs`] that advances this simulator's clock; give it to the
    /// driver.
    #[must_use]
    pub fn delay(&self) -> SimDelay {
        SimDelay {
            state: Arc::clone(&self.state),
        }
    }

    /// The recorded violations, oldest first (the last [`MAX_VIOLATIONS`]).
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.iter().copied().collect()
    }

    /// Returns the recorded violations and clears the log.
    pub fn take_violations(&self) -> Vec<Violation> {
        self.lock().violations.drain(..).collect()
    }

    /// Total number of violations since creation (not bounded, not cleared
    /// by [`Self::take_violations`]).
    #[must_use]
    pub fn violation_count(&self) -> u64 {
        self.lock().violation_total
    }

    /// Back-door read of one register byte: no bus traffic, no checks, no
    /// violation. `SW_RESET` reads 0.
    ///
    /// # Errors
    ///
    /// [`SimError::UnknownRegister`] outside the register map.
    pub fn register(&self, addr: u16) -> Result<u8, SimError> {
        let state = self.lock();
        match map::lookup(addr) {
            None => Err(SimError::UnknownRegister { addr }),
            Some((def, _)) if def.access == Access::Trigger => Ok(0),
            Some(_) => Ok(state.u8_at(addr)),
        }
    }

    /// Back-door read of a 16-bit register at `addr`, `addr + 1`.
    ///
    /// # Errors
    ///
    /// [`SimError::UnknownRegister`] if either byte is outside the map.
    pub fn register_u16(&self, addr: u16) -> Result<u16, SimError> {
        Ok(u16::from_be_bytes([
            self.register(addr)?,
            self.register(addr.wrapping_add(1))?,
        ]))
    }

    /// Back-door write of one register byte, bypassing every check
    /// (read-only, streaming, reset) — for fault injection, e.g. a wrong
    /// `MODEL_ID`. Has no side effect (writing `SW_RESET` does not reset).
    ///
    /// # Errors
    ///
    /// [`SimError::UnknownRegister`] outside the register map.
    pub fn poke(&self, addr: u16, value: u8) -> Result<(), SimError> {
        let mut state = self.lock();
        if map::lookup(addr).is_none() {
            return Err(SimError::UnknownRegister { addr });
        }
        state.set(addr, value);
        Ok(())
    }

    /// Whether `MODE_SELECT` = 1.
    #[must_use]
    pub fn is_streaming(&self) -> bool {
        self.lock().streaming()
    }

    /// Whether the sensor is still in reset after a `SW_RESET`.
    #[must_use]
    pub fn in_reset(&self) -> bool {
        self.lock().in_reset()
    }

    /// The simulated clock (starts at 0).
    #[must_use]
    pub fn now(&self) -> Duration {
        self.lock().now
    }

    /// Advances the simulated clock.
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.now = state.now.saturating_add(by);
    }

    /// Number of bus transactions so far (including refused ones).
    #[must_use]
    pub fn transactions(&self) -> u64 {
        self.lock().transactions
    }

    /// Number of frames captured so far.
    #[must_use]
    pub fn frame_count(&self) -> u64 {
        self.lock().frames
    }

    /// Frame period from `FRAME_LENGTH_LINES` × `LINE_LENGTH_PCK` at the
    /// driver's 182.4 Mpixel/s.
    #[must_use]
    pub fn frame_duration(&self) -> Duration {
        frame::frame_duration(&*self.lock())
    }

    /// Captures one frame as the registers describe it; advances the clock
    /// by one [`Self::frame_duration`] and the frame counter by one.
    ///
    /// * width × height = `X_OUTPUT_SIZE` × `Y_OUTPUT_SIZE`, which must equal
    ///   the window (`X/Y_ADDR_START..=END`, inside 3280 × 2464) divided by
    ///   binning (`BINNING_MODE_*`: 0 → 1, 1 or 3 → 2, 2 → 4) times
    ///   sub-sampling (`*_ODD_INC`: 1 → 1, 3 → 2);
    /// * `TEST_PATTERN` 0: the current [`Scene`] (see [`Self::set_scene`];
    ///   by default the synthetic [`scene_reflectance`]) over the window at
    ///   the time the frame starts, brightness per [`SCENE_COUNTS_PER_LINE`];
    ///   1: solid colour, R = `TD_R` >> 2, G = mean(`TD_GR`, `TD_GB`) >> 2,
    ///   B = `TD_B` >> 2; 2: [`COLOUR_BARS`]; 3: the same bars fading
    ///   linearly to [`FADE_GREY`] from the first row to the last;
    ///   4: PN9 ([`pn9_bytes`]). Patterns 1–4 are multiplied by the digital
    ///   gain (like the real pattern generator) and need the test-pattern
    ///   window to equal the output size at offset 0;
    /// * `IMG_ORIENTATION` bit 0 mirrors left–right, bit 1 flips top–bottom
    ///   (scene and patterns alike).
    ///
    /// # Errors
    ///
    /// [`SimError::NotStreaming`] in standby or reset;
    /// [`SimError::InvalidConfiguration`] (also recorded as a violation) if
    /// the registers are inconsistent.
    ///
    /// The registers are read, the frame number taken and the clock advanced
    /// under the simulator's lock; the pixels (and so every call of the
    /// scene) are rendered after it is released, so a [`Scene`] may use a
    /// [`SimHandle`] without deadlocking.
    pub fn capture(&self) -> Result<RgbFrameData, SimError> {
        // The guard is a temporary: the lock is released at the `;`.
        let pending = self.lock().begin_capture()?;
        Ok(pending.render())
    }

    /// Replaces what the sensor looks at (from the next capture on) with
    /// `scene`; see [`Scene`] for its coordinates and time. The scene is
    /// part of the world, not of the chip: `SW_RESET` and standby keep it.
    /// Test patterns are unaffected.
    pub fn set_scene(&self, scene: Arc<dyn Scene>) {
        self.replace_scene(SceneSlot(scene));
    }

    /// Goes back to the built-in [`DefaultScene`].
    pub fn reset_scene(&self) {
        self.replace_scene(SceneSlot::default_scene());
    }

    /// Installs `scene`; the old one is dropped after the lock is released
    /// (its `Drop` may use a handle).
    fn replace_scene(&self, scene: SceneSlot) {
        let old = std::mem::replace(&mut self.lock().scene, scene);
        drop(old);
    }
}

/// The simulated sensor on its I²C bus. Owns a [`SimHandle`] and
/// dereferences to it.
#[derive(Debug)]
pub struct SimImx219 {
    handle: SimHandle,
}

impl SimImx219 {
    /// A powered-up sensor: defaults loaded, standby, clock at 0, not in
    /// reset.
    #[must_use]
    pub fn new() -> Self {
        Self {
            handle: SimHandle {
                state: Arc::new(Mutex::new(State::new())),
            },
        }
    }

    /// A handle sharing this simulator's state.
    #[must_use]
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }
}

impl Default for SimImx219 {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for SimImx219 {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl ErrorType for SimImx219 {
    type Error = SimI2cError;
}

impl I2c<SevenBitAddress> for SimImx219 {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.handle.lock().transaction(address, operations)
    }
}

/// A [`DelayNs`] that advances a simulator's clock instead of sleeping.
#[derive(Clone, Debug)]
pub struct SimDelay {
    state: Arc<Mutex<State>>,
}

impl DelayNs for SimDelay {
    fn delay_ns(&mut self, ns: u32) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.now = state
            .now
            .saturating_add(Duration::from_nanos(u64::from(ns)));
    }
}
