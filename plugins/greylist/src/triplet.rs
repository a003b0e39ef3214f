//! Triplets and the greylisting decision: pure logic over a small store trait, tested natively.

use std::net::IpAddr;

use mailwit_plugin::address::{domain_matches, domain_of};
use mailwit_plugin::types::{SessionInfo, Verdict};
use serde::Deserialize;

/// The part of the kv store greylisting uses: `u64` values with a time to live.
pub trait Store {
    fn get(&mut self, key: &str) -> Result<Option<u64>, String>;
    fn put(&mut self, key: &str, value: u64, ttl_ms: u64) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<(), String>;
}

/// The plugin's `config` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// A retry passes once this long after the first attempt.
    pub delay_secs: u64,
    /// A first attempt is forgotten when no retry came within this long.
    pub retry_window_secs: u64,
    /// A passed triplet is let through without delay for this long (renewed on each message).
    pub pass_ttl_secs: u64,
    /// IPv4 clients are grouped by this prefix (24: a sender's outbound pool retries from its /24).
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Authenticated clients (submission) are never greylisted.
    pub skip_authenticated: bool,
    /// Client IPs never greylisted (exact addresses).
    pub exempt_ips: Vec<String>,
    /// Sender domains never greylisted ("example.test", or ".example.test" for subdomains).
    pub exempt_sender_domains: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            delay_secs: 300,
            retry_window_secs: 4 * 3600,
            pass_ttl_secs: 36 * 24 * 3600,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            skip_authenticated: true,
            exempt_ips: Vec::new(),
            exempt_sender_domains: Vec::new(),
        }
    }
}

impl Settings {
    pub fn check(
        &self,
        store: &mut dyn Store,
        now_ms: u64,
        session: &SessionInfo,
        sender: &str,
        recipient: &str,
    ) -> Result<Verdict, String> {
        if (self.skip_authenticated && session.authenticated.is_some())
            || self.exempt_ips.iter().any(|ip| ip == &session.client_ip)
            || domain_of(sender).is_some_and(|d| {
                self.exempt_sender_domains
                    .iter()
                    .any(|p| domain_matches(d, p))
            })
        {
            return Ok(Verdict::Continue);
        }
        let triplet = format!(
            "{}|{}|{}",
            self.network(&session.client_ip),
            sender.to_lowercase(),
            recipient.to_lowercase()
        );
        let passed = format!("pass:{triplet}");
        let first = format!("first:{triplet}");
        if store.get(&passed)?.is_some() {
            store.put(&passed, now_ms, self.pass_ttl_secs * 1000)?;
            return Ok(Verdict::Continue);
        }
        match store.get(&first)? {
            Some(seen) if now_ms.saturating_sub(seen) >= self.delay_secs * 1000 => {
                store.put(&passed, now_ms, self.pass_ttl_secs * 1000)?;
                store.delete(&first)?;
                Ok(Verdict::Continue)
            }
            Some(seen) => Ok(self.greylisted(self.delay_secs - now_ms.saturating_sub(seen) / 1000)),
            None => {
                store.put(&first, now_ms, self.retry_window_secs * 1000)?;
                Ok(self.greylisted(self.delay_secs))
            }
        }
    }

    fn greylisted(&self, wait_secs: u64) -> Verdict {
        Verdict::tempfail(
            451,
            "4.7.1",
            format!("greylisted, please try again in {wait_secs} seconds"),
        )
    }

