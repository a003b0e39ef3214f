//! Delivery agents: Maildir (local), LMTP, SMTP relay and MX. The queue manager hands an agent one
//! message and the recipients routed to one destination; the agent answers per recipient.
//!
//! This file states the contract between the queue manager and the agents: [`Outbound`] in, one
//! [`RecipientOutcome`] per recipient out, for a [`Destination`] the router chose. The queue calls
//! agents through the [`Agents`] trait so it can be tested without a network and so the remote
//! agents plug in without the queue knowing their internals.

pub mod dane;
pub mod lmtp;
pub mod maildir;
pub mod measured;
pub mod mta_sts;
pub mod mx;
pub mod pool;
pub mod remote;
pub mod smtp_client;
pub mod tls_rpt;

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

/// The production agents ([`remote::DeliveryAgents`]: Maildir, LMTP, relays and MX, with
/// session reuse), set up from the `[queue]` and `[routes]` configuration, with a resolver of their own
/// asking the deprecated `[queue] nameservers` (or the system's). The server uses
/// [`with_resolver`] and its shared `[dns]` resolver.
pub fn from_config(
    state_dir: &std::path::Path,
    hostname: &str,
    queue: &crate::config::queue::QueueConfig,
    routes: &crate::config::queue::RoutesConfig,
) -> Result<remote::DeliveryAgents, String> {
    let dns = crate::config::dns::DnsConfig {
        nameservers: queue.nameservers.clone(),
        ..Default::default()
    };
    let resolver = crate::dns::Resolver::from_config(&dns)?;
    let mta_sts = crate::config::mta_sts::MtaStsConfig::default();
    with_resolver(state_dir, hostname, queue, routes, resolver, &mta_sts, None)
}

/// [`from_config`] with MX lookups through the server's shared `resolver`.
pub fn with_resolver(
    state_dir: &std::path::Path,
    hostname: &str,
    queue: &crate::config::queue::QueueConfig,
    routes: &crate::config::queue::RoutesConfig,
    resolver: std::sync::Arc<crate::dns::Resolver>,
    mta_sts: &crate::config::mta_sts::MtaStsConfig,
    tls_rpt: Option<std::sync::Arc<tls_rpt::TlsRpt>>,
) -> Result<remote::DeliveryAgents, String> {
    let mut settings = remote::RemoteSettings::new(hostname).with_routes(routes);
    if let Some(t) = queue.client_timeout {
        settings.timeouts = smtp_client::Timeouts::all(t);
    }
    settings.resolver = Some(resolver);
    settings.mta_sts = mta_sts.clone();
    settings.mta_sts_cache = Some(state_dir.join("mta-sts"));
    settings.tls_rpt = tls_rpt;
    settings.mx.smtp_port = queue.mx_port;
    settings.sessions.idle_time = queue.connection_reuse;
    settings.sessions.max_messages = queue.connection_reuse_messages;
    remote::DeliveryAgents::new(
        maildir::Maildir::new(state_dir.join("mail"), hostname),
        settings,
    )
}
