//! A session with one peer ([`Connection`]) and the failure that ends an attempt ([`Failure`]).
//! Opening, transactions and the wire live in `session`, `transaction` and `wire`.

use tokio::io::{AsyncRead, AsyncWrite};

use super::capabilities::Capabilities;
use super::config::ClientConfig;
use crate::delivery::contract::RecipientOutcome;
use crate::policy::Reply;

/// A failure that ends an attempt before or outside a transaction: the outcome of every
/// recipient still undecided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Transient(Reply),
    Permanent(Reply),
}

impl Failure {
    pub fn outcome(&self) -> RecipientOutcome {
        match self {
            Failure::Transient(r) => RecipientOutcome::Deferred(r.clone()),
            Failure::Permanent(r) => RecipientOutcome::Failed(r.clone()),
        }
    }

    pub fn reply(&self) -> &Reply {
        match self {
            Failure::Transient(r) | Failure::Permanent(r) => r,
        }
    }

    pub(super) fn from_reply(reply: Reply) -> Failure {
        if reply.code >= 500 {
            Failure::Permanent(reply)
        } else {
            Failure::Transient(reply)
        }
    }
}

/// SMTP, or LMTP (RFC 2033: LHLO, and one reply per accepted recipient after the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Lmtp,
}

/// Anything a session can run over: TCP, TLS over TCP, a unix socket.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A session with one peer that can carry many transactions.
pub struct Connection {
    pub(super) stream: Box<dyn Stream>,
    pub(super) buffer: Vec<u8>,
    pub(super) capabilities: Capabilities,
    pub(super) config: ClientConfig,
    pub(super) protocol: Protocol,
    pub(super) remote: String,
    pub(super) tls: bool,
    /// TLS whose certificate was checked (chain and name, or DANE), not merely encryption.
    pub(super) tls_authenticated: bool,
    /// Opportunistic TLS failed (RFC 8460 result type) and the session went on in plain text.
    pub(super) tls_failure: Option<&'static str>,
    /// False after 421, a lost connection or a garbled reply.
    pub(super) usable: bool,
    /// The last transaction ended mid-way: RSET before the next MAIL.
    pub(super) needs_reset: bool,
    /// The last `send` failed at the RSET that precedes its MAIL: nothing of it was sent.
    pub(super) failed_before_transaction: bool,
    /// Messages sent over this session ([`Connection::send`] calls that reached the peer).
    pub(super) messages: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .field("protocol", &self.protocol)
            .field("tls", &self.tls)
            .field("tls_authenticated", &self.tls_authenticated)
            .field("usable", &self.usable)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// TLS with the peer's certificate authenticated (verified chain and name, or DANE).
    pub fn is_tls_authenticated(&self) -> bool {
        self.tls_authenticated
    }

    /// Why opportunistic TLS failed before this plain-text session (RFC 8460 result type).
    pub fn tls_failure(&self) -> Option<&'static str> {
        self.tls_failure
    }

    /// Whether another transaction may be sent.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// The last [`Connection::send`] found the session dead at the RSET before its MAIL (e.g. a
    /// cached session the peer had closed): its recipients were deferred without anything
    /// reaching the peer, so the caller can send again on a fresh session right away.
    pub fn failed_before_transaction(&self) -> bool {
        self.failed_before_transaction
    }

    /// How many messages this session has carried (a session pool closes it at its cap).
    pub fn messages_sent(&self) -> usize {
        self.messages
    }

    /// Marks a session taken from an idle cache: the next transaction starts with RSET
    /// (pipelined when possible), which doubles as the check that the peer is still there.
    pub fn prepare_reuse(&mut self) {
        self.needs_reset = true;
    }
}
