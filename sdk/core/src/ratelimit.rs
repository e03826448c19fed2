//! Rate-limited logging: a message that repeats is logged the first time, then at most once every
//! few seconds with the number of repeats held back, so a full disk or a broken model cannot flood
//! the log (nor wear out an SD card with it).

use std::time::{Duration, Instant};

/// How often a repeating message is logged again by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);

/// The state of one repeating message.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(DEFAULT_EVERY)
    }
}

impl Throttle {
    /// Log at most once every `every`.
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)`: log now, `n` repeats were held back since the last line; `None`: hold this one.
    pub fn ready(&mut self) -> Option<u64> {
        self.ready_at(Instant::now())
    }

    /// [`Throttle::ready`] at `now` (tests).
    pub fn ready_at(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// ` (N more like it in the last S s)`, or nothing for no repeats: the tail of a throttled line.
pub fn repeats(n: u64, every: Duration) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(
            " ({n} more like it in the last {:.0} s)",
            every.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_with_a_count_per_period() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.ready_at(t0), Some(0));
        for ms in 1..90 {
            // nine a second, as a failing delivery did
            assert_eq!(t.ready_at(t0 + Duration::from_millis(ms * 111)), None);
        }
        assert_eq!(t.ready_at(t0 + Duration::from_secs(10)), Some(89));
        assert_eq!(t.ready_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(repeats(0, DEFAULT_EVERY), "");
        assert!(repeats(89, DEFAULT_EVERY).contains("89 more"));
    }
}
