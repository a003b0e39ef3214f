//! Delivery agents: Maildir (local), LMTP, SMTP relay and MX. The queue manager hands an agent one
//! message and the recipients routed to one destination; the agent answers per recipient.
//!
//! This file states the contract between the queue manager and the agents: [`Outbound`] in, one
//! [`RecipientOutcome`] per recipient out, for a [`Destination`] the router chose. The queue calls
//! agents through the [`Agents`] trait so it can be tested without a network and so the remote
//! agents plug in without the queue knowing their internals.

pub mod dsn;
pub mod lmtp;
pub mod maildir;
pub mod mx;
pub mod smtp_client;

use crate::policy::{Recipient, RelayTarget, Reply, ReversePath};

/// One delivery attempt: a message and the recipients that go to the same destination.
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    pub queue_id: &'a str,
    pub reverse_path: &'a ReversePath,
    pub recipients: &'a [Recipient],
    /// The complete message (Received header included), CRLF line ends.
    pub message: &'a [u8],
}

/// What became of one recipient. Carries the reply that decided it (or a synthesized one for
/// local errors, e.g. 4.4.1 connection refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// 2xx: the next hop took responsibility.
    Delivered(Reply),
    /// 4xx or a transient local error: try again later.
    Deferred(Reply),
    /// 5xx: bounce.
    Failed(Reply),
}

impl RecipientOutcome {
    pub fn reply(&self) -> &Reply {
        match self {
            RecipientOutcome::Delivered(r)
            | RecipientOutcome::Deferred(r)
            | RecipientOutcome::Failed(r) => r,
        }
    }
}

/// Where a group of recipients is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The local Maildir of this mailbox address (e.g. "alice@example.test").
    Maildir(String),
    /// LMTP to "host:port" or a unix socket path.
    Lmtp(String),
    /// A configured relay or smarthost.
    Relay(RelayTarget),
    /// The MX hosts of this domain.
    Mx(String),
}

impl Destination {
    /// Recipients with equal keys travel together and share a concurrency limit.
    pub fn key(&self) -> String {
        match self {
            Destination::Maildir(mailbox) => format!("maildir:{mailbox}"),
            Destination::Lmtp(target) => format!("lmtp:{target}"),
            Destination::Relay(t) => format!("relay:{}:{}", t.host, t.port),
            Destination::Mx(domain) => format!("mx:{domain}"),
        }
    }

    /// The concurrency limit applies per next hop, not per mailbox: all local delivery shares one.
    pub fn limit_key(&self) -> String {
        match self {
            Destination::Maildir(_) => "maildir".into(),
            other => other.key(),
        }
    }
}

/// The result of delivering one [`Outbound`] to one [`Destination`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// One per recipient, in the order of `Outbound::recipients`.
    pub outcomes: Vec<RecipientOutcome>,
    /// The next hop accepted DSN parameters (so it reports success itself); when false, a
    /// NOTIFY=SUCCESS recipient gets a "relayed" DSN from us.
    pub dsn_passed_on: bool,
    /// Name of the host that answered, for DSN Remote-MTA.
    pub remote_mta: Option<String>,
}

impl Attempt {
    /// Every recipient gets the same outcome (connection-level results).
    pub fn all(outbound: &Outbound<'_>, outcome: RecipientOutcome) -> Attempt {
        Attempt {
            outcomes: vec![outcome; outbound.recipients.len()],
            dsn_passed_on: false,
            remote_mta: None,
        }
    }
}

/// What the queue manager calls to deliver. Implementations must answer for every recipient and
/// never panic; transient trouble (connection refused, timeouts) is `Deferred`.
#[async_trait::async_trait]
pub trait Agents: Send + Sync {
    async fn deliver(&self, destination: &Destination, outbound: &Outbound<'_>) -> Attempt;
}

/// Local delivery only: Maildir for local destinations; every remote destination is deferred
/// (used where no remote agents are configured, e.g. tests of the queue itself).
pub struct LocalOnly {
    pub maildir: maildir::Maildir,
}

#[async_trait::async_trait]
impl Agents for LocalOnly {
    async fn deliver(&self, destination: &Destination, outbound: &Outbound<'_>) -> Attempt {
        match destination {
            Destination::Maildir(mailbox) => self.maildir.deliver(mailbox, outbound).await,
            _ => Attempt::all(
                outbound,
                RecipientOutcome::Deferred(Reply::new(
                    451,
                    "4.3.5",
                    "no remote delivery agent configured",
                )),
            ),
        }
    }
}

/// The production agents: Maildir for local mailboxes, [`lmtp`] for LMTP targets,
/// [`smtp_client`] for relays (with connection reuse) and [`mx`] for MX delivery.
pub struct Standard {
    maildir: maildir::Maildir,
    client: smtp_client::ClientConfig,
    credentials: std::collections::HashMap<String, smtp_client::RelayCredentials>,
    /// None when the resolver could not be built (then MX mail is deferred with the reason).
    mx: Result<mx::MxResolver, String>,
    reuse_for: std::time::Duration,
    idle: std::sync::Arc<std::sync::Mutex<Vec<IdleConnection>>>,
}

type IdleConnection = (String, smtp_client::Connection, std::time::Instant);

impl Standard {
    pub fn new(
        state_dir: &std::path::Path,
        hostname: &str,
        queue: &crate::config::queue::QueueConfig,
        routes: &crate::config::queue::RoutesConfig,
    ) -> Standard {
        let mut client = smtp_client::ClientConfig::new(hostname);
        if let Some(t) = queue.client_timeout {
            client.timeouts = smtp_client::Timeouts::all(t);
        }
        let credentials = routes
            .credentials
            .iter()
            .map(|(name, c)| {
                let creds = smtp_client::RelayCredentials {
                    username: c.username.clone(),
                    password: c.password.clone(),
                    mechanism: None,
                };
                (name.clone(), creds)
            })
            .collect();
        let mx = mx::MxResolver::new(mx::MxConfig {
            nameservers: queue.nameservers.clone(),
            smtp_port: queue.mx_port,
            ..mx::MxConfig::default()
        });
        if let Err(e) = &mx {
            tracing::error!(error = %e, "no DNS resolver: MX delivery will be deferred");
        }
        Standard {
            maildir: maildir::Maildir::new(state_dir.join("mail"), hostname),
            client,
            credentials,
            mx,
            reuse_for: queue.connection_reuse,
            idle: Default::default(),
        }
    }

