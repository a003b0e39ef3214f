//! [`DeliveryAgents`]: the queue's [`Agents`] with every destination wired: Maildir (local), LMTP,
//! relays/smarthosts and MX.
//!
//! Sessions to relays, LMTP servers and MX hosts are kept open for a short while after a
//! delivery and reused by the next delivery to the same place (starting with a pipelined RSET),
//! so a busy smarthost or a big mailbox provider costs one connection per concurrent delivery
//! rather than one per message. One [`SessionPool`] holds them all; an MX session is shared by
//! every domain whose mail goes to that host and address under the same TLS policy (see `mx`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::contract::{Agents, Attempt, Destination, Outbound, RecipientOutcome};
use super::dane::DaneMode;
use super::lmtp::{self, LmtpTarget};
use super::maildir::Maildir;
use super::mta_sts::MtaSts;
use super::mx::{MxConfig, MxResolver};
use super::pool::{PoolSettings, SessionPool};
use super::smtp_client::{
    self, ClientConfig, Connection, Failure, RelayCredentials, Timeouts, TlsVerify,
};
use crate::config::queue::RoutesConfig;
use crate::policy::{RelayTarget, Reply, TlsPolicy};

/// What [`DeliveryAgents`] needs besides the Maildir.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Our name in EHLO/LHLO.
    pub hostname: String,
    pub timeouts: Timeouts,
    /// Certificate settings of configured relays by (host, port); a relay not listed (e.g. one a
    /// route hook chose) gets the defaults: verified against the system roots.
    pub relay_tls: HashMap<(String, u16), RelayTls>,
    /// MTA-STS (`[mta_sts]`) and where its policies are cached (`<state>/mta-sts`).
    pub mta_sts: crate::config::mta_sts::MtaStsConfig,
    pub mta_sts_cache: Option<PathBuf>,
    /// TLS-RPT (`[tls_rpt]`): where MX sessions' TLS results are recorded, if reports are on.
    pub tls_rpt: Option<std::sync::Arc<super::tls_rpt::TlsRpt>>,
    /// DANE for MX delivery per domain (`[routes] dane`, `[routes.domains.X] dane`).
    pub routes: RoutesConfig,
    /// `[routes.credentials.NAME]` by name.
    pub credentials: BTreeMap<String, RelayCredentials>,
    pub mx: MxConfig,
    /// The server's shared resolver for MX lookups; `None`: one of its own from `mx`.
    pub resolver: Option<std::sync::Arc<crate::dns::Resolver>>,
    /// Use BDAT when offered.
    pub chunking: bool,
    /// Session reuse for relays, LMTP and MX: idle time, idle sessions per place, messages per
    /// session.
    pub sessions: PoolSettings,
    pub max_recipients: usize,
}

impl RemoteSettings {
    pub fn new(hostname: impl Into<String>) -> RemoteSettings {
        RemoteSettings {
            hostname: hostname.into(),
            timeouts: Timeouts::default(),
            relay_tls: HashMap::new(),
            routes: RoutesConfig::default(),
            mta_sts: crate::config::mta_sts::MtaStsConfig::default(),
            mta_sts_cache: None,
            tls_rpt: None,
            credentials: BTreeMap::new(),
            mx: MxConfig::default(),
            resolver: None,
            chunking: true,
            sessions: PoolSettings::default(),
            max_recipients: 100,
        }
    }

    /// Takes the named credentials and the relays' certificate settings of the route table.
    pub fn with_routes(mut self, routes: &RoutesConfig) -> RemoteSettings {
        self.routes = routes.clone();
        let relays = routes
            .smarthost
            .iter()
            .chain(routes.domains.values().filter_map(|d| d.relay.as_ref()));
        for relay in relays {
            let tls = RelayTls {
                verify: relay.verify,
                ca_file: relay.ca_file.clone(),
                dane: relay.dane,
            };
            self.relay_tls.insert((relay.host.clone(), relay.port), tls);
        }
        self.credentials = routes
            .credentials
            .iter()
            .map(|(name, c)| {
                let creds = RelayCredentials {
                    username: c.username.clone(),
                    password: c.password.clone(),
                    mechanism: None,
                };
                (name.clone(), creds)
            })
            .collect();
        self
    }
}

