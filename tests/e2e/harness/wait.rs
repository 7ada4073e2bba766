//! Waiting for state with a deadline (never a bare sleep): poll a check until it holds,
//! or fail saying what did not happen in time.

use std::time::{Duration, Instant};

/// Runs `check` until it returns true or `deadline` passes.
pub fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {deadline:?}");
}

/// Runs `check` until it returns `Ok` or `deadline` passes; a timeout's message carries
/// the last `Err` (what was seen instead), so a failure says more than "not in time".
pub fn eventually_or(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) {
    let start = Instant::now();
    let mut seen = String::new();
    while start.elapsed() < deadline {
        match check() {
            Ok(()) => return,
            Err(instead) => seen = instead,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {deadline:?}; last seen: {seen}");
}
