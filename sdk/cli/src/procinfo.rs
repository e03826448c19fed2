//! The process's own figures for run summaries and benchmarks: when it started (as recorded by the
//! program's `main`), its peak resident memory, and the CPU time of its threads and children.
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

/// Clock ticks per second of the CPU times in `/proc/*/stat` (`sysconf(_SC_CLK_TCK)`, 100 on
/// every Linux the program runs on).
const CLK_TCK: f64 = 100.0;

/// Most threads [`thread_cpu`] reads: the pipeline has a handful, ONNX Runtime one per core.
const MAX_THREADS: usize = 1024;

/// (utime + stime, cutime + cstime) in seconds from the text of a `/proc/*/stat` file; `None` if
/// it does not parse. The command name is in parentheses and may hold spaces.
pub fn stat_cpu(stat: &str) -> Option<(f64, f64)> {
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after the name: state is field 3 (index 0), utime 14 (index 11) … cstime 17 (index 14)
    let tick = |i: usize| -> Option<f64> { f.get(i)?.parse::<f64>().ok() };
    let own = tick(11)? + tick(12)?;
    let children = tick(13)? + tick(14)?;
    Some((own / CLK_TCK, children / CLK_TCK))
}

/// CPU seconds so far of each live thread of this process: thread id → (name, seconds). Empty
/// where there is no procfs.
pub fn thread_cpu() -> std::collections::BTreeMap<u32, (String, f64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten().take(MAX_THREADS) {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let (Ok(stat), Ok(comm)) = (
            std::fs::read_to_string(path.join("stat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        if let Some((cpu, _)) = stat_cpu(&stat) {
            out.insert(tid, (comm.trim().to_owned(), cpu));
        }
    }
    out
}

/// CPU seconds of this process's children that it has waited for (an ffmpeg decoder, once its
/// source is closed).
pub fn children_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_cpu(&s))
        .map_or(0.0, |(_, children)| children)
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
    fn cpu_times_come_from_the_stat_fields_after_the_name() {
        // pid (comm with spaces) state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime cutime cstime ...
        let stat = "42 (ocellus (x) y) S 1 42 42 0 -1 4194304 10 0 0 0 250 50 30 20 20 0 3";
        assert_eq!(stat_cpu(stat), Some((3.0, 0.5)));
        assert_eq!(stat_cpu("42 (short) S 1"), None);
        if cfg!(target_os = "linux") {
            let threads = thread_cpu();
            let me = std::process::id();
            assert!(!threads.is_empty());
            // the test harness runs tests on threads of their own: at least one thread is listed
            assert!(
                threads.keys().any(|&t| t == me) || threads.len() > 1,
                "{threads:?}"
            );
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
