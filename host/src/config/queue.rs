//! Configuration of the queue manager (`[queue]`) and the route table (`[routes]`).
//!
//! ```toml
//! [queue]
//! retry_first = "5m"          # first retry after a deferral
//! retry_max = "1h"            # back-off doubles up to this
//! lifetime = "5d"             # then the message bounces
//! delay_warning = "4h"        # "delayed" DSN once, where NOTIFY allows ("0s" = never)
//! concurrency = 100           # deliveries in flight, all destinations together
//! concurrency_per_destination = 10
//! etrn_clients = ["127.0.0.0/8"]   # who may start a queue run with ETRN (none if empty)
//! nameservers = ["127.0.0.1:53"]   # for MX lookups; default: /etc/resolv.conf
//! connection_reuse = "2s"     # keep relay, LMTP and MX sessions open for the next message
//! connection_reuse_messages = 100   # then close the session (0: no limit)
//! client_timeout = "5m"       # per SMTP command; default: RFC 5321 §4.5.3.2 values
//!
//! [routes]                    # used when no route hook decides; local domains always go to Maildir
//! smarthost = { host = "127.0.0.1", port = 2626, tls = "opportunistic" }  # absent: MX delivery
//! [routes.domains."example.org"]
//! lmtp = "127.0.0.1:24"       # or "/run/dovecot/lmtp"
//! [routes.domains."partner.test"]
//! relay = { host = "mx.partner.test", port = 25, tls = "required", credentials = "partner" }
//! # verify = true (default): chain and name checked when TLS is required or AUTH is sent;
//! # ca_file = "partner-ca.pem": trusted besides the system roots; verify = false: no check
//! [routes.domains."direct.test"]
//! mx = true                   # MX even when a smarthost is set
//! [routes.domains."odmr.test"]
//! odmr = true                 # hold in the queue until collected with ATRN (RFC 2645)
//! dane = "required"           # off | opportunistic | required; default: [routes] dane
//! [routes.credentials.partner]
//! username = "me"
//! password = "secret"
//! ```
//!
//! Durations are a number of seconds or a string with a unit: `ms`, `s`, `m`, `h`, `d`.

use crate::policy::{RelayTarget, TlsPolicy};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    #[serde(deserialize_with = "duration")]
    pub retry_first: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    #[serde(deserialize_with = "duration")]
    pub lifetime: Duration,
    #[serde(deserialize_with = "duration")]
    pub delay_warning: Duration,
    pub concurrency: usize,
    pub concurrency_per_destination: usize,
    /// Client networks (CIDR or single addresses) allowed to use ETRN.
    pub etrn_clients: Vec<String>,
    /// DNS servers for MX lookups ("ip:port"); empty: the system's resolver.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// The SMTP port of MX hosts (25; other values are for tests).
    pub mx_port: u16,
    /// Keep a relay, LMTP or MX session open this long for the next message to the same
    /// place ("0s": one connection per delivery).
    #[serde(deserialize_with = "duration")]
    pub connection_reuse: Duration,
    /// Messages one reused session carries before it is closed (0: no limit).
    pub connection_reuse_messages: usize,
    /// Per-command timeout of the SMTP/LMTP client (RFC 5321 §4.5.3.2 minimums by default).
    #[serde(deserialize_with = "optional_duration")]
    pub client_timeout: Option<Duration>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_first: Duration::from_secs(5 * 60),
            retry_max: Duration::from_secs(60 * 60),
            lifetime: Duration::from_secs(5 * 24 * 3600),
            delay_warning: Duration::from_secs(4 * 3600),
            concurrency: 100,
            concurrency_per_destination: 10,
            etrn_clients: Vec::new(),
            nameservers: Vec::new(),
            mx_port: 25,
            connection_reuse: Duration::from_secs(2),
            connection_reuse_messages: 100,
            client_timeout: None,
        }
    }
}

impl QueueConfig {
    /// Whether `client` may start a queue run with ETRN.
    pub fn etrn_allowed(&self, client: std::net::IpAddr) -> bool {
        self.etrn_clients.iter().any(|net| ip_in_net(client, net))
    }
}

