//! `check_host()` (RFC 7208 §4): the record of a domain evaluated against the client's address,
//! with the processing limits of §4.6.4 (10 DNS-querying terms, 2 void lookups, 10 MX and PTR
//! names) shared across include and redirect.

use super::macros::{Context, MacroString, Values};
use super::record::{Directive, Hosts, Mechanism, Qualifier, Record, is_spf};
use crate::dns::{LookupError, Resolver};
use hickory_resolver::proto::rr::{RData, RecordType};
use mail_auth::SpfResult;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

const MAX_DNS_TERMS: usize = 10;
const MAX_VOID_LOOKUPS: usize = 2;
const MAX_NAMES: usize = 10;
/// Recursion is bounded by the DNS-term limit already; this is a backstop.
const MAX_DEPTH: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: SpfResult,
    /// The domain's `exp=` text, on fail.
    pub explanation: Option<String>,
}

impl Outcome {
    fn of(result: SpfResult) -> Outcome {
        Outcome {
            result,
            explanation: None,
        }
    }
}

/// One evaluation: the client, the identities and the limits' counters.
pub struct Evaluation<'a> {
    resolver: &'a Resolver,
    ip: IpAddr,
    sender: &'a str,
    helo: &'a str,
    receiver: &'a str,
    dns_terms: usize,
    void_lookups: usize,
}

/// Why evaluation stops early.
enum Abort {
    Temp,
    Perm,
}

type Matched = Result<bool, Abort>;

