//! Test-only hooks for the crash-safety suite (tests/crash_safety.rs). They are read from the
//! environment so the real binary can be killed at an exact point; nobody sets them in
//! production, and without them every function here is a no-op.
//!
//! - `SIDTOOL_FAULT_AFTER_STEPS=N` (tests only): the process aborts, like a `kill -9`, right
//!   after its N-th filesystem commit step (each rename, exchange, removal or link that makes
//!   an output appear, see [`step`]), so a test can stop a run at every step in turn.
//! - `SIDTOOL_TEST_HOLD_LOCK_MS=MS` (tests only): after taking its first output lock the
//!   process sleeps MS milliseconds, so a test can start a second writer while it is held.
//! - `SIDTOOL_TEST_NO_EXCHANGE=1` (tests only): directory commits take the portable
//!   rename-aside fallback instead of Linux's atomic exchange, so its recovery is tested too.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// See the module documentation: for tests only.
pub(crate) const FAULT_AFTER_STEPS_ENV: &str = "SIDTOOL_FAULT_AFTER_STEPS";
/// See the module documentation: for tests only.
pub(crate) const HOLD_LOCK_ENV: &str = "SIDTOOL_TEST_HOLD_LOCK_MS";
/// See the module documentation: for tests only.
pub(crate) const NO_EXCHANGE_ENV: &str = "SIDTOOL_TEST_NO_EXCHANGE";

static STEPS: AtomicU64 = AtomicU64::new(0);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Count one filesystem commit step; with `SIDTOOL_FAULT_AFTER_STEPS=N` set, the N-th call
/// aborts the process (no destructors, no cleanup: what a `kill -9` leaves behind).
pub(crate) fn step() {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    let Some(limit) = *LIMIT.get_or_init(|| env_number(FAULT_AFTER_STEPS_ENV)) else {
        return;
    };
    if STEPS.fetch_add(1, Ordering::SeqCst) + 1 == limit {
        die();
    }
}

fn die() -> ! {
    // A test kills the binary dozens of times: no core file for each.
    #[cfg(unix)]
    {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit only reads the struct passed by reference.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    }
    std::process::abort()
}

/// Whether `SIDTOOL_TEST_NO_EXCHANGE` asks for the rename-aside fallback.
pub(crate) fn no_exchange() -> bool {
    static NO: OnceLock<bool> = OnceLock::new();
    *NO.get_or_init(|| env_number(NO_EXCHANGE_ENV).is_some_and(|v| v != 0))
}

/// With `SIDTOOL_TEST_HOLD_LOCK_MS` set, sleep that long once per process, after the first
/// output lock is taken.
pub(crate) fn hold_lock() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if let Some(ms) = env_number(HOLD_LOCK_ENV)
        && !DONE.swap(true, Ordering::SeqCst)
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
