//! Waiting for an outcome with a deadline, instead of sleeping.

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it returns true or `limit` passes; returns
/// the time it took, or None.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if f() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