impl<'a> Evaluation<'a> {
    /// `sender` is the full identity (`postmaster@<helo>` for the HELO check and for `<>`).
    pub fn new(
        resolver: &'a Resolver,
        ip: IpAddr,
        sender: &'a str,
        helo: &'a str,
        receiver: &'a str,
    ) -> Evaluation<'a> {
        // An IPv4-mapped IPv6 address is the IPv4 client it maps (§5: compared as IPv4).
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        Evaluation {
            resolver,
            ip,
            sender,
            helo,
            receiver,
            dns_terms: 0,
            void_lookups: 0,
        }
    }

    pub async fn check(mut self, domain: &str) -> Outcome {
        self.check_host(domain.to_string(), 0).await
    }

    fn check_host(
        &mut self,
        domain: String,
        depth: usize,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Outcome::of(SpfResult::PermError);
            }
            // A malformed or single-label domain has no policy (§4.3).
            if !well_formed(&domain) {
                return Outcome::of(SpfResult::None);
            }
            let record = match self.record(&domain).await {
                Ok(Some(record)) => record,
                Ok(None) => return Outcome::of(SpfResult::None),
                Err(Abort::Temp) => return Outcome::of(SpfResult::TempError),
                Err(Abort::Perm) => return Outcome::of(SpfResult::PermError),
            };
            for Directive {
                qualifier,
                mechanism,
            } in &record.directives
            {
                if mechanism.queries_dns() {
                    self.dns_terms += 1;
                    if self.dns_terms > MAX_DNS_TERMS {
                        return Outcome::of(SpfResult::PermError);
                    }
                }
                match self.matches(mechanism, &domain, depth).await {
                    Ok(false) => continue,
                    Ok(true) => {
                        let result = match qualifier {
                            Qualifier::Pass => SpfResult::Pass,
                            Qualifier::Fail => SpfResult::Fail,
                            Qualifier::SoftFail => SpfResult::SoftFail,
                            Qualifier::Neutral => SpfResult::Neutral,
                        };
                        let explanation = match (&result, &record.exp) {
                            (SpfResult::Fail, Some(exp)) => self.explain(exp, &domain).await,
                            _ => None,
                        };
                        return Outcome {
                            result,
                            explanation,
                        };
                    }
                    Err(Abort::Temp) => return Outcome::of(SpfResult::TempError),
                    Err(Abort::Perm) => return Outcome::of(SpfResult::PermError),
                }
            }
            // §6.1: redirect applies only when no mechanism matched; the target's own exp=
            // (not ours) explains its fail.
            if let Some(redirect) = &record.redirect {
                self.dns_terms += 1;
                if self.dns_terms > MAX_DNS_TERMS {
                    return Outcome::of(SpfResult::PermError);
                }
                let Some(target) = self.target(redirect, &domain).await else {
                    return Outcome::of(SpfResult::PermError);
                };
                let outcome = self.check_host(target, depth + 1).await;
                if outcome.result == SpfResult::None {
                    return Outcome::of(SpfResult::PermError);
                }
                return outcome;
            }
            Outcome::of(SpfResult::Neutral)
        })
    }

    /// The domain's one SPF record (§4.4, §4.5): none when there is none, permerror for two or
    /// for a syntax error, temperror when DNS fails.
    async fn record(&mut self, domain: &str) -> Result<Option<Record>, Abort> {
        let texts = match self.resolver.txt(domain).await {
            Ok(answer) => answer.records,
            Err(LookupError::NxDomain(_) | LookupError::NoRecords(_)) => return Ok(None),
            Err(_) => return Err(Abort::Temp),
        };
        let mut spf = texts.iter().filter(|t| is_spf(t));
        let Some(text) = spf.next() else {
            return Ok(None);
        };
        if spf.next().is_some() {
            return Err(Abort::Perm);
        }
        Record::parse(text).map(Some).map_err(|_| Abort::Perm)
    }

    async fn matches(&mut self, mechanism: &Mechanism, domain: &str, depth: usize) -> Matched {
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(in_network(self.ip, IpAddr::V4(*net), *len)),
            Mechanism::Ip6(net, len) => Ok(in_network(self.ip, IpAddr::V6(*net), *len)),
            Mechanism::Include(spec) => {
                // A target that is no domain has no policy: none, which include makes permerror.
                let Some(target) = self.target(spec, domain).await else {
                    return Err(Abort::Perm);
                };
                match self.check_host(target, depth + 1).await.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::TempError => Err(Abort::Temp),
                    SpfResult::PermError | SpfResult::None => Err(Abort::Perm),
                }
            }
            Mechanism::A(hosts) => {
                let Some((target, prefix)) = self.hosts_target(hosts, domain).await else {
                    return Ok(false);
                };
                let addresses = self.addresses(&target).await?;
                Ok(addresses.iter().any(|a| in_network(self.ip, *a, prefix)))
            }
            Mechanism::Mx(hosts) => {
                let Some((target, prefix)) = self.hosts_target(hosts, domain).await else {
                    return Ok(false);
                };
                let exchanges = match self.resolver.mx(&target).await {
                    Ok(answer) => answer.records,
                    Err(e) => return self.void(e),
                };
                if exchanges.len() > MAX_NAMES {
                    return Err(Abort::Perm);
                }
                for (_, exchange) in exchanges {
                    if exchange.is_empty() {
                        continue; // the null MX (RFC 7505) has no address
                    }
                    let addresses = match self.family_lookup(&exchange).await {
                        Ok(addresses) => addresses,
                        Err(LookupError::NxDomain(_) | LookupError::NoRecords(_)) => continue,
                        Err(_) => return Err(Abort::Temp),
                    };
                    if addresses.iter().any(|a| in_network(self.ip, *a, prefix)) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                let Some(target) = self.optional_target(spec.as_ref(), domain).await else {
                    return Ok(false);
                };
                let target = target.trim_end_matches('.').to_ascii_lowercase();
                Ok(self
                    .validated_names()
                    .await
                    .iter()
                    .any(|name| is_within(name, &target)))
            }
            Mechanism::Exists(spec) => {
                let Some(target) = self.target(spec, domain).await else {
                    return Ok(false);
                };
                // Always an A lookup, whatever the client's family (§5.7).
                match self.lookup_a(&target, RecordType::A).await {
                    Ok(addresses) => Ok(!addresses.is_empty()),
                    Err(e) => self.void(e),
                }
            }
        }
    }

    /// Where `a` and `mx` look (None: the target is no domain, so no match) and the prefix
    /// length for the client's address family.
    async fn hosts_target(&self, hosts: &Hosts, domain: &str) -> Option<(String, u8)> {
        let target = self.optional_target(hosts.domain.as_ref(), domain).await?;
        let prefix = if self.ip.is_ipv4() {
            hosts.cidr4
        } else {
            hosts.cidr6
        };
        Some((target, prefix))
    }

    /// A/AAAA of `name` for the client's family; a void answer counts against the limit.
    async fn addresses(&mut self, name: &str) -> Result<Vec<IpAddr>, Abort> {
        match self.family_lookup(name).await {
            Ok(addresses) => Ok(addresses),
            Err(e) => self.void(e).map(|_| Vec::new()),
        }
    }

    async fn family_lookup(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let rtype = if self.ip.is_ipv4() {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        self.lookup_a(name, rtype).await
    }

    async fn lookup_a(&self, name: &str, rtype: RecordType) -> Result<Vec<IpAddr>, LookupError> {
        let answer = self.resolver.lookup(name, rtype).await?;
        Ok(answer
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect())
    }

    /// A lookup with no answer: no match, but more than two of them is permerror (§4.6.4);
    /// a DNS failure is temperror.
    fn void(&mut self, error: LookupError) -> Matched {
        match error {
            LookupError::NxDomain(_) | LookupError::NoRecords(_) => {
                self.void_lookups += 1;
                if self.void_lookups > MAX_VOID_LOOKUPS {
                    Err(Abort::Perm)
                } else {
                    Ok(false)
                }
            }
            _ => Err(Abort::Temp),
        }
    }

    /// The names the client's address points back to and that point to it (§5.5): at most
    /// 10 PTR names are tried; lookup failures just leave names out.
    async fn validated_names(&self) -> Vec<String> {
        let Ok(answer) = self
            .resolver
            .lookup(&reverse_name(self.ip), RecordType::PTR)
            .await
        else {
            return Vec::new();
        };
        let mut validated = Vec::new();
        for record in answer.records.iter().take(MAX_NAMES) {
            let RData::PTR(ptr) = &record.data else {
                continue;
            };
            let name = crate::dns::name_text(&ptr.0).to_ascii_lowercase();
            if let Ok(addresses) = self.family_lookup(&name).await
                && addresses.contains(&self.ip)
            {
                validated.push(name);
            }
        }
        validated
    }

    /// The `p` macro (§7.3): the target domain if validated, else a validated subdomain of
    /// it, else any validated name, else "unknown".
    async fn p_value(&self, domain: &str) -> String {
        let names = self.validated_names().await;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        names
            .iter()
            .find(|n| **n == domain)
            .or_else(|| names.iter().find(|n| is_within(n, &domain)))
            .or_else(|| names.first())
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }

    async fn expand(&self, spec: &MacroString, domain: &str) -> String {
        let p = if spec.uses('p') {
            Some(self.p_value(domain).await)
        } else {
            None
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        spec.expand(&Values {
            sender: self.sender,
            domain,
            ip: self.ip,
            helo: self.helo,
            validated_name: p.as_deref(),
            receiver: self.receiver,
            now,
        })
    }

    /// A domain-spec expanded and shortened from the left to 253 octets (§7.3); None when the
    /// result is no usable name (the syntax was checked before expansion, so a macro that
    /// yields garbage, say a HELO of `JUMPIN' JUPITER`, makes the term not match instead).
    async fn target(&self, spec: &MacroString, domain: &str) -> Option<String> {
        let mut name = self.expand(spec, domain).await;
        while name.trim_end_matches('.').len() > 253 {
            match name.split_once('.') {
                Some((_, rest)) => name = rest.to_string(),
                None => break,
            }
        }
        usable(&name).then_some(name)
    }

    async fn optional_target(&self, spec: Option<&MacroString>, domain: &str) -> Option<String> {
        match spec {
            Some(spec) => self.target(spec, domain).await,
            None => Some(domain.to_string()),
        }
    }

    /// The `exp=` explanation (§6.2): one TXT record at the expanded name, macro-expanded;
    /// anything wrong gives no explanation rather than another result.
    async fn explain(&self, exp: &MacroString, domain: &str) -> Option<String> {
        let target = self.target(exp, domain).await?;
        let texts = self.resolver.txt(&target).await.ok()?.records;
        let [text] = texts.as_slice() else {
            return None;
        };
        let text = MacroString::parse(text, Context::Explanation).ok()?;
        Some(self.expand(&text, domain).await)
    }
}

/// Whether `name` is `domain` or below it.
fn is_within(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name + "ip6.arpa"
        }
    }
}

