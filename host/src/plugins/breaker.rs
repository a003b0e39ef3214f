//! Circuit breaker and counters, per plugin.
//!
//! After `failures` consecutive failures the breaker opens: for `open_ms` the plugin is not
//! called and its `on_error` policy applies. Then it is half-open: exactly one call is let through
//! as a trial (concurrent callers still get `on_error`); success closes the breaker, failure opens
//! it again for another `open_ms`. Counters survive reloads (they are keyed by the
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
    /// Set while open; once past, the breaker is half-open.
    open_until: Option<Instant>,
    /// Half-open: the one trial call is under way; every other call is refused until it ends.
    trial: bool,
}

/// Where the breaker stands (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerPosition {
    Closed,
    Open,
    /// `open_ms` is over: the next call is a trial.
    HalfOpen,
    /// The trial call is under way.
    Trial,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            threshold: config.failures.max(1),
            open_for: Duration::from_millis(config.open_ms),
            state: Mutex::default(),
        }
    }

    /// Whether the plugin may be called now. Closed: yes. Open: no. Half-open: yes for exactly
    /// one caller (the trial); its [`success`](Self::success) closes the breaker, its
    /// [`failure`](Self::failure) opens it again for `open_ms`, and a call that ended for a
    /// reason not the plugin's ([`abandon`](Self::abandon)) lets the next caller try.
    pub fn allows(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        match state.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if state.trial => false,
            Some(_) => {
                state.trial = true;
                true
            }
        }
    }

    pub fn position(&self) -> BreakerPosition {
        let state = self.state.lock().unwrap();
        match state.open_until {
            None => BreakerPosition::Closed,
            Some(_) if state.trial => BreakerPosition::Trial,
            Some(until) if Instant::now() < until => BreakerPosition::Open,
            Some(_) => BreakerPosition::HalfOpen,
        }
    }

    /// Whether the breaker is open now (calls are skipped), for metrics.
    pub fn is_open(&self) -> bool {
        !self.allows()
    }

    pub fn success(&self) {
        let mut state = self.state.lock().unwrap();
        state.consecutive = 0;
        state.open_until = None;
        state.trial = false;
    }

    /// Records a failure; true when this failure opened the breaker (the threshold was reached,
    /// or the half-open trial failed).
    pub fn failure(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.trial {
            state.trial = false;
            state.consecutive = 0;
            state.open_until = Some(Instant::now() + self.open_for);
            return true;
        }
        state.consecutive = state.consecutive.saturating_add(1);
        if state.consecutive >= self.threshold {
            state.open_until = Some(Instant::now() + self.open_for);
            state.consecutive = 0;
            return true;
        }
        false
    }

    /// A call let through ended without a verdict on the plugin (e.g. the instance pool was
    /// full): a half-open breaker stays half-open for the next caller.
    pub fn abandon(&self) {
        self.state.lock().unwrap().trial = false;
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
    fn opens_after_threshold_and_a_success_closes_it() {
        let b = Breaker::new(BreakerConfig {
            failures: 2,
            open_ms: 60_000,
        });
        assert!(b.allows());
        assert!(!b.failure());
        assert!(b.failure());
        assert_eq!(b.position(), BreakerPosition::Open);
        assert!(!b.allows());
        b.success();
        assert_eq!(b.position(), BreakerPosition::Closed);
        assert!(b.allows());
    }

    #[test]
    fn half_open_lets_exactly_one_trial_through() {
        let b = Breaker::new(BreakerConfig {
            failures: 1,
            open_ms: 0,
        });
        assert!(b.failure());
        // open_ms = 0: half-open at once; one caller gets the trial, the others are refused.
        assert_eq!(b.position(), BreakerPosition::HalfOpen);
        assert!(b.allows());
        assert_eq!(b.position(), BreakerPosition::Trial);
        assert!(!b.allows());
        assert!(!b.allows());
        // The trial succeeds: closed, everyone passes.
        b.success();
        assert!(b.allows());
        assert!(b.allows());
    }

    #[test]
    fn a_failed_trial_opens_the_breaker_again() {
        let b = Breaker::new(BreakerConfig {
            failures: 3,
            open_ms: 50,
        });
        for _ in 0..2 {
            assert!(!b.failure());
        }
        assert!(b.failure());
        assert!(!b.allows());
        // Pacing past open_ms, not a timing assertion.
        std::thread::sleep(Duration::from_millis(80));
        assert!(b.allows(), "half-open after open_ms");
        // One failure of the trial re-opens it (not `failures` of them).
        assert!(b.failure());
        assert_eq!(b.position(), BreakerPosition::Open);
        assert!(!b.allows());
        std::thread::sleep(Duration::from_millis(80));
        assert!(b.allows());
        b.success();
        assert_eq!(b.position(), BreakerPosition::Closed);
    }

    #[test]
    fn an_abandoned_trial_leaves_it_half_open() {
        let b = Breaker::new(BreakerConfig {
            failures: 1,
            open_ms: 0,
        });
        assert!(b.failure());
        assert!(b.allows());
        assert!(!b.allows());
        b.abandon();
        assert_eq!(b.position(), BreakerPosition::HalfOpen);
        assert!(b.allows());
    }
}
