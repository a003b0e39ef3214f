//! The contract between the queue manager and the delivery agents: [`Outbound`] in, one
//! [`RecipientOutcome`] per recipient out ([`Attempt`]), for a [`Destination`] the router chose,
//! through the [`Agents`] trait.

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