/// A name DNS can carry (the labels' octets are sent as they are): at least two labels (a bare
/// HELO name such as `OEMCOMPUTER` is not a domain), none empty or over 63 octets.
fn usable(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// A name DNS can carry and SPF can have a policy for (§4.3): at least two labels, none empty
/// or longer than 63 octets, 253 octets in all, no spaces or control characters, and not an
/// address literal.
pub fn well_formed(name: &str) -> bool {
    usable(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'[' && b != b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip: IpAddr = "192.0.2.130".parse().unwrap();
        assert!(in_network(ip, "192.0.2.128".parse().unwrap(), 25));
        assert!(!in_network(ip, "192.0.2.0".parse().unwrap(), 25));
        assert!(in_network(ip, "10.0.0.0".parse().unwrap(), 0));
        assert!(!in_network(ip, "::".parse().unwrap(), 0));
        let ip6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(in_network(ip6, "2001:db8::".parse().unwrap(), 32));
        assert!(in_network(ip6, "::".parse().unwrap(), 0));
    }

    #[test]
    fn names() {
        let long_label = format!("{}.com", "a".repeat(64));
        for (name, ok) in [
            ("example.com", true),
            ("_spf.example.com.", true),
            ("com", false),
            ("a..example.com", false),
            ("[192.0.2.1]", false),
            (long_label.as_str(), false),
        ] {
            assert_eq!(well_formed(name), ok, "{name}");
        }
        assert!(is_within("mx.example.com", "example.com"));
        assert!(!is_within("mxexample.com", "example.com"));
        assert_eq!(
            reverse_name("192.0.2.3".parse().unwrap()),
            "3.2.0.192.in-addr.arpa"
        );
    }
}
