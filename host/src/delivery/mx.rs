//! Delivery to a domain's mail exchangers (RFC 5321 §5.1).
//!
//! MX records are tried by preference, in random order among equal preferences; a domain with no
//! MX record is its own mail exchanger (implicit MX, via its A/AAAA records); a null MX
//! (RFC 7505, a single MX with exchange ".") fails at once with 5.1.10. When a host cannot be
//! reached, or answers with 4xx, the recipients still deferred go to the next host.
//!
//! With a [`SessionPool`] (the server's agents have one), a session to an MX host outlives the
//! delivery: the next delivery to the same host and address under the same TLS policy (DANE with
//! the same TLSA records, MTA-STS enforce or testing, or opportunistic) goes over it, whichever
//! domain it is for, so many domains hosted by one provider share its sessions. The TLS policy
//! is part of the pool's key so a session set up under a weaker policy never carries mail that
//! needs a stronger one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use rand::seq::SliceRandom;

use super::contract::{Attempt, Outbound, RecipientOutcome};
use super::dane::{self, DaneMode, Tlsa};
use super::mta_sts::Mode as StsMode;
use super::pool::SessionPool;
use super::smtp_client::{ClientConfig, Connection, Failure, TlsVerify, outcome_of, send_and_quit};
use super::tls_rpt::{self, TlsRpt};
use crate::dns::{LookupError, Resolver};
use crate::policy::{Recipient, Reply, TlsPolicy};

/// How MX hosts are found and reached. Deserializable for a configuration table, e.g.
/// `nameservers = ["127.0.0.1:5353"]`, `dns_timeout = 5` (seconds). `nameservers` and
/// `dns_timeout` only matter to [`MxResolver::new`]; the server builds its [`MxResolver`] with
/// [`MxResolver::with_resolver`] from the shared `[dns]` resolver.
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
    /// The MX RRset (or, for an implicit MX, nothing yet) was DNSSEC-secure: a precondition of
    /// DANE (RFC 7672 §2.2.1).
    pub secure: bool,
}

pub struct MxResolver {
    resolver: Arc<Resolver>,
    config: MxConfig,
    /// Where the result of each session goes for TLS reports (RFC 8460), if they are on.
    tls_rpt: Option<Arc<TlsRpt>>,
    /// Idle sessions reused by the next delivery to the same host (none: one session each).
    sessions: Option<Arc<SessionPool>>,
}

impl MxResolver {
    /// A resolver of its own, from `config.nameservers` and `config.dns_timeout` (tests, tools).
    pub fn new(config: MxConfig) -> Result<MxResolver, String> {
        let dns = crate::config::dns::DnsConfig {
            nameservers: config.nameservers.clone(),
            timeout: config.dns_timeout,
            ..Default::default()
        };
        Ok(MxResolver::with_resolver(
            Resolver::from_config(&dns)?,
            config,
        ))
    }

    /// Lookups through the server's shared resolver.
    pub fn with_resolver(resolver: Arc<Resolver>, config: MxConfig) -> MxResolver {
        MxResolver {
            resolver,
            config,
            tls_rpt: None,
            sessions: None,
        }
    }

    /// Keeps sessions in `pool` for the next delivery to the same host (see the module doc).
    pub fn with_sessions(mut self, pool: Option<Arc<SessionPool>>) -> MxResolver {
        self.sessions = pool;
        self
    }

    /// Records the TLS result of every session in `store` (TLS-RPT).
    pub fn with_tls_rpt(mut self, store: Option<Arc<TlsRpt>>) -> MxResolver {
        self.tls_rpt = store;
        self
    }

