//! Delivery agents: Maildir (local), LMTP, SMTP relay and MX. The queue manager hands an agent one
//! message and the recipients routed to one destination; the agent answers per recipient.
//!
//! This file states the contract between the queue manager and the agents.

pub mod dsn;
pub mod lmtp;
pub mod mx;
pub mod smtp_client;

use crate::policy::{Recipient, Reply, ReversePath};

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
