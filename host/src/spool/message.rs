//! What the spool stores and gives back: a message as accepted, its metadata (the JSON of its
//! message record) and a message read back.

use super::id::QueueId;
use crate::policy::Envelope;

/// What the engine hands the spool once a message is accepted by every policy.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub envelope: Envelope,
    /// The complete message as it will be delivered (Received header included), CRLF line ends.
    pub message: Vec<u8>,
    /// Hold the message for an operator instead of delivering it (a plugin's quarantine verdict).
    pub quarantine: Option<String>,
    /// The session id, for logs.
    pub session_id: String,
}

/// Everything about a message except its octets (JSON in its message record).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageMeta {
    pub id: QueueId,
    /// Arrival time, milliseconds since the Unix epoch.
    pub arrived_ms: u64,
    /// Length of the message part in octets.
    pub size: u64,
    pub envelope: Envelope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    #[serde(default)]
    pub session_id: String,
}

/// A message read back from the spool.
#[derive(Debug, Clone)]
pub struct SpooledMessage {
    pub meta: MessageMeta,
    pub message: Vec<u8>,
}
