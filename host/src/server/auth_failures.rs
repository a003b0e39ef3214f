//! AUTH failures remembered per client IP across connections, so a guesser cannot reset the
//! per-session throttle by reconnecting: the delay before each 535 grows with the IP's recent
//! failures, and past `max_auth_failures_per_ip` AUTH is refused with 421 4.7.0 at once.
//! Failures decay: one is forgotten per `auth_failure_decay` seconds without a new one.
//!
//! With [`SharedCounters`] (the `[kv]` backend: Redis shared by several instances, or the
//! embedded store that outlives a restart) each failure is also counted there, in a window of
//! `max_auth_failures_per_ip × auth_failure_decay` seconds, and an IP is judged by the larger of
//! the two counts: a guesser spread over several instances behind a load balancer meets the same
//! limit. When the shared store fails, the local count alone applies (logged, never fatal).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Counters kept outside this process (the `[kv]` backend, wired by the composition root).
#[async_trait::async_trait]
pub trait SharedCounters: Send + Sync {
    /// The counter's value; 0 when missing.
    async fn get(&self, key: &str) -> Result<i64, String>;
    /// Adds one; `ttl` applies when the counter is created (a fixed window).
    async fn increment(&self, key: &str, ttl: Duration) -> Result<i64, String>;
}

/// Most client IPs remembered; past it, forgotten entries are swept and new IPs are not
/// recorded until there is room (the map's memory stays bounded under a spray of addresses).
const MAX_TRACKED_IPS: usize = 100_000;

#[derive(Debug)]
pub struct AuthFailures {
    max_per_ip: u32,
    decay: Duration,
    state: Mutex<HashMap<IpAddr, Entry>>,
    shared: OnceLock<Arc<dyn SharedCounters>>,
}

impl std::fmt::Debug for dyn SharedCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCounters")
    }
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
            shared: OnceLock::new(),
        }
    }

    /// Counts failures in `counters` too, from now on (set once, at start).
    pub fn share(&self, counters: Arc<dyn SharedCounters>) {
        let _ = self.shared.set(counters);
    }

    /// Recent failures from `ip`: the larger of this process's count and the shared one.
    pub async fn recent(&self, ip: IpAddr) -> u32 {
        let local = self.recent_here(ip);
        let Some(shared) = self.shared.get() else {
            return local;
        };
        match shared.get(&key(ip)).await {
            Ok(n) => local.max(u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
            Err(e) => {
                tracing::warn!(%ip, error = %e, "shared AUTH-failure counter unavailable; the local count applies");
                local
            }
        }
    }

    /// Whether `ip` failed too often lately to be allowed another AUTH attempt.
    pub async fn blocked(&self, ip: IpAddr) -> bool {
        self.recent(ip).await >= self.max_per_ip
    }

    /// Records one failure from `ip`; returns its recent failures including this one (the
    /// larger of the local and the shared count).
    pub async fn record(&self, ip: IpAddr) -> u32 {
        let local = self.record_here(ip);
        let Some(shared) = self.shared.get() else {
            return local;
        };
        let window = self.decay.saturating_mul(self.max_per_ip.max(1));
        match shared.increment(&key(ip), window).await {
            Ok(n) => local.max(u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
            Err(e) => {
                tracing::warn!(%ip, error = %e, "shared AUTH-failure counter unavailable; the local count applies");
                local
            }
        }
    }

    fn recent_here(&self, ip: IpAddr) -> u32 {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .get(&ip)
            .map_or(0, |e| e.current(Instant::now(), self.decay))
    }

    fn record_here(&self, ip: IpAddr) -> u32 {
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

/// The shared counter's key for `ip`.
fn key(ip: IpAddr) -> String {
    format!("auth-failures:{ip}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_count_per_ip_block_at_the_limit_and_decay() {
        let failures = AuthFailures::new(3, Duration::from_millis(200));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(failures.record(a).await, 1);
        assert_eq!(failures.record(a).await, 2);
        assert!(!failures.blocked(a).await);
        assert_eq!(failures.record(a).await, 3);
        assert!(failures.blocked(a).await);
        assert!(!failures.blocked(b).await);
        assert_eq!(failures.recent(b).await, 0);
        std::thread::sleep(Duration::from_millis(450));
        assert!(
            failures.recent(a).await <= 1,
            "two periods forget two failures"
        );
        assert!(!failures.blocked(a).await);
    }

    /// Counters another instance also writes to.
    #[derive(Default)]
    struct Shared(Mutex<HashMap<String, i64>>, std::sync::atomic::AtomicBool);

    #[async_trait::async_trait]
    impl SharedCounters for Shared {
        async fn get(&self, key: &str) -> Result<i64, String> {
            if self.1.load(std::sync::atomic::Ordering::Relaxed) {
                return Err("down".into());
            }
            Ok(self.0.lock().unwrap().get(key).copied().unwrap_or(0))
        }
        async fn increment(&self, key: &str, _ttl: Duration) -> Result<i64, String> {
            if self.1.load(std::sync::atomic::Ordering::Relaxed) {
                return Err("down".into());
            }
            let mut map = self.0.lock().unwrap();
            let n = map.entry(key.to_string()).or_default();
            *n += 1;
            Ok(*n)
        }
    }

    #[tokio::test]
    async fn two_instances_sharing_counters_meet_one_limit_and_survive_its_outage() {
        let shared = Arc::new(Shared::default());
        let (one, two) = (
            AuthFailures::new(3, Duration::from_secs(60)),
            AuthFailures::new(3, Duration::from_secs(60)),
        );
        one.share(shared.clone());
        two.share(shared.clone());
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(one.record(ip).await, 1);
        assert_eq!(two.record(ip).await, 2);
        assert!(!one.blocked(ip).await);
        assert_eq!(one.record(ip).await, 3);
        assert!(
            two.blocked(ip).await,
            "the other instance sees the shared count"
        );
        shared.1.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            two.recent(ip).await,
            1,
            "store down: the local count applies"
        );
        assert!(one.blocked(ip).await == (one.recent_here(ip) >= 3));
    }
}
