//! The durable message store. `store` returns only once the message and its envelope are on disk
//! (file and directory fsynced), sharing fsyncs between concurrent sessions (group commit).
//!
//! This file states the contract the engine codes against; the implementation lands with the
//! queue work.

use crate::policy::Envelope;
use std::path::PathBuf;

/// A spooled message's id: unique, sortable by arrival, safe as a file name.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct QueueId(pub String);

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

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

pub struct Spool {
    _dir: PathBuf,
}

impl Spool {
    /// Opens (creating if needed) the spool at `<state>/queue/`.
    pub async fn open(dir: PathBuf) -> std::io::Result<Spool> {
        Ok(Spool { _dir: dir })
    }

    /// Makes `incoming` durable and returns its id. Returns only after fsync of data and directory.
    pub async fn store(&self, _incoming: Incoming) -> std::io::Result<QueueId> {
        Err(std::io::Error::other("spool not implemented yet"))
    }
}
