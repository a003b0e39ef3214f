//! Limits, counter keys and decisions: pure logic over a counting function, tested natively.

use std::net::IpAddr;

use mailwit_plugin::address::domain_of;
use mailwit_plugin::types::{SessionInfo, Verdict};
use serde::Deserialize;

/// At most `limit` events per `window_secs` (a fixed window that starts with the first event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub limit: u32,
    pub window_secs: u64,
}

/// The plugin's `config` table; every limit is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Connections per client IP (connect hook): 421 4.7.0 and disconnect.
    pub connections_per_ip: Option<Limit>,
    /// Messages (MAIL commands) per client IP: 451 4.7.1.
    pub messages_per_ip: Option<Limit>,
    /// Messages per authenticated user: 451 4.7.1.
    pub messages_per_user: Option<Limit>,
    /// Messages per sender domain (the null sender is not counted): 451 4.7.1.
    pub messages_per_sender_domain: Option<Limit>,
    /// Client IPs never limited (exact addresses).
    pub exempt_ips: Vec<String>,
    /// IPv6 clients are counted per network of this prefix length (they often hold a whole /64).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

fn default_ipv6_prefix() -> u8 {
    64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Mail,
}

impl Settings {
    /// Counts this event against every limit that applies and refuses it when one is exceeded.
    /// `count(key, window_ms)` adds one to a counter and returns the new value (`Err` = unknown,
    /// which lets the event pass).
    pub fn decide(
        &self,
        stage: Stage,
        session: &SessionInfo,
        sender: Option<&str>,
        count: &mut dyn FnMut(&str, u64) -> Result<i64, ()>,
    ) -> Verdict {
        if self
            .exempt_ips
            .iter()
            .any(|ip| same_ip(ip, &session.client_ip))
        {
            return Verdict::Continue;
        }
        let client = self.client_key(&session.client_ip);
        let mut over = |limit: &Option<Limit>, key: String| -> bool {
            limit.is_some_and(|l| {
                count(&key, l.window_secs.saturating_mul(1000))
                    .is_ok_and(|n| n > i64::from(l.limit))
            })
        };
        match stage {
            Stage::Connect => {
                if over(&self.connections_per_ip, format!("conn:{client}")) {
                    return Verdict::disconnect(
                        421,
                        "4.7.0",
                        format!(
                            "too many connections from {}, try again later",
                            session.client_ip
                        ),
                    );
                }
            }
            Stage::Mail => {
                if over(&self.messages_per_ip, format!("msg-ip:{client}")) {
                    return Verdict::tempfail(
                        451,
                        "4.7.1",
                        format!(
                            "too many messages from {}, try again later",
                            session.client_ip
                        ),
                    );
                }
                if let Some(user) = &session.authenticated
                    && over(
                        &self.messages_per_user,
                        format!("msg-user:{}", user.to_lowercase()),
                    )
                {
                    return Verdict::tempfail(
                        451,
                        "4.7.1",
                        format!("too many messages from {user}, try again later"),
                    );
                }
                if let Some(domain) = sender.and_then(domain_of)
                    && over(
                        &self.messages_per_sender_domain,
                        format!("msg-domain:{}", domain.to_ascii_lowercase()),
                    )
                {
                    return Verdict::tempfail(
                        451,
                        "4.7.1",
                        format!("too many messages from {domain}, try again later"),
                    );
                }
            }
        }
        Verdict::Continue
    }

    /// The client's counter key: its address, or its network for IPv6.
    fn client_key(&self, client_ip: &str) -> String {
        match client_ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
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
            Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().unwrap().to_string(),
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Err(_) => client_ip.to_string(),
        }
    }
}