fn ip_in_net(ip: std::net::IpAddr, net: &str) -> bool {
    use std::net::IpAddr;
    let (addr, bits) = match net.split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().ok()),
        None => (net, None),
    };
    let Ok(base) = addr.parse::<IpAddr>() else {
        return false;
    };
    // Both families as integers of `width` bits (an IPv4 address in the low 32 bits).
    let (ip, base, width) = match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) => {
            (u128::from(u32::from(ip)), u128::from(u32::from(base)), 32)
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) => (u128::from(ip), u128::from(base), 128),
        _ => return false,
    };
    let bits = bits.unwrap_or(width).min(width);
    // Inside when no bit of the prefix differs; /0 shifts everything out (checked_shr: by 128).
    (ip ^ base).checked_shr(width - bits).unwrap_or(0) == 0
}

/// Use of DANE (RFC 7672) for MX delivery: `dane = "off" | "opportunistic" | "required"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaneMode {
    /// Never look up TLSA records.
    Off,
    /// DANE where the MX host publishes DNSSEC-secure, usable TLSA records; elsewhere
    /// opportunistic TLS. Needs `[dns] dnssec = true` to have any effect.
    #[default]
    Opportunistic,
    /// Deliver only over DANE-authenticated TLS; other hosts defer (4.7.5).
    Required,
}

/// The route table: where a recipient goes when no route hook decided.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// DANE for MX delivery, unless a domain's entry says otherwise.
    pub dane: DaneMode,
    /// Relay every non-local domain without its own entry here; without it, deliver by MX.
    pub smarthost: Option<RelayConfig>,
    /// Per destination domain (lower case; exact match, then parent domains).
    pub domains: BTreeMap<String, DomainRoute>,
    /// Named credentials for relays (`credentials = "NAME"`).
    pub credentials: BTreeMap<String, CredentialsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "default_tls")]
    pub tls: TlsPolicy,
    #[serde(default)]
    pub credentials: Option<String>,
    /// Check the relay's certificate (chain to a trusted root, name = `host`) whenever TLS is
    /// required or credentials are sent. `false` turns the check off, explicitly: the session
    /// is then encrypted but not authenticated, and AUTH is sent over it anyway.
    #[serde(default = "default_verify")]
    pub verify: bool,
    /// PEM file of CA certificates trusted for this relay besides the system's roots
    /// (relative to the configuration file).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// DANE (RFC 7672) for this relay: TLSA records at `_<port>._tcp.<host>`, looked up through
    /// `[dns]` when the host's address records are DNSSEC-secure. Default "off" (the
    /// certificate is checked as `verify` says); "required" accepts only DANE-authenticated TLS.
    #[serde(default = "default_relay_dane")]
    pub dane: DaneMode,
}

fn default_verify() -> bool {
    true
}

fn default_relay_dane() -> DaneMode {
    DaneMode::Off
}

impl RelayConfig {
    /// A relay with the defaults: port 25, opportunistic TLS, certificates verified.
    pub fn new(host: impl Into<String>, port: u16) -> RelayConfig {
        RelayConfig {
            host: host.into(),
            port,
            tls: default_tls(),
            credentials: None,
            verify: true,
            ca_file: None,
            dane: DaneMode::Off,
        }
    }
}

impl RelayConfig {
    pub fn target(&self) -> RelayTarget {
        RelayTarget {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls,
            credentials: self.credentials.clone(),
        }
    }
}

fn default_smtp_port() -> u16 {
    25
}

fn default_tls() -> TlsPolicy {
    TlsPolicy::Opportunistic
}

/// One domain's route: exactly one of the keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainRoute {
    /// LMTP to "host:port" or a unix socket path.
    pub lmtp: Option<String>,
    pub relay: Option<RelayConfig>,
    /// Deliver by MX lookup (overrides the smarthost).
    pub mx: bool,
    /// DANE for this domain's MX delivery (with `mx = true`); default: `[routes] dane`.
    pub dane: Option<DaneMode>,
    /// Accept and drop.
    pub discard: bool,
    /// Hold in the queue until the domain's customer collects it with ATRN on an odmr listener
    /// (who may collect it: `[odmr] users`). Decided by the core before any route hook; held
    /// mail gets the usual delay warnings and bounces after `[queue] lifetime`.
    pub odmr: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    pub username: String,
    pub password: crate::secret::Secret,
}

