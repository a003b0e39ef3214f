//! The queue manager: everything the spool holds leaves it delivered, bounced, or still visibly
//! queued.
//!
//! - [`state`]: per-recipient state (pending, deferred with last error and next attempt, delivered,
//!   failed) as an append-only, fsynced log per message, replayed on start.
//! - [`manager`]: the scheduler. Woken by every store (the spool's arrivals channel), by
//!   operator commands and by the earliest retry time; fresh mail is dispatched ahead of
//!   retries; a global and a per-destination concurrency limit apply.
//! - [`route`]: the route hook, then the `[routes]` table.
//! - [`schedule`]: exponential back-off with jitter, lifetime.
//! - [`bounce`]: when a DSN goes out (NOTIFY rules, never for `<>`), spooled from `<>`.
//! - [`dsn`]: the DSN itself (RFC 3464 report format).
//!
//! At-least-once: outcomes are recorded after the agent answered, so a crash in between repeats
//! the delivery (a duplicate) rather than losing it.

pub mod bounce;
pub mod dsn;
mod manager;
mod outbound;
pub mod route;
pub mod schedule;
pub mod state;
mod table;

use crate::config::queue::{QueueConfig, RoutesConfig};
use crate::delivery::Agents;
use crate::policy::QueueHooks;
use crate::spool::QueueId;
use std::sync::Arc;

pub use manager::{Collection, Queue};
pub use route::{LocalDomains, NoLocalDomains};
pub use state::{RcptStatus, ReplyRecord};

/// Signs the messages the queue writes itself (DSNs) with the sender domain's DKIM key: returns
/// the DKIM-Signature fields to put on top (empty: no key for that domain). Keys stay in the
/// host; the composition root hands the server's live signers in.
pub trait MessageSigner: Send + Sync {
    fn signatures(&self, message: &[u8]) -> Vec<u8>;
}

/// What the queue manager needs to run.
pub struct QueueOptions {
    pub config: QueueConfig,
    pub routes: RoutesConfig,
    /// Our name, for DSN Reporting-MTA and MAILER-DAEMON.
    pub hostname: String,
    pub hooks: Arc<dyn QueueHooks>,
    pub local: Arc<dyn LocalDomains>,
    pub agents: Arc<dyn Agents>,
}

/// One message as `mailwit queue list/show` present it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageView {
    pub id: QueueId,
    pub arrived_ms: u64,
    pub size: u64,
    pub sender: String,
    pub held: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// Being delivered right now.
    pub active: bool,
    pub recipients: Vec<RecipientView>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientView {
    pub address: String,
    pub status: RcptStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<ReplyRecord>,
    /// 0 when due now.
    pub next_attempt_ms: u64,
}

/// `mailwit queue summary`: queued recipients per destination domain (like Postfix's qshape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DomainSummary {
    pub domain: String,
    /// Recipients still queued (pending or deferred) for this domain.
    pub recipients: usize,
    /// Of those, how many have been deferred at least once.
    pub deferred: usize,
    /// Age of the oldest message with a recipient here, in seconds.
    pub oldest_age_secs: u64,
    /// An ODMR domain: its mail waits for the customer's ATRN.
    #[serde(default)]
    pub odmr_held: bool,
}
