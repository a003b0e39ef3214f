//! The server's one DNS resolver, built from `[dns]` and shared by every lookup the server makes:
//! MX and address lookups for delivery, TLSA for DANE, the plugins' `dns` import (and, later,
//! MTA-STS and TLS-RPT discovery).
//!
//! Why one resolver: its cache and its connections are shared, and there is one place where
//! name servers, timeouts and DNSSEC validation are configured. With `dnssec = true` every
//! answer carries hickory's DNSSEC proof, summarised here as a [`Security`]: DANE (RFC 7672)
//! needs to tell a *secure* answer from an *insecure* one (no DNSSEC: opportunistic TLS) and
//! from a *bogus* one (validation failed: possibly an attack, so defer).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::rdata::TLSA;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use crate::config::dns::DnsConfig;

/// What DNSSEC says about an answer (RFC 4033 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Validated along a chain of trust from a configured anchor.
    Secure,
    /// Provably unsigned (or validation is off): usable, but not authenticated.
    Insecure,
    /// Should have validated and did not: do not use.
    Bogus,
    /// Validation could not decide (e.g. the chain could not be fetched).
    Indeterminate,
}

impl Security {
    fn of(proof: Proof) -> Security {
        match proof {
            Proof::Secure => Security::Secure,
            Proof::Insecure => Security::Insecure,
            Proof::Bogus => Security::Bogus,
            _ => Security::Indeterminate,
        }
    }

    /// The weaker of two: an RRset is only as secure as its least secure record.
    fn min(self, other: Security) -> Security {
        let rank = |s: Security| match s {
            Security::Bogus => 0,
            Security::Indeterminate => 1,
            Security::Insecure => 2,
            Security::Secure => 3,
        };
        if rank(other) < rank(self) {
            other
        } else {
            self
        }
    }

    pub fn is_secure(self) -> bool {
        self == Security::Secure
    }
}

/// Records of one type for one name, with their DNSSEC status. Without validation the status is
/// [`Security::Insecure`].
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub records: Vec<T>,
    pub security: Security,
}

/// Why a lookup produced no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// NXDOMAIN: the name does not exist.
    NxDomain(Security),
    /// The name exists without records of the type asked for (NODATA).
    NoRecords(Security),
    /// The answer failed DNSSEC validation.
    Bogus(String),
    /// Timeout, SERVFAIL, no name server reachable: try again later.
    Temporary(String),
}

impl LookupError {
    /// The DNSSEC status of a negative answer (NXDOMAIN / NODATA), if this is one.
    pub fn denial(&self) -> Option<Security> {
        match self {
            LookupError::NxDomain(s) | LookupError::NoRecords(s) => Some(*s),
            _ => None,
        }
    }
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NxDomain(_) => f.write_str("no such domain"),
            LookupError::NoRecords(_) => f.write_str("no records of that type"),
            LookupError::Bogus(e) => write!(f, "DNSSEC validation failed: {e}"),
            LookupError::Temporary(e) => f.write_str(e),
        }
    }
}