impl RoutesConfig {
    /// Semantic checks the schema cannot express; errors name the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        let check_creds = |key: &str, relay: &RelayConfig| match &relay.credentials {
            Some(name) if !self.credentials.contains_key(name) => Err(format!(
                "{key}.credentials: no [routes.credentials.{name}] table"
            )),
            _ => Ok(()),
        };
        let check_tls = |key: &str, relay: &RelayConfig| match &relay.ca_file {
            Some(_) if !relay.verify => Err(format!(
                "{key}.ca_file: has no effect with verify = false (remove one of them)"
            )),
            Some(path) if !path.is_file() => Err(format!(
                "{key}.ca_file: {} is not a readable file",
                path.display()
            )),
            _ => Ok(()),
        };
        if let Some(relay) = &self.smarthost {
            check_creds("routes.smarthost", relay)?;
            check_tls("routes.smarthost", relay)?;
        }
        for (domain, route) in &self.domains {
            let chosen = route.lmtp.is_some() as u8
                + route.relay.is_some() as u8
                + route.mx as u8
                + route.discard as u8
                + route.odmr as u8;
            if chosen != 1 {
                return Err(format!(
                    "routes.domains.\"{domain}\": set exactly one of lmtp, relay, mx = true, discard = true, odmr = true"
                ));
            }
            if route.dane.is_some() && !route.mx {
                return Err(format!(
                    "routes.domains.\"{domain}\".dane: only applies with mx = true"
                ));
            }
            if let Some(relay) = &route.relay {
                check_creds(&format!("routes.domains.\"{domain}\".relay"), relay)?;
                check_tls(&format!("routes.domains.\"{domain}\".relay"), relay)?;
            }
        }
        Ok(())
    }

    /// Whether mail for `domain` (exact match, any case, trailing dot ignored) is held for ODMR.
    /// Exact only: a held domain's subdomains are not the customer's unless listed.
    pub fn is_odmr(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.domains.get(&domain).is_some_and(|r| r.odmr)
    }

    /// The DANE mode for MX delivery to `domain`.
    pub fn dane_for(&self, domain: &str) -> DaneMode {
        self.lookup(domain)
            .and_then(|route| route.dane)
            .unwrap_or(self.dane)
    }

    /// The entry for `domain`: exact match first, then the nearest parent domain.
    pub fn lookup(&self, domain: &str) -> Option<&DomainRoute> {
        let domain = domain.to_ascii_lowercase();
        let mut rest = domain.as_str();
        loop {
            if let Some(route) = self.domains.get(rest) {
                return Some(route);
            }
            rest = rest.split_once('.')?.1;
        }
    }
}

