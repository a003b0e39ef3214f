//! Query names and the listing decision: pure logic over a lookup function, tested natively.

use std::net::{IpAddr, Ipv4Addr};

use mailwit_plugin::types::Verdict;
use serde::Deserialize;

/// What one A lookup said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addresses(Vec<String>),
    /// NXDOMAIN or no A records: not listed.
    NotListed,
    /// Timeout or resolver failure.
    Failed(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// A list that cannot be asked is skipped (the default: a DNS outage must not stop mail).
    #[default]
    Continue,
    /// 451 4.7.1 until the list answers.
    Tempfail,
}

/// The plugin's `config` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// DNSBL zones, e.g. ["zen.spamhaus.org", "bl.spamcop.net"], asked in order.
    pub zones: Vec<String>,
    /// Answers that mean "listed"; empty means any address in 127.0.0.0/8 except
    /// 127.255.255.0/24 (the lists' "you may not query" codes).
    pub listed_answers: Vec<String>,
    pub on_error: OnError,
    /// Also look up loopback, private and link-local addresses (for tests).
    pub check_private: bool,
    /// Client IPs never looked up.
    pub exempt_ips: Vec<String>,
}

impl Settings {
    /// Asks each zone about `client_ip` through `lookup_a` and decides.
    pub fn check(&self, client_ip: &str, lookup_a: &mut dyn FnMut(&str) -> Answer) -> Verdict {
        let Ok(ip) = client_ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            return Verdict::Continue;
        };
        if self
            .exempt_ips
            .iter()
            .any(|e| e.parse::<IpAddr>().is_ok_and(|e| e.to_canonical() == ip))
            || (!self.check_private && is_private(ip))
        {
            return Verdict::Continue;
        }
        let reversed = reverse_name(ip);
        for zone in &self.zones {
            let zone = zone.trim_matches('.');
            match lookup_a(&format!("{reversed}.{zone}")) {
                Answer::Addresses(addresses) if addresses.iter().any(|a| self.means_listed(a)) => {
                    return Verdict::reject(
                        554,
                        "5.7.1",
                        format!("client [{client_ip}] is listed in {zone}"),
                    );
                }
                Answer::Addresses(_) | Answer::NotListed => {}
                Answer::Failed(_) if self.on_error == OnError::Tempfail => {
                    return Verdict::tempfail(
                        451,
                        "4.7.1",
                        format!("cannot check {zone} now, try again later"),
                    );
                }
                Answer::Failed(_) => {}
            }
        }
        Verdict::Continue
    }

    fn means_listed(&self, answer: &str) -> bool {
        if !self.listed_answers.is_empty() {
            return self.listed_answers.iter().any(|a| a == answer);
        }
        answer
            .parse::<Ipv4Addr>()
            .is_ok_and(|a| a.octets()[0] == 127 && a.octets()[1..3] != [255, 255])
    }
}

/// The DNSBL query label: "2.0.0.127" for IPv4, 32 reversed nibbles for IPv6 (RFC 5782).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let hex: Vec<String> = v6
                .octets()
                .iter()
                .rev()
                .flat_map(|byte| [byte & 0x0f, byte >> 4])
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            hex.join(".")
        }
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Settings {
        mailwit_plugin::config::parse(toml).unwrap()
    }

    /// A resolver that lists 192.0.2.99 in "bl.test" only (RFC 5782's test address 127.0.0.2).
    fn resolver(asked: &mut Vec<String>) -> impl FnMut(&str) -> Answer + '_ {
        move |name| {
            asked.push(name.to_string());
            match name {
                "99.2.0.192.bl.test" => Answer::Addresses(vec!["127.0.0.2".into()]),
                "98.2.0.192.bl.test" => Answer::Addresses(vec!["127.255.255.254".into()]),
                n if n.ends_with(".down.test") => Answer::Failed("timeout".into()),
                _ => Answer::NotListed,
            }
        }
    }

    #[test]
    fn listed_clients_get_554_5_7_1_naming_the_zone() {
        let s = settings("zones = [\"clean.test\", \"bl.test.\"]");
        let mut asked = Vec::new();
        let v = s.check("192.0.2.99", &mut resolver(&mut asked));
        assert!(
            matches!(&v, Verdict::Reject(r) if r.code == 554 && r.enhanced == "5.7.1" && r.text.contains("bl.test")),
            "{v:?}"
        );
        assert_eq!(asked, ["99.2.0.192.clean.test", "99.2.0.192.bl.test"]);
        assert_eq!(
            s.check("192.0.2.1", &mut resolver(&mut Vec::new())),
            Verdict::Continue
        );
        // 127.255.255.x is a refusal to answer, not a listing.
        assert_eq!(
            s.check("192.0.2.98", &mut resolver(&mut Vec::new())),
            Verdict::Continue
        );
    }

    #[test]
    fn private_exempt_and_failing_lookups() {
        let s = settings("zones = [\"bl.test\"]\nexempt_ips = [\"192.0.2.99\"]");
        let mut asked = Vec::new();
        assert_eq!(
            s.check("127.0.0.1", &mut resolver(&mut asked)),
            Verdict::Continue
        );
        assert_eq!(
            s.check("10.1.2.3", &mut resolver(&mut asked)),
            Verdict::Continue
        );
        assert_eq!(
            s.check("::ffff:192.0.2.99", &mut resolver(&mut asked)),
            Verdict::Continue
        );
        assert!(asked.is_empty());
        let down = settings("zones = [\"down.test\"]");
        assert_eq!(
            down.check("192.0.2.1", &mut resolver(&mut Vec::new())),
            Verdict::Continue
        );
        let strict = settings("zones = [\"down.test\"]\non_error = \"tempfail\"");
        assert!(
            matches!(strict.check("192.0.2.1", &mut resolver(&mut Vec::new())), Verdict::Tempfail(r) if r.code == 451)
        );
        let explicit = settings("zones = [\"bl.test\"]\nlisted_answers = [\"127.0.0.4\"]");
        assert_eq!(
            explicit.check("192.0.2.99", &mut resolver(&mut Vec::new())),
            Verdict::Continue
        );
    }

    #[test]
    fn query_names_follow_rfc_5782() {
        assert_eq!(reverse_name("192.0.2.99".parse().unwrap()), "99.2.0.192");
        assert_eq!(
            reverse_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
        );
    }
}