/// How a relay's certificate is checked (`verify`, `ca_file` of its `[routes]` entry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayTls {
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
    /// DANE for the relay (`dane` of its `[routes]` entry).
    pub dane: DaneMode,
}

impl Default for RelayTls {
    fn default() -> Self {
        RelayTls {
            verify: true,
            ca_file: None,
            dane: DaneMode::Off,
        }
    }
}

/// Connects to the first of `addrs` that answers (addresses from our own resolver).
async fn connect_addresses(
    addrs: &[std::net::IpAddr],
    host: &str,
    port: u16,
    config: &ClientConfig,
) -> Result<Connection, Failure> {
    let mut last = Failure::Transient(Reply::new(
        451,
        "4.4.3",
        format!("relay {host} has no address"),
    ));
    for ip in addrs {
        match Connection::connect(std::net::SocketAddr::new(*ip, port), host, config).await {
            Ok(conn) => return Ok(conn),
            Err(f @ Failure::Permanent(_)) => return Err(f),
            Err(f) => last = f,
        }
    }
    Err(last)
}

/// Whether the message's header has `TLS-Required: No` (RFC 8689 §5).
pub fn tls_required_no(message: &[u8]) -> bool {
    let header = crate::mail::header::section(message);
    crate::mail::header::find(header, "TLS-Required")
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("no"))
}

pub struct DeliveryAgents {
    maildir: Maildir,
    settings: RemoteSettings,
    mx: MxResolver,
    mta_sts: std::sync::Arc<MtaSts>,
    sessions: Arc<SessionPool>,
    /// Verifying client configurations by CA file (the system roots are loaded once).
    verifiers: Mutex<HashMap<Option<PathBuf>, TlsVerify>>,
}

