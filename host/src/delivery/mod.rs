//! Delivery agents: Maildir (local), LMTP, SMTP relay and MX. The queue manager hands an agent one
//! message and the recipients routed to one destination; the agent answers per recipient.
//!
//! `contract` states the contract between the queue manager and the agents: [`Outbound`] in, one
//! [`RecipientOutcome`] per recipient out, for a [`Destination`] the router chose. The queue calls
//! agents through the [`Agents`] trait so it can be tested without a network and so the remote
//! agents plug in without the queue knowing their internals. This file re-exports it and sets the
//! agents up: [`LocalOnly`] for tests of the queue, [`from_config`] and [`with_resolver`] for the
//! production agents.

mod contract;
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

use crate::policy::Reply;

pub use contract::{Agents, Attempt, Destination, Outbound, RecipientOutcome};

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