/// Parses `300`, `"300s"`, `"5m"`, `"250ms"`, `"1h"`, `"5d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" => n.checked_mul(1000)?,
        "ms" => n,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?} (use e.g. 300, \"250ms\", \"5m\", \"1h\", \"5d\")"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(432_000)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("5 weeks"), None);
    }

    #[test]
    fn route_table_parses_and_validates() {
        let cfg: RoutesConfig = toml::from_str(
            r#"
            smarthost = { host = "127.0.0.1", port = 2626 }
            [domains."example.org"]
            lmtp = "127.0.0.1:24"
            [domains."partner.test"]
            relay = { host = "mx.partner.test", tls = "required", credentials = "p" }
            [credentials.p]
            username = "u"
            password = "pw"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.smarthost.as_ref().unwrap().port, 2626);
        assert!(cfg.lookup("sub.EXAMPLE.org").unwrap().lmtp.is_some());
        assert!(cfg.lookup("example.com").is_none());

        let bad: RoutesConfig =
            toml::from_str("[domains.\"x.test\"]\nmx = true\ndiscard = true\n").unwrap();
        assert!(bad.validate().unwrap_err().contains("x.test"));
        assert!(toml::from_str::<RoutesConfig>("bogus = 1").is_err());
    }

    #[test]
    fn queue_config_reads_short_durations_and_etrn_networks() {
        let cfg: QueueConfig =
            toml::from_str("retry_first = \"100ms\"\netrn_clients = [\"127.0.0.0/8\"]").unwrap();
        assert_eq!(cfg.retry_first, Duration::from_millis(100));
        assert_eq!(cfg.retry_max, Duration::from_secs(3600));
        assert!(cfg.etrn_allowed("127.1.2.3".parse().unwrap()));
        assert!(!cfg.etrn_allowed("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ip_in_net_matches_the_prefix_of_either_family() {
        // (address, network, inside)
        #[rustfmt::skip]
        let cases = [
            ("10.1.2.3", "10.0.0.0/8", true),
            ("11.0.0.1", "10.0.0.0/8", false),
            ("1.2.3.4", "0.0.0.0/0", true),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.2", "10.0.0.1", false),
            ("10.0.0.2", "10.0.0.1/40", false),
            ("10.0.0.2", "10.0.0.1/x", false),
            ("2001:db8::1", "2001:db8::/32", true),
            ("2001:db9::1", "2001:db8::/32", false),
            ("::1", "::/0", true),
            ("::1", "::1", true),
            ("::1", "10.0.0.0/8", false),
            ("10.0.0.1", "::/0", false),
            ("10.0.0.1", "bogus/8", false),
        ];
        for (ip, net, inside) in cases {
            assert_eq!(ip_in_net(ip.parse().unwrap(), net), inside, "{ip} in {net}");
        }
    }
}

/// `[odmr]`: who may collect which held domains with ATRN.
///
/// ```toml
/// [odmr]
/// users = { "alice@example.test" = ["odmr.test"] }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdmrConfig {
    /// Authenticated identity (lower case) -> the domains it may collect.
    #[serde(default)]
    pub users: BTreeMap<String, Vec<String>>,
}

impl OdmrConfig {
    /// The domains `user` may collect (lower case).
    pub fn domains_of(&self, user: &str) -> Vec<String> {
        self.users
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(user))
            .map(|(_, domains)| domains.iter().map(|d| d.to_ascii_lowercase()).collect())
            .unwrap_or_default()
    }

    /// Whether some user may collect `domain` (exact match, any case, trailing dot ignored).
    pub fn collects(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        self.users
            .values()
            .flatten()
            .any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(domain))
    }

    /// Every domain is held: an `odmr = true` route, or, when `route_plugins` (the queue
    /// pipeline has a route chain), a domain without a [routes.domains] entry of its own, left
    /// for a route plugin's `route-hold` (else its mail would never be held).
    pub fn validate(&self, routes: &RoutesConfig, route_plugins: bool) -> Result<(), String> {
        for (user, domains) in &self.users {
            for domain in domains {
                let listed = routes
                    .domains
                    .contains_key(&domain.trim_end_matches('.').to_ascii_lowercase());
                if !routes.is_odmr(domain) && (listed || !route_plugins) {
                    return Err(format!(
                        "odmr.users.{user}: {domain:?} has no [routes.domains.\"{domain}\"] odmr = true \
                         (nor is it left to a [pipelines.queue] route plugin that holds it)"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod odmr_tests {
    use super::*;

    #[test]
    fn odmr_users_domains_are_held_by_routes_or_left_to_a_route_plugin() {
        let routes: RoutesConfig = toml::from_str(
            "[domains.\"held.test\"]\nodmr = true\n[domains.\"lmtp.test\"]\nlmtp = \"127.0.0.1:24\"\n",
        )
        .unwrap();
        let odmr = |domain: &str| -> OdmrConfig {
            toml::from_str(&format!("users = {{ \"a@b.test\" = [\"{domain}\"] }}")).unwrap()
        };
        // A [routes] hold is enough, with or without route plugins.
        assert!(odmr("held.test").validate(&routes, false).is_ok());
        assert!(odmr("Held.Test.").collects("held.test"));
        // A domain with no [routes] entry: only a route plugin could hold it.
        assert!(odmr("hook.test").validate(&routes, true).is_ok());
        let err = odmr("hook.test").validate(&routes, false).unwrap_err();
        assert!(
            err.contains("odmr.users.a@b.test") && err.contains("hook.test"),
            "{err}"
        );
        // A domain the route table sends elsewhere is a mistake either way.
        assert!(odmr("lmtp.test").validate(&routes, true).is_err());
        assert!(!odmr("hook.test").collects("other.test"));
    }
}
