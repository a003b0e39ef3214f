//! The queue as the operator commands (`mailwit queue list/show/summary`) present it.

use super::state::{RcptStatus, ReplyRecord};
use crate::spool::QueueId;

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