impl DeliveryAgents {
    pub fn new(maildir: Maildir, settings: RemoteSettings) -> Result<DeliveryAgents, String> {
        let sessions = SessionPool::start(settings.sessions.clone());
        let mx = match &settings.resolver {
            Some(resolver) => MxResolver::with_resolver(resolver.clone(), settings.mx.clone()),
            None => MxResolver::new(settings.mx.clone())?,
        }
        .with_tls_rpt(settings.tls_rpt.clone())
        .with_sessions(Some(sessions.clone()));
        let mta_sts = std::sync::Arc::new(MtaSts::new(
            mx.resolver().clone(),
            settings.mta_sts.clone(),
            settings.mta_sts_cache.clone(),
        )?);
        // Cached policies are kept fresh in the background (RFC 8461 §5.1).
        MtaSts::spawn_refresh(&mta_sts);
        Ok(DeliveryAgents {
            maildir,
            settings,
            mx,
            mta_sts,
            sessions,
            verifiers: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, tls_verify: TlsVerify) -> ClientConfig {
        let mut c = ClientConfig::new(self.settings.hostname.clone());
        c.timeouts = self.settings.timeouts.clone();
        c.chunking = self.settings.chunking;
        c.max_recipients = self.settings.max_recipients;
        c.tls_verify = tls_verify;
        c
    }

    /// The certificate check for a relay: verified (system roots plus its `ca_file`) when TLS is
    /// required or credentials will be sent, unless the operator set `verify = false`;
    /// otherwise opportunistic encryption without authentication (RFC 7435).
    fn relay_verify(&self, target: &RelayTarget) -> Result<TlsVerify, String> {
        let tls = self
            .settings
            .relay_tls
            .get(&(target.host.clone(), target.port))
            .cloned()
            .unwrap_or_default();
        let must_verify = target.tls == TlsPolicy::Required || target.credentials.is_some();
        if !tls.verify || !must_verify {
            return Ok(TlsVerify::AcceptAny);
        }
        let mut verifiers = self.verifiers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = verifiers.get(&tls.ca_file) {
            return Ok(v.clone());
        }
        let verify = TlsVerify::from_settings(true, tls.ca_file.as_deref())?;
        verifiers.insert(tls.ca_file, verify.clone());
        Ok(verify)
    }

    async fn relay(&self, target: &RelayTarget, out: &Outbound<'_>) -> Attempt {
        let verify = match self.relay_verify(target) {
            Ok(verify) => verify,
            Err(e) => {
                let reply = Reply::new(451, "4.7.5", format!("relay CA file: {e}"));
                return Attempt::all(out, RecipientOutcome::Deferred(reply));
            }
        };
        let mut config = self.client(verify);
        config.tls = target.tls;
        if let Some(name) = &target.credentials {
            match self.settings.credentials.get(name) {
                Some(creds) => config.credentials = Some(creds.clone()),
                None => {
                    let reply = Reply::new(
                        451,
                        "4.3.5",
                        format!("relay credentials {name:?} are not configured"),
                    );
                    return Attempt::all(out, RecipientOutcome::Deferred(reply));
                }
            }
        }
        // Sessions differ by TLS policy and login, not only by address.
        let key = format!(
            "relay:{}:{}:{:?}:{}",
            target.host,
            target.port,
            target.tls,
            target.credentials.as_deref().unwrap_or("")
        );
        // DANE: TLSA records at _<port>._tcp.<host> authenticate the relay instead of a CA.
        let dane = self
            .settings
            .relay_tls
            .get(&(target.host.clone(), target.port))
            .map_or(DaneMode::Off, |t| t.dane);
        if dane != DaneMode::Off {
            config.dane = dane;
            match self.mx.relay_dane(&target.host, target.port, &config).await {
                Ok(Some((dane_config, addrs))) => {
                    let host = target.host.clone();
                    let port = target.port;
                    let connect =
                        async move { connect_addresses(&addrs, &host, port, &dane_config).await };
                    return self.sessions.send(&key, connect, out).await;
                }
                Ok(None) => {}
                Err(failure) => return Attempt::all(out, failure.outcome()),
            }
        }
        let connect = smtp_client::connect_to_relay(target, &config);
        self.sessions.send(&key, connect, out).await
    }

    async fn lmtp(&self, target: &str, out: &Outbound<'_>) -> Attempt {
        let mut config = self.client(TlsVerify::AcceptAny);
        config.tls = crate::policy::TlsPolicy::None;
        let key = format!("lmtp:{target}");
        let target = LmtpTarget::parse(target);
        let connect = lmtp::connect(&target, &config);
        self.sessions.send(&key, connect, out).await
    }

    /// Closes every cached session (QUIT), e.g. at shutdown.
    pub async fn close_idle(&self) {
        self.sessions.close_all().await;
    }

    /// The shared session pool (tests, diagnostics).
    pub fn sessions(&self) -> &SessionPool {
        &self.sessions
    }
}

#[async_trait::async_trait]
impl Agents for DeliveryAgents {
    async fn deliver(&self, destination: &Destination, outbound: &Outbound<'_>) -> Attempt {
        match destination {
            Destination::Maildir(mailbox) => self.maildir.deliver(mailbox, outbound).await,
            Destination::Lmtp(target) => self.lmtp(target, outbound).await,
            Destination::Relay(target) => self.relay(target, outbound).await,
            Destination::Mx(domain) => {
                let mut config = self.client(TlsVerify::AcceptAny);
                config.dane = self.settings.routes.dane_for(domain);
                // RFC 8689 §5: "TLS-Required: No" asks that the recipient domain's TLS
                // policies (DANE, MTA-STS) be ignored; the REQUIRETLS parameter overrides it.
                if !outbound.reverse_path.requiretls && tls_required_no(outbound.message) {
                    config.dane = DaneMode::Off;
                    return self.mx.deliver(domain, &config, outbound).await;
                }
                (self.mx)
                    .deliver_with_policy(domain, &config, outbound, Some(&self.mta_sts))
                    .await
            }
        }
    }
}
