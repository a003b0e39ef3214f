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

    /// One step of a scenario: what is done to the breaker and what it must answer.
    #[derive(Clone, Copy)]
    enum Step {
        /// `allows()` answers this.
        Allows(bool),
        /// `failure()` answers this (true: this failure opened the breaker).
        Fails(bool),
        Succeeds,
        Abandons,
        /// `position()` answers this.
        Is(BreakerPosition),
        /// Pacing past `open_ms`, not a timing assertion.
        SleepMs(u64),
    }
    use Step::*;

    /// Runs `steps` on a new breaker, naming the step that answered otherwise.
    fn scenario(failures: u32, open_ms: u64, steps: &[Step]) {
        let b = Breaker::new(BreakerConfig { failures, open_ms });
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Allows(expected) => assert_eq!(b.allows(), expected, "step {i}: allows"),
                Fails(opens) => assert_eq!(b.failure(), opens, "step {i}: failure"),
                Succeeds => b.success(),
                Abandons => b.abandon(),
                Is(position) => assert_eq!(b.position(), position, "step {i}: position"),
                SleepMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
            }
        }
    }

    #[test]
    fn opens_after_threshold_and_a_success_closes_it() {
        scenario(
            2,
            60_000,
            &[
                Allows(true),
                Fails(false),
                Fails(true),
                Is(BreakerPosition::Open),
                Allows(false),
                Succeeds,
                Is(BreakerPosition::Closed),
                Allows(true),
            ],
        );
    }

    #[test]
    fn half_open_lets_exactly_one_trial_through() {
        scenario(
            1,
            0,
            &[
                Fails(true),
                // open_ms = 0: half-open at once; one caller gets the trial, the others are
                // refused.
                Is(BreakerPosition::HalfOpen),
                Allows(true),
                Is(BreakerPosition::Trial),
                Allows(false),
                Allows(false),
                // The trial succeeds: closed, everyone passes.
                Succeeds,
                Allows(true),
                Allows(true),
            ],
        );
    }

    #[test]
    fn a_failed_trial_opens_the_breaker_again() {
        scenario(
            3,
            50,
            &[
                Fails(false),
                Fails(false),
                Fails(true),
                Allows(false),
                SleepMs(80),
                // Half-open after open_ms.
                Allows(true),
                // One failure of the trial re-opens it (not `failures` of them).
                Fails(true),
                Is(BreakerPosition::Open),
                Allows(false),
                SleepMs(80),
                Allows(true),
                Succeeds,
                Is(BreakerPosition::Closed),
            ],
        );
    }

    #[test]
    fn an_abandoned_trial_leaves_it_half_open() {
        scenario(
            1,
            0,
            &[
                Fails(true),
                Allows(true),
                Allows(false),
                Abandons,
                Is(BreakerPosition::HalfOpen),
                Allows(true),
            ],
        );
    }
}