    /// The client's network as text, e.g. "192.0.2.0/24".
    fn network(&self, client_ip: &str) -> String {
        match client_ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(IpAddr::V4(v4)) => {
                let prefix = u32::from(self.ipv4_prefix.min(32));
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                format!(
                    "{}/{prefix}",
                    std::net::Ipv4Addr::from(u32::from(v4) & mask)
                )
            }
            Ok(IpAddr::V6(v6)) => {
                let prefix = u32::from(self.ipv6_prefix.min(128));
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                format!(
                    "{}/{prefix}",
                    std::net::Ipv6Addr::from(u128::from(v6) & mask)
                )
            }
            Err(_) => client_ip.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailwit_plugin::types::ListenerRole;
    use std::collections::HashMap;

    /// An in-memory store that honours time to live against the test's clock.
    #[derive(Default)]
    struct Memory {
        now: u64,
        entries: HashMap<String, (u64, u64)>,
    }

    impl Store for Memory {
        fn get(&mut self, key: &str) -> Result<Option<u64>, String> {
            Ok(self
                .entries
                .get(key)
                .filter(|(_, expires)| *expires > self.now)
                .map(|(v, _)| *v))
        }
        fn put(&mut self, key: &str, value: u64, ttl_ms: u64) -> Result<(), String> {
            self.entries.insert(key.into(), (value, self.now + ttl_ms));
            Ok(())
        }
        fn delete(&mut self, key: &str) -> Result<(), String> {
            self.entries.remove(key);
            Ok(())
        }
    }

    fn session(ip: &str) -> SessionInfo {
        SessionInfo {
            id: "s".into(),
            listener: "mx".into(),
            role: ListenerRole::Mx,
            client_ip: ip.into(),
            client_port: 1,
            local_ip: "127.0.0.1".into(),
            local_port: 25,
            helo: None,
            tls: None,
            authenticated: None,
        }
    }

    fn at(store: &mut Memory, s: &Settings, secs: u64, ip: &str, from: &str, to: &str) -> Verdict {
        store.now = secs * 1000;
        let now = store.now;
        s.check(store, now, &session(ip), from, to).unwrap()
    }

    fn greylisted(v: &Verdict) -> bool {
        matches!(v, Verdict::Tempfail(r) if r.code == 451 && r.enhanced == "4.7.1")
    }

    #[test]
    fn first_attempt_is_refused_retry_after_delay_passes_and_is_remembered() {
        let s = Settings::default();
        let mut m = Memory::default();
        let t0 = 1_000_000;
        assert!(greylisted(&at(
            &mut m,
            &s,
            t0,
            "192.0.2.10",
            "a@x.test",
            "b@y.test"
        )));
        assert!(greylisted(&at(
            &mut m,
            &s,
            t0 + 60,
            "192.0.2.10",
            "a@x.test",
            "b@y.test"
        )));
        // A retry from another address of the same /24 counts as the same sender.
        assert_eq!(
            at(&mut m, &s, t0 + 301, "192.0.2.99", "A@x.test", "b@y.test"),
            Verdict::Continue
        );
        // Remembered for weeks; renewed on each message.
        assert_eq!(
            at(
                &mut m,
                &s,
                t0 + 20 * 86400,
                "192.0.2.10",
                "a@x.test",
                "b@y.test"
            ),
            Verdict::Continue
        );
        assert_eq!(
            at(
                &mut m,
                &s,
                t0 + 50 * 86400,
                "192.0.2.10",
                "a@x.test",
                "b@y.test"
            ),
            Verdict::Continue
        );
        // Another triplet starts over.
        assert!(greylisted(&at(
            &mut m,
            &s,
            t0 + 301,
            "192.0.2.10",
            "a@x.test",
            "c@y.test"
        )));
        assert!(greylisted(&at(
            &mut m,
            &s,
            t0 + 301,
            "198.51.100.1",
            "a@x.test",
            "b@y.test"
        )));
    }

    #[test]
    fn first_attempts_expire_after_the_retry_window() {
        let s = Settings::default();
        let mut m = Memory::default();
        assert!(greylisted(&at(
            &mut m,
            &s,
            0,
            "192.0.2.1",
            "a@x.test",
            "b@y.test"
        )));
        let late = at(&mut m, &s, 5 * 3600, "192.0.2.1", "a@x.test", "b@y.test");
        assert!(greylisted(&late));
        assert!(matches!(&late, Verdict::Tempfail(r) if r.text.contains("300 seconds")));
    }

    #[test]
    fn exemptions_skip_greylisting() {
        let s: Settings = mailwit_plugin::config::parse(
            "exempt_ips = [\"192.0.2.5\"]\nexempt_sender_domains = [\".bank.test\"]\ndelay_secs = 10",
        )
        .unwrap();
        let mut m = Memory::default();
        assert_eq!(
            at(&mut m, &s, 0, "192.0.2.5", "a@x.test", "b@y.test"),
            Verdict::Continue
        );
        assert_eq!(
            at(&mut m, &s, 0, "192.0.2.6", "a@mail.bank.test", "b@y.test"),
            Verdict::Continue
        );
        let mut authed = session("192.0.2.6");
        authed.authenticated = Some("alice".into());
        assert_eq!(
            s.check(&mut m, 0, &authed, "a@x.test", "b@y.test").unwrap(),
            Verdict::Continue
        );
        assert!(m.entries.is_empty());
        assert!(greylisted(&at(
            &mut m,
            &s,
            0,
            "192.0.2.6",
            "a@x.test",
            "b@y.test"
        )));
        assert_eq!(
            at(&mut m, &s, 10, "192.0.2.6", "a@x.test", "b@y.test"),
            Verdict::Continue
        );
    }

    #[test]
    fn networks_group_clients() {
        let s = Settings::default();
        assert_eq!(s.network("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(s.network("::ffff:192.0.2.77"), "192.0.2.0/24");
        assert_eq!(s.network("2001:db8::1"), "2001:db8::/64");
    }
}