/// The shared resolver. Cheap to clone through `Arc`.
pub struct Resolver {
    inner: TokioResolver,
    validating: bool,
    /// Bound on one lookup as callers see it (timeout x attempts, plus one for TCP).
    bound: Duration,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("validating", &self.validating)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds the resolver of `[dns]`: the configured name servers (UDP, and TCP for truncated
    /// and DNSSEC answers) or the system's, the timeout and attempts, ndots 0 (every name the
    /// server looks up is absolute), and DNSSEC validation against `trust_anchors` (default: the
    /// IANA root keys) when `dnssec = true`.
    pub fn from_config(config: &DnsConfig) -> Result<Arc<Resolver>, String> {
        let mut builder = builder(config);
        let options = builder.options_mut();
        if config.dnssec {
            options.validate = true;
            if let Some(path) = &config.trust_anchors {
                let anchors = TrustAnchors::from_file(path)
                    .map_err(|e| format!("dns.trust_anchors: {}: {e}", path.display()))?;
                if anchors.is_empty() && !has_any_key(path) {
                    return Err(format!(
                        "dns.trust_anchors: {}: no DNSKEY records",
                        path.display()
                    ));
                }
                builder = builder.with_trust_anchor(Arc::new(anchors));
            }
        }
        let inner = builder.build().map_err(|e| format!("resolver: {e}"))?;
        Ok(Arc::new(Resolver {
            inner,
            validating: config.dnssec,
            bound: config.timeout * (config.attempts.max(1) as u32 + 1),
        }))
    }

    /// The resolver of `mailwit serve`: `[dns]`, with the deprecated `[queue] nameservers` as
    /// the name servers when `[dns] nameservers` is empty.
    pub fn for_server(config: &crate::config::Config) -> Result<Arc<Resolver>, String> {
        let mut dns = config.dns.clone();
        if dns.nameservers.is_empty() && !config.queue.nameservers.is_empty() {
            tracing::warn!("[queue] nameservers is deprecated: use [dns] nameservers");
            dns.nameservers = config.queue.nameservers.clone();
        }
        Resolver::from_config(&dns)
    }

    /// Whether answers are DNSSEC-validated (`dnssec = true`).
    pub fn is_validating(&self) -> bool {
        self.validating
    }

    /// The hickory resolver itself, for lookups this module has no helper for.
    pub fn hickory(&self) -> &TokioResolver {
        &self.inner
    }

    /// Records of `rtype` at `name` (absolute or not: a trailing dot is added), with the
    /// DNSSEC status of the RRset.
    pub async fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Answer<Record>, LookupError> {
        let name = dns_name(name)
            .map_err(|e| LookupError::Temporary(format!("invalid name {name:?}: {e}")))?;
        // hickory retries on its own; this bounds the whole lookup as the caller sees it.
        let result = match tokio::time::timeout(self.bound, self.inner.lookup(name, rtype)).await {
            Ok(result) => result,
            Err(_) => return Err(LookupError::Temporary("DNS lookup timed out".into())),
        };
        let lookup = result.map_err(|e| self.classify(&e))?;
        let records: Vec<Record> = lookup
            .answers()
            .iter()
            .filter(|r| r.record_type() == rtype)
            .cloned()
            .collect();
        if records.is_empty() {
            return Err(LookupError::NoRecords(self.unvalidated()));
        }
        let security = if self.validating {
            records
                .iter()
                .map(|r| Security::of(r.proof))
                .reduce(Security::min)
                .unwrap_or(Security::Indeterminate)
        } else {
            Security::Insecure
        };
        if security == Security::Bogus {
            return Err(LookupError::Bogus(format!("{rtype} records")));
        }
        Ok(Answer { records, security })
    }

    /// MX records: (preference, exchange without the trailing dot; "" for the null MX ".").
    pub async fn mx(&self, name: &str) -> Result<Answer<(u16, String)>, LookupError> {
        self.typed(name, RecordType::MX, |d| match d {
            RData::MX(mx) => Some((mx.preference, name_text(&mx.exchange))),
            _ => None,
        })
        .await
    }

    /// A and AAAA records, IPv4 first. Secure only when both families are (or the other one is
    /// securely absent).
    pub async fn ips(&self, name: &str) -> Result<Answer<IpAddr>, LookupError> {
        let v4 = self
            .typed(name, RecordType::A, |d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .await;
        let v6 = self
            .typed(name, RecordType::AAAA, |d| match d {
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .await;
        match (v4, v6) {
            (Ok(mut a), Ok(b)) => {
                a.records.extend(b.records);
                a.security = a.security.min(b.security);
                Ok(a)
            }
            (Ok(mut a), Err(e)) | (Err(e), Ok(mut a)) => {
                match e.denial() {
                    Some(s) => a.security = a.security.min(s),
                    // The other family failed: the addresses we have are still good; their
                    // DNSSEC status is the one we could establish.
                    None if matches!(e, LookupError::Bogus(_)) => a.security = Security::Bogus,
                    None => {}
                }
                Ok(a)
            }
            // NXDOMAIN wins over NODATA (the name does not exist at all); any other error is
            // the more informative one.
            (Err(a), Err(b)) => match (&a, &b) {
                (LookupError::NxDomain(_), _) => Err(a),
                (_, LookupError::NxDomain(_)) => Err(b),
                (LookupError::NoRecords(_), _) => Err(b),
                _ => Err(a),
            },
        }
    }

    /// TXT records, each one's strings concatenated (RFC 7208 §3.3, RFC 8461 §3.1).
    pub async fn txt(&self, name: &str) -> Result<Answer<String>, LookupError> {
        self.typed(name, RecordType::TXT, txt_text).await
    }

    /// What the one TXT record of a policy-publishing name (MTA-STS `_mta-sts.`, TLS-RPT
    /// `_smtp._tls.`) says, as `parse` reads it. None when there is no record, and when the
    /// lookup fails or `parse` refuses the records: those two are logged, `what` first.
    pub async fn txt_policy<T, E: std::fmt::Display>(
        &self,
        name: &str,
        what: &str,
        parse: impl FnOnce(&[String]) -> Result<T, E>,
    ) -> Option<T> {
        match self.txt(name).await {
            Ok(answer) => match parse(&answer.records) {
                Ok(policy) => Some(policy),
                Err(e) => {
                    tracing::info!(%name, error = %e, "{what}: unusable TXT record");
                    None
                }
            },
            Err(LookupError::NxDomain(_) | LookupError::NoRecords(_)) => None,
            Err(e) => {
                tracing::info!(%name, error = %e, "{what}: TXT lookup failed");
                None
            }
        }
    }

    /// TLSA records at `name` (e.g. `_25._tcp.mx.example.`).
    pub async fn tlsa(&self, name: &str) -> Result<Answer<TLSA>, LookupError> {
        self.typed(name, RecordType::TLSA, |d| match d {
            RData::TLSA(tlsa) => Some(tlsa.clone()),
            _ => None,
        })
        .await
    }

    async fn typed<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, LookupError> {
        let answer = self.lookup(name, rtype).await?;
        Ok(Answer {
            records: answer
                .records
                .iter()
                .filter_map(|r| pick(&r.data))
                .collect(),
            security: answer.security,
        })
    }

    fn unvalidated(&self) -> Security {
        if self.validating {
            Security::Indeterminate
        } else {
            Security::Insecure
        }
    }

    /// Maps hickory's errors to ours, with the DNSSEC status of denials.
    fn classify(&self, error: &NetError) -> LookupError {
        match error {
            NetError::Dns(DnsError::NoRecordsFound(no)) => {
                let security = if !self.validating {
                    Security::Insecure
                } else {
                    match &no.authorities {
                        Some(auth) if !auth.is_empty() => auth
                            .iter()
                            .map(|r| Security::of(r.proof))
                            .reduce(Security::min)
                            .unwrap_or(Security::Indeterminate),
                        _ => Security::Indeterminate,
                    }
                };
                if security == Security::Bogus {
                    return LookupError::Bogus(error.to_string());
                }
                if error.is_nx_domain() {
                    LookupError::NxDomain(security)
                } else {
                    LookupError::NoRecords(security)
                }
            }
            NetError::Dns(DnsError::Nsec {
                proof, response, ..
            }) => match Security::of(*proof) {
                Security::Bogus => LookupError::Bogus(error.to_string()),
                security => {
                    if response.response_code == hickory_resolver::proto::op::ResponseCode::NXDomain
                    {
                        LookupError::NxDomain(security)
                    } else {
                        LookupError::NoRecords(security)
                    }
                }
            },
            NetError::Dns(DnsError::DnssecBogus) => LookupError::Bogus(error.to_string()),
            other if other.is_nx_domain() => LookupError::NxDomain(self.unvalidated()),
            other if other.is_no_records_found() => LookupError::NoRecords(self.unvalidated()),
            other => LookupError::Temporary(other.to_string()),
        }
    }
}

/// Whether a trust-anchor file has any record at all (an empty anchor set is a mistake).
fn has_any_key(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.contains("DNSKEY"))
        .unwrap_or(false)
}

/// A name as text without the trailing dot, its labels' octets as they are (to_ascii() would
/// escape `foo:bar` as `foo\:bar`, which then names something else when looked up again).
pub fn name_text(name: &Name) -> String {
    name.iter()
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// `name` as a DNS name. Host names parse as such; a name with other octets in its labels (SPF
/// builds names from macros, RFC 7208 §7: `foo:bar/baz.example.com`, spaces, '%') is taken
/// label by label as raw octets, as DNS allows.
fn dns_name(name: &str) -> Result<Name, String> {
    if let Ok(parsed) = Name::from_ascii(absolute(name)) {
        return Ok(parsed);
    }
    let mut raw = Name::from_labels(name.trim_end_matches('.').split('.').map(str::as_bytes))
        .map_err(|e| e.to_string())?;
    raw.set_fqdn(true);
    Ok(raw)
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A hickory resolver builder for `[dns]`: the configured name servers (UDP, and TCP for
/// truncated and DNSSEC answers) or the system's, the timeout and attempts, ndots 0. Shared by
/// [`Resolver`] and mail-auth's own resolver (mail-auth owns its hickory resolver).
pub fn builder(config: &DnsConfig) -> hickory_resolver::ResolverBuilder<TokioRuntimeProvider> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if config.nameservers.is_empty() {
        match TokioResolver::builder(provider.clone()) {
            Ok(builder) => builder,
            // No usable /etc/resolv.conf: start anyway; lookups fail temporarily (mail
            // defers) until name servers are configured.
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration; DNS lookups will fail");
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(Vec::new()),
                    provider,
                )
            }
        }
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let options = builder.options_mut();
    options.timeout = config.timeout;
    options.attempts = config.attempts.max(1);
    // Every name the server looks up is absolute: never try search domains.
    options.ndots = 0;
    builder
}

/// A TXT record's strings concatenated into one text (RFC 7208 §3.3, RFC 8461 §3.1); `None`
/// for other records. The plugins' `dns` import answers with the same text.
pub fn txt_text(data: &RData) -> Option<String> {
    match data {
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|part| String::from_utf8_lossy(part))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weakest_status_wins() {
        use Security::*;
        assert_eq!(Secure.min(Insecure), Insecure);
        assert_eq!(Insecure.min(Bogus), Bogus);
        assert_eq!(Secure.min(Secure), Secure);
        assert_eq!(Indeterminate.min(Secure), Indeterminate);
    }

    #[tokio::test]
    async fn builds_from_config_and_rejects_a_bad_anchor_file() {
        let config = DnsConfig {
            nameservers: vec!["127.0.0.1:5353".parse().unwrap()],
            ..DnsConfig::default()
        };
        let r = Resolver::from_config(&config).unwrap();
        assert!(!r.is_validating());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors");
        std::fs::write(&path, "not a zone file (\n").unwrap();
        let bad = DnsConfig {
            dnssec: true,
            trust_anchors: Some(path),
            ..config
        };
        assert!(Resolver::from_config(&bad).is_err());
    }
}
