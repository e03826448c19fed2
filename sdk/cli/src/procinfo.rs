//! The process's own figures for run summaries and benchmarks: when it started (as recorded by the
//! program's `main`) and its peak resident memory.
//!
//! ```ignore
//! let start = crate::procinfo::mark_start(); // first thing in main()
//! assert_eq!(crate::procinfo::start(), Some(start));
//! if let Some(bytes) = crate::procinfo::peak_rss_bytes() {
//!     println!("peak RSS {:.1} MiB", bytes as f64 / crate::procinfo::MIB);
//! }
//! ```

use std::sync::OnceLock;
use std::time::Instant;

/// Bytes in a MiB, as a float for the divisions that print them.
pub const MIB: f64 = 1024.0 * 1024.0;

static START: OnceLock<Instant> = OnceLock::new();

/// Record now as the process's start and return it. Call it first thing in `main`; later calls
/// return the instant of the first.
pub fn mark_start() -> Instant {
    *START.get_or_init(Instant::now)
}

/// The instant [`mark_start`] recorded, if it was called.
pub fn start() -> Option<Instant> {
    START.get().copied()
}

/// The process's peak resident set size in bytes (`VmHWM` in `/proc/self/status`). `None` where
/// there is no procfs (not Linux) or it cannot be read.
pub fn peak_rss_bytes() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmHWM").and_then(|kib| kib.checked_mul(1024))
}

/// A `Key:   1234 kB` line of a `/proc/PID/status` text, in kB.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (k, rest) = line.split_once(':')?;
        if k != key {
            return None;
        }
        let mut words = rest.split_whitespace();
        let n = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_peak_from_a_status_text() {
        let text = "Name:\tocellus\nVmPeak:\t 1000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   80000 kB\n";
        assert_eq!(status_kib(text, "VmHWM"), Some(81234));
        assert_eq!(status_kib(text, "VmRSS"), Some(80000));
        assert_eq!(status_kib(text, "VmSwap"), None);
        assert_eq!(status_kib("VmHWM:\tlots kB\n", "VmHWM"), None);
        assert_eq!(status_kib("VmHWM:\t12 pages\n", "VmHWM"), None);
    }

    #[test]
    fn this_process_has_a_peak_on_linux() {
        let peak = peak_rss_bytes();
        if cfg!(target_os = "linux") {
            assert!(peak.is_some_and(|b| b > 1 << 20), "{peak:?}");
        } else {
            assert_eq!(peak, None);
        }
    }

    #[test]
    fn the_first_mark_wins() {
        let a = mark_start();
        let b = mark_start();
        assert_eq!(a, b);
        assert_eq!(start(), Some(a));
    }
}
