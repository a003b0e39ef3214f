//! AUTH failures remembered per client IP across connections, so a guesser cannot reset the
//! per-session throttle by reconnecting: the delay before each 535 grows with the IP's recent
//! failures, and past `max_auth_failures_per_ip` AUTH is refused with 421 4.7.0 at once.
//! Failures decay: one is forgotten per `auth_failure_decay` seconds without a new one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most client IPs remembered; past it, forgotten entries are swept and new IPs are not
/// recorded until there is room (the map's memory stays bounded under a spray of addresses).
const MAX_TRACKED_IPS: usize = 100_000;

#[derive(Debug)]
pub struct AuthFailures {
    max_per_ip: u32,
    decay: Duration,
    state: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

impl Entry {
    /// Failures still remembered at `now`.
    fn current(&self, now: Instant, decay: Duration) -> u32 {
        let periods = now.saturating_duration_since(self.last).as_secs_f64() / decay.as_secs_f64();
        self.failures
            .saturating_sub(periods.min(f64::from(u32::MAX)) as u32)
    }
}

impl AuthFailures {
    pub fn new(max_per_ip: u32, decay: Duration) -> Self {
        AuthFailures {
            max_per_ip,
            decay: decay.max(Duration::from_millis(1)),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Recent failures from `ip`.
    pub fn recent(&self, ip: IpAddr) -> u32 {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .get(&ip)
            .map_or(0, |e| e.current(Instant::now(), self.decay))
    }

    /// Whether `ip` failed too often lately to be allowed another AUTH attempt.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        self.recent(ip) >= self.max_per_ip
    }

    /// Records one failure from `ip`; returns its recent failures including this one.
    pub fn record(&self, ip: IpAddr) -> u32 {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.len() >= MAX_TRACKED_IPS && !state.contains_key(&ip) {
            let decay = self.decay;
            state.retain(|_, e| e.current(now, decay) > 0);
            if state.len() >= MAX_TRACKED_IPS {
                return 1;
            }
        }
        let entry = state.entry(ip).or_insert(Entry {
            failures: 0,
            last: now,
        });
        entry.failures = entry.current(now, self.decay).saturating_add(1);
        entry.last = now;
        entry.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_per_ip_block_at_the_limit_and_decay() {
        let failures = AuthFailures::new(3, Duration::from_millis(200));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(failures.record(a), 1);
        assert_eq!(failures.record(a), 2);
        assert!(!failures.blocked(a));
        assert_eq!(failures.record(a), 3);
        assert!(failures.blocked(a));
        assert!(!failures.blocked(b));
        assert_eq!(failures.recent(b), 0);
        std::thread::sleep(Duration::from_millis(450));
        assert!(failures.recent(a) <= 1, "two periods forget two failures");
        assert!(!failures.blocked(a));
    }
}
