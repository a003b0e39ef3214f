//! Delivery to a domain's mail exchangers (RFC 5321 §5.1).
//!
//! MX records are tried by preference, in random order among equal preferences; a domain with no
//! MX record is its own mail exchanger (implicit MX, via its A/AAAA records); a null MX
//! (RFC 7505, a single MX with exchange ".") fails at once with 5.1.10. When a host cannot be
//! reached, or answers with 4xx, the recipients still deferred go to the next host.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use rand::seq::SliceRandom;

use super::smtp_client::{ClientConfig, Connection, Failure, send_and_quit};
use super::{Attempt, Outbound, RecipientOutcome};
use crate::policy::{Recipient, Reply};

/// How MX hosts are found and reached. Deserializable for a configuration table, e.g.
/// `nameservers = ["127.0.0.1:5353"]`, `dns_timeout = 5` (seconds).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MxConfig {
    /// Name servers to ask (UDP, TCP on truncation). Empty: the system's (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// Per-query timeout.
    #[serde(with = "super::smtp_client::seconds")]
    pub dns_timeout: Duration,
    /// The SMTP port of MX hosts: 25 (other values are for tests).
    pub smtp_port: u16,
    /// At most this many MX hosts are tried per attempt (Postfix: 5).
    pub max_hosts: usize,
}

impl Default for MxConfig {
    fn default() -> Self {
        MxConfig {
            nameservers: Vec::new(),
            dns_timeout: Duration::from_secs(5),
            smtp_port: 25,
            max_hosts: 5,
        }
    }
}

/// One mail exchanger, in the order it is to be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Host name without the trailing dot, or the domain itself for an implicit MX.
    pub name: String,
    pub preference: u16,
    /// True when the domain has no MX record and is its own exchanger.
    pub implicit: bool,
}

pub struct MxResolver {
    resolver: TokioResolver,
    config: MxConfig,
}

