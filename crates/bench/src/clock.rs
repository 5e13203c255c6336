//! The clock the workloads time their operations with: wall-clock time (the default), or the CPU
//! time of this process (`--cpu-time`), which leaves out the time spent preempted by other
//! processes. On a busy shared machine that is most of the noise; what it keeps in (caches and
//! memory shared with others) falls on every implementation alike. No other thread of the process
//! runs during a timed region (setup threads are joined before), except OpenMLS's rayon worker,
//! whose work belongs to the operation and is counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static CPU_TIME: AtomicBool = AtomicBool::new(false);

/// Times operations with the process's CPU time from now on (`true`) or with wall-clock time
/// (`false`, the default).
pub fn use_cpu_time(on: bool) {
    CPU_TIME.store(on, Ordering::Relaxed);
}

/// Whether operations are timed with the process's CPU time.
pub fn cpu_time() -> bool {
    CPU_TIME.load(Ordering::Relaxed)
}

/// A point in time on the selected clock (a drop-in for `std::time::Instant` in the workloads).
#[derive(Clone, Copy, Debug)]
pub enum Instant {
    /// On the wall clock.
    Wall(std::time::Instant),
    /// On the process's CPU clock (all threads), as time since the process started.
    Cpu(Duration),
}

impl Instant {
    /// Now, on the clock [`cpu_time`] selects.
    pub fn now() -> Instant {
        if cpu_time() { Instant::Cpu(cpu_now()) } else { Instant::Wall(std::time::Instant::now()) }
    }

    /// Time on the same clock since `self`.
    pub fn elapsed(&self) -> Duration {
        match self {
            Instant::Wall(start) => start.elapsed(),
            Instant::Cpu(start) => cpu_now().saturating_sub(*start),
        }
    }
}

#[allow(unsafe_code)]
fn cpu_now() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID exists on Linux.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clocks_advance() {
        for cpu in [false, true] {
            use_cpu_time(cpu);
            let start = Instant::now();
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(start.elapsed() > Duration::ZERO, "{x}");
        }
        use_cpu_time(false);
    }
}
