//! Circuit breaker and counters, per plugin.
//!
//! After `failures` consecutive failures the breaker opens: for `open_ms` the plugin is not
//! called and its `on_error` policy applies. Then one call is let through (half-open); success
//! closes the breaker, failure opens it again. Counters survive reloads (they are keyed by the
//! plugin's name in the runtime), so operators and tests can read them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::plugins::BreakerConfig;

pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    consecutive: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            threshold: config.failures.max(1),
            open_for: Duration::from_millis(config.open_ms),
            state: Mutex::default(),
        }
    }

    /// Whether the plugin may be called now.
    pub fn allows(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.open_until.is_none_or(|until| Instant::now() >= until)
    }

    /// Whether the breaker is open now (calls are skipped), for metrics.
    pub fn is_open(&self) -> bool {
        !self.allows()
    }

    pub fn success(&self) {
        let mut state = self.state.lock().unwrap();
        state.consecutive = 0;
        state.open_until = None;
    }

    /// Records a failure; true when this failure opened the breaker.
    pub fn failure(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        state.consecutive = state.consecutive.saturating_add(1);
        if state.consecutive >= self.threshold {
            state.open_until = Some(Instant::now() + self.open_for);
            state.consecutive = 0;
            return true;
        }
        false
    }
}

/// Counters of one plugin since the server started.
#[derive(Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub instantiations: AtomicU64,
    /// Calls not made because the breaker was open.
    pub skipped: AtomicU64,
    pub breaker_opened: AtomicU64,
}

/// A copy of [`PluginStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub failures: u64,
    pub instantiations: u64,
    pub skipped: u64,
    pub breaker_opened: u64,
}

impl PluginStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            instantiations: self.instantiations.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            breaker_opened: self.breaker_opened.load(Ordering::Relaxed),
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_half_opens_after_backoff() {
        let b = Breaker::new(BreakerConfig {
            failures: 2,
            open_ms: 0,
        });
        assert!(b.allows());
        assert!(!b.failure());
        assert!(b.failure());
        // open_ms = 0: immediately half-open again.
        assert!(b.allows());

        let b = Breaker::new(BreakerConfig {
            failures: 1,
            open_ms: 60_000,
        });
        assert!(b.failure());
        assert!(!b.allows());
        b.success();
        assert!(b.allows());
    }
}