    /// The shared resolver (DANE asks it for TLSA records).
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// The ordered list of mail exchangers for `domain`.
    pub async fn hosts(&self, domain: &str) -> Result<Vec<MxHost>, Failure> {
        let secure;
        let records: Vec<(u16, String, bool)> = match self.resolver.mx(domain).await {
            Ok(answer) => {
                secure = answer.security.is_secure();
                answer
                    .records
                    .into_iter()
                    .map(|(preference, exchange)| {
                        let root = exchange.is_empty();
                        (preference, exchange, root)
                    })
                    .collect()
            }
            Err(LookupError::NxDomain(_)) => {
                return Err(Failure::Permanent(Reply::new(
                    550,
                    "5.1.2",
                    format!("domain {domain} does not exist"),
                )));
            }
            Err(LookupError::NoRecords(denial)) => {
                secure = denial.is_secure();
                Vec::new()
            }
            Err(e) => return Err(dns_failure(domain, "MX", &e)),
        };
        if records.is_empty() {
            return Ok(vec![MxHost {
                name: domain.trim_end_matches('.').to_string(),
                preference: 0,
                implicit: true,
                secure,
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
                secure,
            })
            .collect();
        hosts.shuffle(&mut rand::rng());
        hosts.sort_by_key(|h| h.preference); // stable: equal preferences stay shuffled
        Ok(hosts)
    }

    /// The addresses of one host, IPv4 first.
    pub async fn addresses(&self, host: &MxHost) -> Result<Vec<IpAddr>, Failure> {
        self.addresses_secure(host).await.map(|(ips, _)| ips)
    }

    /// The addresses of one host, IPv4 first, and whether they were DNSSEC-secure.
    async fn addresses_secure(&self, host: &MxHost) -> Result<(Vec<IpAddr>, bool), Failure> {
        if let Some(ip) = literal(&host.name) {
            return Ok((vec![ip], false));
        }
        match self.resolver.ips(&host.name).await {
            Ok(answer) => Ok((answer.records, answer.security.is_secure())),
            // A domain without MX and without address takes no mail.
            Err(LookupError::NxDomain(_) | LookupError::NoRecords(_)) if host.implicit => {
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
        self.deliver_with_policy(domain, config, out, None).await
    }

    /// [`MxResolver::deliver`] under the domain's MTA-STS policy, if it has one: `enforce`
    /// skips hosts the policy does not list and requires a verified certificate; `testing`
    /// checks and logs. DANE, where it applies, wins over the policy.
    pub async fn deliver_with_policy(
        &self,
        domain: &str,
        config: &ClientConfig,
        out: &Outbound<'_>,
        mta_sts: Option<&super::mta_sts::MtaSts>,
    ) -> Attempt {
        let hosts = match literal(domain) {
            Some(_) => vec![MxHost {
                name: domain.to_string(),
                preference: 0,
                implicit: true,
                secure: false,
            }],
            None => match self.hosts(domain).await {
                Ok(hosts) => hosts,
                Err(failure) => return Attempt::all(out, failure.outcome()),
            },
        };
        // RFC 5321 §5.1: we are one of the exchangers; only better ones may be tried, or the
        // mail would loop back to us.
        let ours = hosts
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(&config.helo_name))
            .map(|h| h.preference);
        let hosts: Vec<MxHost> = match ours {
            Some(p) => hosts.into_iter().filter(|h| h.preference < p).collect(),
            None => hosts,
        };
        if hosts.is_empty() {
            let why = format!("mail for {domain} loops back to myself");
            return no_host_left(out, Reply::new(554, "5.4.6", why));
        }
        // The policy is looked up once the domain is known to have mail exchangers.
        let (sts, sts_error) = match mta_sts {
            Some(m) => m.applied_reporting(domain).await,
            None => (None, None),
        };
        let sts = sts.as_ref();
        // TLS-RPT: the policy each session is made under (DANE overrides it per host below).
        let domain_policy = match sts {
            Some(s) => tls_rpt::Policy::sts(domain, s.policy.lines(), s.policy.mx.clone()),
            None => tls_rpt::Policy::none(domain),
        };
        if let (Some(store), Some(error)) = (&self.tls_rpt, &sts_error) {
            // The policy could not be had (a cached one may still apply): reported once per
            // delivery attempt, under the sts policy type.
            let policy = match sts {
                Some(_) => domain_policy.clone(),
                None => tls_rpt::Policy::sts(domain, Vec::new(), Vec::new()),
            };
            let host = format!("mta-sts.{domain}");
            store.failure(
                &policy,
                tls_rpt::Failure::new(error.result_type(), &host, None),
            );
        }
        let enforce = sts.filter(|s| s.policy.mode == StsMode::Enforce);
        let hosts: Vec<MxHost> = match enforce {
            Some(sts) => {
                let (allowed, refused): (Vec<MxHost>, Vec<MxHost>) = hosts
                    .into_iter()
                    .partition(|h| sts.policy.allows_mx(&h.name));
                for h in &refused {
                    tracing::info!(%domain, host = %h.name, "MTA-STS: MX host not in the policy, skipped");
                }
                allowed
            }
            None => hosts,
        };
        if hosts.is_empty() {
            let why =
                format!("no MX host of {domain} matches its MTA-STS policy (sts-policy-invalid)");
            return no_host_left(out, Reply::new(451, "4.7.5", why));
        }
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
            let (addrs, addrs_secure) = match self.addresses_secure(host).await {
                Ok(found) => found,
                Err(failure) => {
                    last_failure = failure;
                    continue;
                }
            };
            // DANE: TLS authenticated by TLSA records where the host publishes them securely.
            let (dane_config, policy, dane_label) = match self
                .dane(
                    host,
                    host.secure && addrs_secure,
                    self.config.smtp_port,
                    config,
                )
                .await
            {
                Ok(Some((c, records))) => {
                    let label = format!("dane {}", records.join(","));
                    let policy = tls_rpt::Policy::tlsa(domain, &host.name, records);
                    (Some(c), policy, Some(label))
                }
                Ok(None) => (None, domain_policy.clone(), None),
                Err((failure, result)) => {
                    tracing::info!(host = %host.name, reply = ?failure.reply(), "DANE: host skipped");
                    if let Some(store) = &self.tls_rpt {
                        let policy = tls_rpt::Policy::tlsa(domain, &host.name, Vec::new());
                        let ip = addrs.first().copied();
                        store.failure(&policy, tls_rpt::Failure::new(result, &host.name, ip));
                    }
                    last_failure = failure;
                    continue;
                }
            };
            // Without DANE, an MTA-STS policy decides how the certificate is checked.
            let sts_config = match (&dane_config, sts) {
                (None, Some(sts)) if sts.policy.mode != StsMode::None => {
                    let mut c = config.clone();
                    if sts.policy.mode == StsMode::Enforce {
                        c.tls = TlsPolicy::Required;
                        c.tls_verify = TlsVerify::Verify(sts.enforce_tls.clone());
                    } else {
                        c.tls_verify = TlsVerify::Testing(sts.testing_tls.clone());
                    }
                    Some(c)
                }
                _ => None,
            };
            // A `testing` policy's refusals are failures for TLS-RPT, though the mail goes on.
            let testing = match (&dane_config, sts) {
                (None, Some(s)) if s.policy.mode == StsMode::Testing => Some(s),
                _ => None,
            };
            // What a reused session must have been set up under (see the module doc).
            let tls_label = match (&dane_label, sts) {
                (Some(label), _) => label.clone(),
                (None, Some(sts)) if sts.policy.mode == StsMode::Enforce => "sts-enforce".into(),
                (None, Some(sts)) if sts.policy.mode == StsMode::Testing => "sts-testing".into(),
                _ => format!("{:?}", config.tls).to_ascii_lowercase(),
            };
            let config = dane_config
                .as_ref()
                .or(sts_config.as_ref())
                .unwrap_or(config);
            for ip in addrs {
                let addr = SocketAddr::new(ip, self.config.smtp_port);
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
                let key = format!("mx:{}:{addr}:{tls_label}", host.name.to_ascii_lowercase());
                // TLS-RPT counts each delivery's session, reused or new, under this domain's
                // policy (a reused session may have been opened for another domain). Sessions
                // under a `testing` policy are not pooled: what the policy would have refused is
                // known only from the handshake of this attempt (its TestingRefusals).
                let pool = if testing.is_some() {
                    None
                } else {
                    self.sessions.as_ref()
                };
                let reused = match pool {
                    Some(pool) => {
                        let record = |conn: &Connection| {
                            self.record_session(&policy, &host.name, ip, conn, None)
                        };
                        pool.send_idle(&key, &attempt, record).await
                    }
                    None => None,
                };
                let sent = match reused {
                    Some(sent) => sent,
                    None => {
                        let conn = match Connection::connect_reporting(addr, &host.name, config)
                            .await
                        {
                            Ok(conn) => {
                                let refused = testing.and_then(|s| s.testing_refusal(&host.name));
                                self.record_session(&policy, &host.name, ip, &conn, refused);
                                conn
                            }
                            Err(e) => {
                                tracing::debug!(host = %host.name, %addr, reply = ?e.failure.reply(), "MX host failed");
                                if let (Some(store), Some(result)) = (&self.tls_rpt, e.tls_result) {
                                    store.failure(
                                        &policy,
                                        tls_rpt::Failure::new(result, &host.name, Some(ip)),
                                    );
                                }
                                last_failure = e.failure;
                                continue;
                            }
                        };
                        match pool {
                            Some(pool) => pool.send_new(&key, conn, &attempt).await,
                            None => send_and_quit(conn, &attempt).await,
                        }
                    }
                };
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

impl MxResolver {
    /// DANE for a relay (RFC 7672 §2.2 with the configured host as the TLSA base domain): its
    /// addresses through `[dns]`, and when they are DNSSEC-secure its TLSA records at
    /// `_<port>._tcp.<host>`. `Some((config, addresses))`: TLS required and authenticated by
    /// them; `None`: DANE does not apply (the relay's other settings decide); an error: defer
    /// (bogus answers, or `dane = "required"` without usable records).
    pub async fn relay_dane(
        &self,
        host: &str,
        port: u16,
        config: &ClientConfig,
    ) -> Result<Option<(ClientConfig, Vec<IpAddr>)>, Failure> {
        let relay = MxHost {
            name: host.trim_end_matches('.').to_string(),
            preference: 0,
            implicit: false,
            secure: true,
        };
        let (addrs, secure) = match literal(host).or_else(|| host.parse().ok()) {
            Some(ip) => (vec![ip], false),
            None => match self.resolver.ips(&relay.name).await {
                Ok(answer) => (answer.records, answer.security.is_secure()),
                Err(e) => return Err(dns_failure(&relay.name, "A/AAAA", &e)),
            },
        };
        match self.dane(&relay, secure, port, config).await {
            Ok(Some((c, _))) => Ok(Some((c, addrs))),
            Ok(None) => Ok(None),
            Err((failure, _)) => Err(failure),
        }
    }

    /// TLS-RPT: a session that was set up counts as a success when it runs over TLS that met
    /// the policy; one that fell back to plain text (or never had STARTTLS) is a failure with
    /// the reason, and so is one a `testing` policy would have refused (`refused`).
    fn record_session(
        &self,
        policy: &tls_rpt::Policy,
        host: &str,
        ip: IpAddr,
        conn: &Connection,
        refused: Option<&'static str>,
    ) {
        let Some(store) = &self.tls_rpt else {
            return;
        };
        let failure = match conn.is_tls() {
            true => refused,
            false => Some(conn.tls_failure().unwrap_or("starttls-not-supported")),
        };
        match failure {
            None => store.success(policy),
            Some(result) => store.failure(policy, tls_rpt::Failure::new(result, host, Some(ip))),
        }
    }

    /// The client configuration for `host` under DANE (RFC 7672 §2.2): `Some` (TLS required,
    /// authenticated by the host's TLSA records) when the MX and address lookups were secure
    /// and `_PORT._tcp.HOST` has secure, usable TLSA records; `None` (opportunistic TLS) when
    /// DANE does not apply; an error (skip the host) when the TLSA answer is bogus or cannot be
    /// had, or when `dane = "required"` and DANE does not apply. `Some` carries the TLSA records
    /// in presentation form and an error its RFC 8460 result type, for TLS-RPT.
    async fn dane(
        &self,
        host: &MxHost,
        chain_secure: bool,
        port: u16,
        config: &ClientConfig,
    ) -> Result<Option<(ClientConfig, Vec<String>)>, (Failure, &'static str)> {
        let required = config.dane == DaneMode::Required;
        let not_applicable = |why: String| {
            if required {
                Err((
                    Failure::Transient(Reply::new(
                        451,
                        "4.7.5",
                        format!("DANE is required for {}, but {why}", host.name),
                    )),
                    "dane-required",
                ))
            } else {
                Ok(None)
            }
        };
        if config.dane == DaneMode::Off {
            return Ok(None);
        }
        if !self.resolver.is_validating() {
            return not_applicable("DNSSEC validation is off ([dns] dnssec = false)".into());
        }
        if !chain_secure {
            return not_applicable("its MX or address records are not DNSSEC-signed".into());
        }
        let name = format!("_{port}._tcp.{}", host.name);
        let answer = match self.resolver.tlsa(&name).await {
            Ok(answer) => answer,
            Err(LookupError::NxDomain(_) | LookupError::NoRecords(_)) => {
                return not_applicable(format!("{name} has no TLSA records"));
            }
            // No usable answer (bogus, or the lookup failed) is no proof of "no TLSA records".
            Err(e) => {
                let why = match e {
                    LookupError::Bogus(e) => {
                        format!("TLSA records {name} failed DNSSEC validation: {e}")
                    }
                    e => format!("TLSA lookup of {name} failed: {e}"),
                };
                let reply = Reply::new(451, "4.7.5", why);
                return Err((Failure::Transient(reply), "dnssec-invalid"));
            }
        };
        if !answer.security.is_secure() {
            return not_applicable(format!("the TLSA records {name} are not DNSSEC-secure"));
        }
        let records: Vec<Tlsa> = answer.records.iter().map(Tlsa::from_record).collect();
        match dane::client_config(&records, super::smtp_client::tls::provider()) {
            Some(tls) => {
                tracing::info!(host = %host.name, tlsa = %name, "DANE: TLS authenticated by TLSA records");
                let mut c = config.clone();
                c.tls = TlsPolicy::Required;
                c.tls_verify = TlsVerify::Dane(tls);
                let text = records.iter().map(Tlsa::presentation).collect();
                Ok(Some((c, text)))
            }
            None => not_applicable(format!("{name} has no usable TLSA record")),
        }
    }
}

fn is_final(outcome: Option<&RecipientOutcome>) -> bool {
    matches!(
        outcome,
        Some(RecipientOutcome::Delivered(_) | RecipientOutcome::Failed(_))
    )
}

fn dns_failure(name: &str, kind: &str, error: &LookupError) -> Failure {
    // A bogus answer may be an attack (RFC 7672 §2.2.1): a security failure, not a DNS outage.
    let status = match error {
        LookupError::Bogus(_) => "4.7.5",
        _ => "4.4.3",
    };
    Failure::Transient(Reply::new(
        451,
        status,
        format!("DNS {kind} lookup of {name} failed: {error}"),
    ))
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

/// A filter left no MX host to try: every recipient gets `reply` (failed for a 5xx, deferred
/// for a 4xx).
fn no_host_left(out: &Outbound<'_>, reply: Reply) -> Attempt {
    Attempt::all(out, outcome_of(&reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals() {
        assert_eq!(literal("[127.0.0.1]"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(literal("[IPv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal("example.test"), None);
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