impl MxResolver {
    pub fn new(config: MxConfig) -> Result<MxResolver, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            match TokioResolver::builder(provider.clone()) {
                Ok(builder) => builder,
                // No usable /etc/resolv.conf: start anyway; MX lookups defer (4.4.3) until
                // nameservers are configured, local and relayed mail is unaffected.
                Err(e) => {
                    tracing::warn!(error = %e, "no system DNS configuration; MX delivery will defer");
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
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = config.dns_timeout;
        // Names are absolute; never try search domains.
        options.ndots = 0;
        let resolver = builder.build().map_err(|e| format!("resolver: {e}"))?;
        Ok(MxResolver { resolver, config })
    }

    /// The ordered list of mail exchangers for `domain`.
    pub async fn hosts(&self, domain: &str) -> Result<Vec<MxHost>, Failure> {
        let fqdn = absolute(domain);
        let lookup = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_nx_domain() => {
                return Err(Failure::Permanent(Reply::new(
                    550,
                    "5.1.2",
                    format!("domain {domain} does not exist"),
                )));
            }
            Err(e) if e.is_no_records_found() => {
                return Ok(vec![MxHost {
                    name: domain.trim_end_matches('.').to_string(),
                    preference: 0,
                    implicit: true,
                }]);
            }
            Err(e) => return Err(dns_failure(domain, "MX", &e)),
        };
        let records: Vec<(u16, String, bool)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                    mx.exchange.is_root(),
                )),
                _ => None,
            })
            .collect();
        if records.is_empty() {
            return Ok(vec![MxHost {
                name: domain.trim_end_matches('.').to_string(),
                preference: 0,
                implicit: true,
            }]);
        }
        // RFC 7505 §3: one record, exchange "." -> the domain takes no mail. A "." among other
        // records is a misconfiguration; the real hosts are still used.
        if records.iter().all(|(_, _, root)| *root) {
            return Err(Failure::Permanent(Reply::new(
                556,
                "5.1.10",
                format!("domain {domain} does not accept mail (null MX)"),
            )));
        }
        let mut hosts: Vec<MxHost> = records
            .into_iter()
            .filter(|(_, _, root)| !root)
            .map(|(preference, name, _)| MxHost {
                name,
                preference,
                implicit: false,
            })
            .collect();
        hosts.shuffle(&mut rand::rng());
        hosts.sort_by_key(|h| h.preference); // stable: equal preferences stay shuffled
        Ok(hosts)
    }

    /// The addresses of one host, IPv4 first.
    pub async fn addresses(&self, host: &MxHost) -> Result<Vec<IpAddr>, Failure> {
        if let Some(ip) = literal(&host.name) {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(absolute(&host.name).as_str()).await {
            Ok(ips) => Ok(ips.iter().collect()),
            // A domain without MX and without address takes no mail.
            Err(e) if host.implicit && (e.is_nx_domain() || e.is_no_records_found()) => {
                Err(Failure::Permanent(Reply::new(
                    550,
                    "5.1.2",
                    format!("domain {} has no mail exchanger and no address", host.name),
                )))
            }
            Err(e) => Err(dns_failure(&host.name, "A/AAAA", &e)),
        }
    }

    /// Delivers to `domain`: host by host, address by address, until every recipient is decided
    /// or the hosts run out. Recipients deferred by one host are offered to the next.
    pub async fn deliver(
        &self,
        domain: &str,
        config: &ClientConfig,
        out: &Outbound<'_>,
    ) -> Attempt {
        let hosts = match literal(domain) {
            Some(_) => vec![MxHost {
                name: domain.to_string(),
                preference: 0,
                implicit: true,
            }],
            None => match self.hosts(domain).await {
                Ok(hosts) => hosts,
                Err(failure) => return Attempt::all(out, failure.outcome()),
            },
        };
        let mut outcomes: Vec<Option<RecipientOutcome>> = vec![None; out.recipients.len()];
        let mut report = Attempt {
            outcomes: Vec::new(),
            remote_mta: None,
            dsn_passed_on: false,
        };
        let mut last_failure = Failure::Transient(Reply::new(
            451,
            "4.4.4",
            format!("no mail exchanger of {domain} could be tried"),
        ));
        'hosts: for host in hosts.iter().take(self.config.max_hosts.max(1)) {
            let addrs = match self.addresses(host).await {
                Ok(addrs) => addrs,
                Err(failure) => {
                    last_failure = failure;
                    continue;
                }
            };
            for ip in addrs {
                let addr = SocketAddr::new(ip, self.config.smtp_port);
                let conn = match Connection::connect(addr, &host.name, config).await {
                    Ok(conn) => conn,
                    Err(failure) => {
                        tracing::debug!(host = %host.name, %addr, reply = ?failure.reply(), "MX host failed");
                        last_failure = failure;
                        continue;
                    }
                };
                // Only recipients not yet decided: delivered and failed ones stay as they are.
                let pending: Vec<usize> = (0..out.recipients.len())
                    .filter(|&i| !is_final(outcomes[i].as_ref()))
                    .collect();
                let recipients: Vec<Recipient> =
                    pending.iter().map(|&i| out.recipients[i].clone()).collect();
                let attempt = Outbound {
                    recipients: &recipients,
                    ..out.clone()
                };
                let sent = send_and_quit(conn, &attempt).await;
                report.remote_mta = sent.remote_mta.clone();
                report.dsn_passed_on |= sent.dsn_passed_on;
                for (&i, outcome) in pending.iter().zip(sent.outcomes) {
                    outcomes[i] = Some(outcome);
                }
                if outcomes.iter().all(|o| is_final(o.as_ref())) {
                    break 'hosts;
                }
                // Spoke to this host; recipients it deferred go to the next host.
                continue 'hosts;
            }
        }
        report.outcomes = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| last_failure.outcome()))
            .collect();
        report
    }
}

fn is_final(outcome: Option<&RecipientOutcome>) -> bool {
    matches!(
        outcome,
        Some(RecipientOutcome::Delivered(_) | RecipientOutcome::Failed(_))
    )
}

fn dns_failure(name: &str, kind: &str, error: &NetError) -> Failure {
    Failure::Transient(Reply::new(
        451,
        "4.4.3",
        format!("DNS {kind} lookup of {name} failed: {error}"),
    ))
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// An address literal "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3).
fn literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals() {
        assert_eq!(literal("[127.0.0.1]"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(literal("[IPv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal("example.test"), None);
        assert_eq!(absolute("a.test"), "a.test.");
    }

    #[test]
    fn config_from_toml() {
        let c: MxConfig =
            toml::from_str("nameservers = [\"127.0.0.1:5353\"]\ndns_timeout = 2").unwrap();
        assert_eq!(c.nameservers, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(c.dns_timeout, Duration::from_secs(2));
        assert_eq!((c.smtp_port, c.max_hosts), (25, 5));
    }
}