    fn relay_config(&self, target: &RelayTarget) -> smtp_client::ClientConfig {
        let mut config = self.client.clone();
        config.tls = target.tls;
        config.credentials = target
            .credentials
            .as_ref()
            .and_then(|name| self.credentials.get(name).cloned());
        config
    }

    /// An idle connection to `key` kept from an earlier delivery, if still fresh.
    fn take_idle(&self, key: &str) -> Option<smtp_client::Connection> {
        let mut idle = self.idle.lock().unwrap();
        idle.retain(|(_, _, since)| since.elapsed() < self.reuse_for);
        let pos = idle
            .iter()
            .position(|(k, conn, _)| k == key && conn.is_usable())?;
        Some(idle.swap_remove(pos).1)
    }

    fn keep_idle(&self, key: String, conn: smtp_client::Connection) {
        if self.reuse_for.is_zero() || !conn.is_usable() {
            tokio::spawn(conn.quit());
            return;
        }
        self.idle
            .lock()
            .unwrap()
            .push((key, conn, std::time::Instant::now()));
        // Once the reuse window has passed, close what nobody took (politely: QUIT).
        let idle = std::sync::Arc::downgrade(&self.idle);
        let reuse_for = self.reuse_for;
        tokio::spawn(async move {
            tokio::time::sleep(reuse_for).await;
            let Some(idle) = idle.upgrade() else { return };
            let stale: Vec<IdleConnection> = {
                let mut idle = idle.lock().unwrap();
                let (stale, fresh) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|(_, _, since)| since.elapsed() >= reuse_for);
                *idle = fresh;
                stale
            };
            for (_, conn, _) in stale {
                conn.quit().await;
            }
        });
    }

    async fn relay(&self, target: &RelayTarget, out: &Outbound<'_>) -> Attempt {
        let key = Destination::Relay(target.clone()).key();
        let config = self.relay_config(target);
        // A kept connection may have been closed by the peer meanwhile: if it fails as a
        // connection, try once more on a fresh one rather than deferring.
        if let Some(mut conn) = self.take_idle(&key) {
            let report = conn.send(out).await;
            let connection_lost = conn_lost(&report);
            if !connection_lost {
                self.keep_idle(key, conn);
                return report.into();
            }
        }
        match smtp_client::connect_to_relay(target, &config).await {
            Ok(mut conn) => {
                let report = conn.send(out).await;
                self.keep_idle(key, conn);
                report.into()
            }
            Err(failure) => Attempt::all(out, failure.outcome()),
        }
    }
}

/// Every recipient deferred because the connection broke (not because the peer said 4xx).
fn conn_lost(report: &smtp_client::DeliveryReport) -> bool {
    !report.outcomes.is_empty()
        && report.outcomes.iter().all(|o| {
            matches!(o, RecipientOutcome::Deferred(r) if r.enhanced == "4.4.2" || r.enhanced == "4.4.1")
        })
}

impl From<smtp_client::DeliveryReport> for Attempt {
    fn from(r: smtp_client::DeliveryReport) -> Attempt {
        Attempt {
            outcomes: r.outcomes,
            dsn_passed_on: r.dsn_passed_on,
            remote_mta: r.remote_mta,
        }
    }
}

#[async_trait::async_trait]
impl Agents for Standard {
    async fn deliver(&self, destination: &Destination, outbound: &Outbound<'_>) -> Attempt {
        match destination {
            Destination::Maildir(mailbox) => self.maildir.deliver(mailbox, outbound).await,
            Destination::Lmtp(target) => {
                let target = lmtp::LmtpTarget::parse(target);
                lmtp::deliver(&target, &self.client, outbound).await.into()
            }
            Destination::Relay(target) => self.relay(target, outbound).await,
            Destination::Mx(domain) => match &self.mx {
                Ok(resolver) => resolver
                    .deliver(domain, &self.client, outbound)
                    .await
                    .into(),
                Err(e) => Attempt::all(
                    outbound,
                    RecipientOutcome::Deferred(Reply::new(
                        451,
                        "4.4.3",
                        format!("no DNS resolver: {e}"),
                    )),
                ),
            },
        }
    }
}
