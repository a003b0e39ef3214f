//! Retry timing: exponential back-off with jitter, capped, bounded by the message lifetime.

use crate::config::queue::QueueConfig;
use std::time::Duration;

/// The wait before attempt number `attempts + 1`, after `attempts` failed attempts (>= 1):
/// `retry_first * 2^(attempts-1)`, capped at `retry_max`, then spread by ±20 % so that mail
/// deferred together is not retried in lock-step.
pub fn backoff(config: &QueueConfig, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let base = config
        .retry_first
        .saturating_mul(1u32 << exp)
        .min(config.retry_max);
    let factor = 0.8 + 0.4 * rand::random::<f64>();
    base.mul_f64(factor)
}

/// When to try a recipient next, in ms since the epoch: never after the message expires (so
/// expiry is noticed on time).
pub fn next_attempt_ms(config: &QueueConfig, attempts: u32, now_ms: u64, arrived_ms: u64) -> u64 {
    let next = now_ms + backoff(config, attempts).as_millis() as u64;
    let expires = arrived_ms + config.lifetime.as_millis() as u64;
    next.min(expires.max(now_ms))
}

pub fn expired(config: &QueueConfig, now_ms: u64, arrived_ms: u64) -> bool {
    now_ms >= arrived_ms + config.lifetime.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let cfg = QueueConfig::default(); // 5 min first, 1 h cap
        for _ in 0..50 {
            let first = backoff(&cfg, 1).as_secs_f64();
            assert!((240.0..=360.0).contains(&first), "{first}");
            let second = backoff(&cfg, 2).as_secs_f64();
            assert!((480.0..=720.0).contains(&second), "{second}");
            let late = backoff(&cfg, 20).as_secs_f64();
            assert!((2880.0..=4320.0).contains(&late), "{late}");
        }
    }

    #[test]
    fn next_attempt_never_passes_expiry() {
        let cfg = QueueConfig {
            lifetime: Duration::from_secs(60),
            ..QueueConfig::default()
        };
        assert_eq!(next_attempt_ms(&cfg, 5, 10_000, 0), 60_000);
        assert!(expired(&cfg, 60_000, 0));
        assert!(!expired(&cfg, 59_999, 0));
    }
}
