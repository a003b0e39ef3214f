//! Bounded waiting: poll a condition until it holds, or fail the test after [`PATIENCE`] naming
//! what was awaited. No timed assertions: the bound only keeps a broken test from hanging.

use std::time::{Duration, Instant};

use super::PATIENCE;

const POLL: Duration = Duration::from_millis(20);

/// Waits (async) until `cond` holds.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (async) until the async `cond` holds.
pub async fn until_async(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (blocking the thread) until `cond` holds; on timeout the failure shows `log()` (e.g.
/// the server's log).
pub fn until_blocking(what: &str, log: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    until_some(what, log, || cond().then_some(()))
}

/// Waits (blocking the thread) until `poll` gives a value, and returns it; on timeout the
/// failure shows `log()`.
pub fn until_some<T>(
    what: &str,
    log: impl Fn() -> String,
    mut poll: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = poll() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(POLL);
    }
}
