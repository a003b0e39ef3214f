//! The seam between the SMTP engine and whatever decides policy.
//!
//! The server calls a [`SessionHooks`] at each stage of a session; the plugin platform
//! (`crate::plugins`) implements it with Wasm components, and [`NoHooks`] is the empty default.
//! These types mirror `wit/types.wit` so the engine never depends on generated bindings.
//! Whatever the hooks say, the core still enforces relay control (an unauthenticated client only
//! reaches local domains) as a safety net.

pub mod modifications;

pub use modifications::{Modification, apply_modifications};

// The types hooks receive, from the layers below; re-exported so that a hook implementation
// needs this module only.
pub use crate::mail::{BodyType, DsnRet, Envelope, Notify, Recipient, Reply, ReversePath};
pub use crate::smtp::{Credentials, TlsInfo};

use std::net::SocketAddr;

/// The hooks a plugin can export, one WIT interface each (`wit/hooks.wit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Connect,
    Ehlo,
    Auth,
    Mail,
    Rcpt,
    Data,
    Route,
    Delivery,
    /// Before each relay, MX or LMTP delivery attempt (contract 0.2).
    Outbound,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Hook::Connect,
        Hook::Ehlo,
        Hook::Auth,
        Hook::Mail,
        Hook::Rcpt,
        Hook::Data,
        Hook::Route,
        Hook::Delivery,
        Hook::Outbound,
    ];

    /// The WIT interface name, which is also the pipeline key.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Ehlo => "ehlo",
            Hook::Auth => "auth",
            Hook::Mail => "mail",
            Hook::Rcpt => "rcpt",
            Hook::Data => "data",
            Hook::Route => "route",
            Hook::Delivery => "delivery",
            Hook::Outbound => "outbound",
        }
    }

    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A hook's decision. `Continue` passes to the next plugin, then to the core's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Accept,
    Reject(Reply),
    Tempfail(Reply),
    Disconnect(Reply),
    /// Accept the message, deliver it nowhere (data stage).
    Discard,
    /// Accept the message and hold it for an operator (data stage).
    Quarantine(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerRole {
    Mx,
    Submission,
    Submissions,
    /// On-Demand Mail Relay (RFC 2645): AUTH, then ATRN to collect held mail.
    Odmr,
}

/// What a hook knows about the session it runs in.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub listener: String,
    pub role: ListenerRole,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub helo: Option<String>,
    pub tls: Option<TlsInfo>,
    pub authenticated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// Authenticated as this identity.
    Ok(String),
    Invalid,
    /// Not this backend's user: ask the next.
    Unknown,
    Tempfail(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    pub verdict: Verdict,
    /// Replace the recipient with this address (aliases).
    pub rewrite: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataResult {
    pub verdict: Verdict,
    pub modifications: Vec<Modification>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    None,
    Opportunistic,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayTarget {
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
    /// Name of a credentials entry in the configuration.
    pub credentials: Option<String>,
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RouteDecision {
    /// Local Maildir of this mailbox address.
    Maildir(String),
    /// LMTP to "host:port" or a unix socket path.
    Lmtp(String),
    Relay(RelayTarget),
    Mx,
    Discard,
    /// Keep in the queue until the recipient domain's customer collects it with ATRN (a route
    /// plugin's `route-hold`), exactly like a `[routes]` entry with `odmr = true`.
    Hold,
    /// No opinion: the next plugin, then the configuration's route table.
    Continue,
}

/// What became of one recipient, as the delivery hook hears it: the same three outcomes as
/// `delivery::RecipientOutcome` and the spool's `RcptStatus`. (The WIT contract spells
/// `Failed` as `outcome.bounced`; the contract keeps its name.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    Deferred,
    Failed,
}

#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    pub message_id: String,
    pub reverse_path: String,
    pub recipient: String,
    pub outcome: DeliveryOutcome,
    pub reply: Option<Reply>,
    pub attempts: u32,
}

/// What the host's message-authentication checks found, handed to the data hook (contract 0.2).
/// A check that did not run is absent; `dkim` has one entry per signature checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthenticationResults {
    pub spf: Option<SpfResult>,
    pub dkim: Vec<DkimResult>,
    pub dmarc: Option<DmarcResult>,
    /// ARC chain validation: "pass", "fail" or "none".
    pub arc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfResult {
    /// RFC 8601 result keyword ("pass", "fail", "softfail", ...).
    pub result: String,
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimResult {
    pub result: String,
    pub domain: String,
    pub selector: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcResult {
    pub result: String,
    /// The published policy: "none", "quarantine" or "reject".
    pub policy: String,
    pub aligned: bool,
}

/// Where a delivery attempt goes, as the outbound hook sees and may change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundDestination {
    Relay {
        host: String,
        port: u16,
    },
    /// The MX hosts of this domain.
    Mx(String),
    /// LMTP to "host:port" or a unix socket path.
    Lmtp(String),
}

/// One delivery attempt about to be made (relay, MX or LMTP; not local Maildir).
#[derive(Debug, Clone)]
pub struct OutboundAttempt {
    pub queue_id: String,
    pub reverse_path: String,
    pub recipients: Vec<String>,
    pub destination: OutboundDestination,
    /// Delivery attempts of the message so far, this one included.
    pub attempt: u32,
}

/// A header edit from the outbound hook, applied to the copy being sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    Add(String, String),
    Remove(String),
    Replace(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundAction {
    Proceed,
    /// Defer the attempt's recipients with this 4xx reply.
    Tempfail(Reply),
    /// Fail them with this 5xx reply.
    Fail(Reply),
    /// Deliver there instead.
    Reroute(OutboundDestination),
}

/// What the outbound hook chain decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundDecision {
    pub action: OutboundAction,
    pub headers: Vec<HeaderEdit>,
}

impl OutboundDecision {
    pub fn proceed() -> Self {
        OutboundDecision {
            action: OutboundAction::Proceed,
            headers: Vec::new(),
        }
    }
}

/// The message as the data hook sees it: complete raw bytes (header + body, CRLF line ends,
/// dot-unstuffed), before the host's own Received header.
pub struct Message<'a> {
    pub bytes: &'a [u8],
}

/// Per-session hooks. One value lives as long as one SMTP connection, so an implementation may keep
/// state across that session's stages (never across sessions). Every method has a "no opinion" default.
#[async_trait::async_trait]
pub trait SessionHooks: Send {
    /// Called before each MAIL command is processed, so an implementation can move the session to the
    /// newest configuration generation between transactions (never inside one).
    async fn begin_transaction(&mut self) {}

    /// The message-authentication results of the transaction in progress, for the data hook
    /// (called before [`data`](Self::data) by whatever checks SPF/DKIM/DMARC/ARC; without it the
    /// data hook sees no results).
    fn authentication_results(&mut self, _results: AuthenticationResults) {}

    /// Whether the session holds something (plugin instances) it could give back while it waits
    /// for the client between transactions.
    fn holds_idle_resources(&self) -> bool {
        false
    }

    /// The session has waited for the client between transactions for a while: give back what
    /// the next hook call can rebuild (an idle connection should cost a socket and a buffer).
    fn release_idle(&mut self) {}

    async fn connect(&mut self, _session: &SessionInfo) -> Verdict {
        Verdict::Continue
    }

    async fn ehlo(&mut self, _session: &SessionInfo, _name: &str) -> Verdict {
        Verdict::Continue
    }

    /// Credential check. `Unknown` lets the core's built-in users file decide.
    async fn auth(&mut self, _session: &SessionInfo, _credentials: &Credentials) -> AuthResult {
        AuthResult::Unknown
    }

    async fn mail(&mut self, _session: &SessionInfo, _from: &ReversePath) -> Verdict {
        Verdict::Continue
    }

    async fn rcpt(
        &mut self,
        _session: &SessionInfo,
        _from: &ReversePath,
        _rcpt: &Recipient,
    ) -> RcptResult {
        RcptResult {
            verdict: Verdict::Continue,
            rewrite: None,
        }
    }

    async fn data(
        &mut self,
        _session: &SessionInfo,
        _envelope: &Envelope,
        _message: Message<'_>,
    ) -> DataResult {
        DataResult {
            verdict: Verdict::Continue,
            modifications: Vec::new(),
        }
    }
}

/// Makes the hooks for each new connection on a listener.
pub trait HookFactory: Send + Sync {
    fn session_hooks(&self, listener: &str) -> Box<dyn SessionHooks>;
}

/// Queue-side hooks: routing and delivery notifications (no SMTP session involved).
#[async_trait::async_trait]
pub trait QueueHooks: Send + Sync {
    async fn route(&self, _from: &ReversePath, _rcpt: &Recipient) -> RouteDecision {
        RouteDecision::Continue
    }
    async fn delivery(&self, _event: &DeliveryEvent) {}
    /// Before each relay, MX or LMTP delivery attempt, with the message as it will be sent.
    async fn outbound(&self, _attempt: &OutboundAttempt, _message: &[u8]) -> OutboundDecision {
        OutboundDecision::proceed()
    }
}

/// No plugins: every hook has no opinion, so the core's defaults decide.
pub struct NoHooks;

impl SessionHooks for NoHooks {}
impl QueueHooks for NoHooks {}

impl HookFactory for NoHooks {
    fn session_hooks(&self, _listener: &str) -> Box<dyn SessionHooks> {
        Box::new(NoHooks)
    }
}