fn same_ip(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailwit_plugin::types::ListenerRole;
    use std::collections::HashMap;

    fn session(ip: &str, user: Option<&str>) -> SessionInfo {
        SessionInfo {
            id: "s1".into(),
            listener: "mx".into(),
            role: ListenerRole::Mx,
            client_ip: ip.into(),
            client_port: 40000,
            local_ip: "127.0.0.1".into(),
            local_port: 25,
            helo: None,
            tls: None,
            authenticated: user.map(String::from),
        }
    }

    /// A counter store like the host's kv (windows are not simulated: keys never expire here).
    #[derive(Default)]
    struct Counters(HashMap<String, (i64, u64)>);

    impl Counters {
        fn count(&mut self, key: &str, window_ms: u64) -> Result<i64, ()> {
            let entry = self.0.entry(key.to_string()).or_insert((0, window_ms));
            entry.0 += 1;
            Ok(entry.0)
        }
    }

    fn settings(toml: &str) -> Settings {
        mailwit_plugin::config::parse(toml).unwrap()
    }

    fn run(
        s: &Settings,
        c: &mut Counters,
        stage: Stage,
        session: &SessionInfo,
        sender: Option<&str>,
    ) -> Verdict {
        s.decide(stage, session, sender, &mut |k, w| c.count(k, w))
    }

    #[test]
    fn connections_per_ip_disconnect_with_421_4_7_0() {
        let s = settings("connections_per_ip = { limit = 2, window_secs = 60 }");
        let mut c = Counters::default();
        let a = session("192.0.2.1", None);
        assert_eq!(run(&s, &mut c, Stage::Connect, &a, None), Verdict::Continue);
        assert_eq!(run(&s, &mut c, Stage::Connect, &a, None), Verdict::Continue);
        let third = run(&s, &mut c, Stage::Connect, &a, None);
        assert!(
            matches!(&third, Verdict::Disconnect(r) if r.code == 421 && r.enhanced == "4.7.0"),
            "{third:?}"
        );
        assert_eq!(
            run(
                &s,
                &mut c,
                Stage::Connect,
                &session("192.0.2.2", None),
                None
            ),
            Verdict::Continue
        );
        assert_eq!(c.0["conn:192.0.2.1"].1, 60_000);
    }

    #[test]
    fn messages_per_user_ip_and_domain_tempfail_with_451_4_7_1() {
        let s = settings(
            r#"
            messages_per_ip = { limit = 3, window_secs = 60 }
            messages_per_user = { limit = 1, window_secs = 60 }
            messages_per_sender_domain = { limit = 2, window_secs = 60 }
        "#,
        );
        let mut c = Counters::default();
        let alice = session("192.0.2.1", Some("alice@example.test"));
        assert_eq!(
            run(&s, &mut c, Stage::Mail, &alice, Some("a@x.test")),
            Verdict::Continue
        );
        let second = run(&s, &mut c, Stage::Mail, &alice, Some("a@x.test"));
        assert!(
            matches!(&second, Verdict::Tempfail(r) if r.code == 451 && r.enhanced == "4.7.1" && r.text.contains("alice"))
        );
        let anon = session("192.0.2.9", None);
        assert_eq!(
            run(&s, &mut c, Stage::Mail, &anon, Some("b@x.test")),
            Verdict::Continue
        );
        let domain = run(&s, &mut c, Stage::Mail, &anon, Some("c@X.test"));
        assert!(
            matches!(&domain, Verdict::Tempfail(r) if r.text.contains("X.test")),
            "{domain:?}"
        );
        // The null sender counts against no domain.
        assert_eq!(
            run(&s, &mut c, Stage::Mail, &anon, Some("")),
            Verdict::Continue
        );
        let ip = run(&s, &mut c, Stage::Mail, &anon, Some(""));
        assert!(
            matches!(&ip, Verdict::Tempfail(r) if r.text.contains("192.0.2.9")),
            "{ip:?}"
        );
    }

    #[test]
    fn exempt_ips_kv_failures_and_ipv6_networks() {
        let s = settings(
            "connections_per_ip = { limit = 1, window_secs = 60 }\nexempt_ips = [\"::ffff:127.0.0.1\", \"127.0.0.1\"]",
        );
        let mut c = Counters::default();
        let local = session("127.0.0.1", None);
        for _ in 0..3 {
            assert_eq!(
                run(&s, &mut c, Stage::Connect, &local, None),
                Verdict::Continue
            );
        }
        assert!(c.0.is_empty());
        let failing = s.decide(
            Stage::Connect,
            &session("192.0.2.1", None),
            None,
            &mut |_, _| Err(()),
        );
        assert_eq!(failing, Verdict::Continue);
        assert_eq!(
            run(
                &s,
                &mut c,
                Stage::Connect,
                &session("2001:db8:1:2::5", None),
                None
            ),
            Verdict::Continue
        );
        let same_net = run(
            &s,
            &mut c,
            Stage::Connect,
            &session("2001:db8:1:2:ffff::1", None),
            None,
        );
        assert!(matches!(same_net, Verdict::Disconnect(_)));
        assert!(c.0.contains_key("conn:2001:db8:1:2::/64"));
    }
}
