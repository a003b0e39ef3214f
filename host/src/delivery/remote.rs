//! [`RemoteAgents`]: the queue's [`Agents`] with every destination wired: Maildir (local), LMTP,
//! relays/smarthosts and MX.
//!
//! Sessions to relays and LMTP servers are kept open for a short while after a delivery and
//! reused by the next delivery to the same place (checked with RSET first), so a busy smarthost
//! costs one connection per concurrent delivery rather than one per message. MX sessions are not
//! cached (each domain's hosts differ; the queue groups a domain's recipients into one attempt).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lmtp::{self, LmtpTarget};
use super::maildir::Maildir;
use super::mx::{MxConfig, MxResolver};
use super::smtp_client::{
    self, ClientConfig, Connection, Failure, RelayCredentials, Timeouts, TlsVerify,
};
use super::{Agents, Attempt, Destination, Outbound, RecipientOutcome};
use crate::config::queue::RoutesConfig;
use crate::policy::{RelayTarget, Reply};

/// What [`RemoteAgents`] needs besides the Maildir.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Our name in EHLO/LHLO.
    pub hostname: String,
    pub timeouts: Timeouts,
    /// Certificate checks towards configured relays (MX hosts: never, see `smtp_client::tls`).
    pub relay_tls_verify: TlsVerify,
    /// `[routes.credentials.NAME]` by name.
    pub credentials: BTreeMap<String, RelayCredentials>,
    pub mx: MxConfig,
    /// Use BDAT when offered.
    pub chunking: bool,
    /// How long an idle session stays cached (0: no reuse).
    pub idle_time: Duration,
    /// Idle sessions kept per destination.
    pub idle_per_destination: usize,
}

impl RemoteSettings {
    pub fn new(hostname: impl Into<String>) -> RemoteSettings {
        RemoteSettings {
            hostname: hostname.into(),
            timeouts: Timeouts::default(),
            relay_tls_verify: TlsVerify::AcceptAny,
            credentials: BTreeMap::new(),
            mx: MxConfig::default(),
            chunking: true,
            idle_time: Duration::from_secs(5),
            idle_per_destination: 8,
        }
    }

    /// Takes the named credentials of the route table.
    pub fn with_routes(mut self, routes: &RoutesConfig) -> RemoteSettings {
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

pub struct RemoteAgents {
    maildir: Maildir,
    settings: RemoteSettings,
    mx: MxResolver,
    idle: Mutex<HashMap<String, Vec<(Instant, Connection)>>>,
}

impl RemoteAgents {
    pub fn new(maildir: Maildir, settings: RemoteSettings) -> Result<RemoteAgents, String> {
        let mx = MxResolver::new(settings.mx.clone())?;
        Ok(RemoteAgents {
            maildir,
            settings,
            mx,
            idle: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, tls_verify: TlsVerify) -> ClientConfig {
        let mut c = ClientConfig::new(self.settings.hostname.clone());
        c.timeouts = self.settings.timeouts.clone();
        c.chunking = self.settings.chunking;
        c.tls_verify = tls_verify;
        c
    }

    async fn relay(&self, target: &RelayTarget, out: &Outbound<'_>) -> Attempt {
        let mut config = self.client(self.settings.relay_tls_verify.clone());
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
        let key = format!("relay:{}:{}", target.host, target.port);
        let connect = smtp_client::connect_to_relay(target, &config);
        self.send_reusing(&key, connect, out).await
    }

    async fn lmtp(&self, target: &str, out: &Outbound<'_>) -> Attempt {
        let mut config = self.client(TlsVerify::AcceptAny);
        config.tls = crate::policy::TlsPolicy::None;
        let key = format!("lmtp:{target}");
        let target = LmtpTarget::parse(target);
        let connect = lmtp::connect(&target, &config);
        self.send_reusing(&key, connect, out).await
    }

    /// Sends over a cached session for `key` if one still answers, else over a new one; caches
    /// the session afterwards while it is usable.
    async fn send_reusing(
        &self,
        key: &str,
        connect: impl Future<Output = Result<Connection, Failure>>,
        out: &Outbound<'_>,
    ) -> Attempt {
        let mut conn = match self.take_idle(key).await {
            Some(conn) => conn,
            None => match connect.await {
                Ok(conn) => conn,
                Err(failure) => return Attempt::all(out, failure.outcome()),
            },
        };
        let attempt = conn.send(out).await;
        self.put_idle(key, conn);
        attempt
    }

    async fn take_idle(&self, key: &str) -> Option<Connection> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let list = idle.get_mut(key)?;
                let (since, conn) = list.pop()?;
                (since.elapsed() < self.settings.idle_time).then_some(conn)
            };
            if let Some(mut conn) = candidate {
                if conn.probe().await {
                    return Some(conn);
                }
                conn.quit().await;
            }
        }
    }

    fn put_idle(&self, key: &str, conn: Connection) {
        let mut stale = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // Expired sessions of every destination leave with this call.
            for list in idle.values_mut() {
                let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(list)
                    .into_iter()
                    .partition(|(since, _)| since.elapsed() < self.settings.idle_time);
                *list = keep;
                stale.extend(old.into_iter().map(|(_, c)| c));
            }
            idle.retain(|_, list| !list.is_empty());
            let list = idle.entry(key.to_string()).or_default();
            if conn.is_usable()
                && !self.settings.idle_time.is_zero()
                && list.len() < self.settings.idle_per_destination
            {
                list.push((Instant::now(), conn));
            } else {
                stale.push(conn);
            }
        }
        if !stale.is_empty() {
            tokio::spawn(async move {
                for conn in stale {
                    conn.quit().await;
                }
            });
        }
    }

    /// Closes every cached session (QUIT), e.g. at shutdown.
    pub async fn close_idle(&self) {
        let all: Vec<Connection> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.drain().flat_map(|(_, l)| l).map(|(_, c)| c).collect()
        };
        for conn in all {
            conn.quit().await;
        }
    }
}

#[async_trait::async_trait]
impl Agents for RemoteAgents {
    async fn deliver(&self, destination: &Destination, outbound: &Outbound<'_>) -> Attempt {
        match destination {
            Destination::Maildir(mailbox) => self.maildir.deliver(mailbox, outbound).await,
            Destination::Lmtp(target) => self.lmtp(target, outbound).await,
            Destination::Relay(target) => self.relay(target, outbound).await,
            Destination::Mx(domain) => {
                let config = self.client(TlsVerify::AcceptAny);
                self.mx.deliver(domain, &config, outbound).await
            }
        }
    }
}
