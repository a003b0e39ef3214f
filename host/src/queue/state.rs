//! Per-recipient delivery state, persisted in the spool's log next to the message: each
//! [`Record`] is one JSON state record of the message ([`crate::spool::Spool::append_state`]),
//! durable (group-committed) before the queue relies on it.
//!
//! Replaying the records over the message's envelope gives the state. An outcome not yet
//! recorded when a crash hit is simply tried again (at-least-once: a duplicate is possible, a
//! loss is not).

use crate::policy::Reply;
use crate::spool::{MessageMeta, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    /// Not tried yet.
    Pending,
    /// Tried, failed temporarily; tried again at `next_attempt_ms`.
    Deferred,
    Delivered,
    Failed,
}

impl RcptStatus {
    pub fn is_final(self) -> bool {
        matches!(self, RcptStatus::Delivered | RcptStatus::Failed)
    }
}

/// A reply as stored in the log and shown by `mailwit queue show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplyRecord {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

impl From<&Reply> for ReplyRecord {
    fn from(r: &Reply) -> Self {
        ReplyRecord {
            code: r.code,
            enhanced: r.enhanced.clone(),
            text: r.text.clone(),
        }
    }
}

impl From<&ReplyRecord> for Reply {
    fn from(r: &ReplyRecord) -> Self {
        Reply::new(r.code, r.enhanced.clone(), r.text.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RcptState {
    pub status: RcptStatus,
    pub attempts: u32,
    pub last_reply: Option<ReplyRecord>,
    /// When a deferred recipient is due (ms since the epoch); 0 = now.
    pub next_attempt_ms: u64,
}

/// One state record of a message in the spool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Outcome {
        rcpt: usize,
        status: RcptStatus,
        reply: ReplyRecord,
        next_ms: u64,
        at_ms: u64,
    },
    Hold {
        held: bool,
        at_ms: u64,
    },
    DelayWarned {
        at_ms: u64,
    },
}

/// A message's queue state: its metadata plus what the log says.
#[derive(Debug, Clone)]
pub struct MessageState {
    pub meta: MessageMeta,
    pub rcpts: Vec<RcptState>,
    pub held: bool,
    pub delay_warned: bool,
}

impl MessageState {
    /// The state of a freshly stored message: all recipients pending, held if quarantined.
    pub fn fresh(meta: MessageMeta) -> Self {
        let rcpts = meta
            .envelope
            .recipients
            .iter()
            .map(|_| RcptState {
                status: RcptStatus::Pending,
                attempts: 0,
                last_reply: None,
                next_attempt_ms: 0,
            })
            .collect();
        let held = meta.quarantine.is_some();
        MessageState {
            meta,
            rcpts,
            held,
            delay_warned: false,
        }
    }

    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Outcome {
                rcpt,
                status,
                reply,
                next_ms,
                ..
            } => {
                if let Some(r) = self.rcpts.get_mut(*rcpt) {
                    r.status = *status;
                    r.attempts += 1;
                    r.last_reply = Some(reply.clone());
                    r.next_attempt_ms = *next_ms;
                }
            }
            Record::Hold { held, .. } => self.held = *held,
            Record::DelayWarned { .. } => self.delay_warned = true,
        }
    }

    /// Replays a message's state records (from [`crate::spool::Spool::states`]) over the fresh
    /// state. A record this version cannot read ends the replay (as a torn line did in the old
    /// per-message state files).
    pub fn replay(meta: MessageMeta, records: &[Vec<u8>]) -> Self {
        let mut state = MessageState::fresh(meta);
        for raw in records {
            match serde_json::from_slice::<Record>(raw) {
                Ok(record) => state.apply(&record),
                Err(_) => break,
            }
        }
        state
    }

    pub fn is_done(&self) -> bool {
        self.rcpts.iter().all(|r| r.status.is_final())
    }

    /// Recipients due at `now` (pending, or deferred and past their time).
    pub fn due(&self, now: u64) -> Vec<usize> {
        self.rcpts
            .iter()
            .enumerate()
            .filter(|(_, r)| match r.status {
                RcptStatus::Pending => true,
                RcptStatus::Deferred => r.next_attempt_ms <= now,
                _ => false,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The earliest time some recipient is due, if any is still queued.
    pub fn next_due(&self) -> Option<u64> {
        self.rcpts
            .iter()
            .filter_map(|r| match r.status {
                RcptStatus::Pending => Some(0),
                RcptStatus::Deferred => Some(r.next_attempt_ms),
                _ => None,
            })
            .min()
    }

    /// Whether this message has been tried before (fresh mail goes first).
    pub fn is_retry(&self) -> bool {
        self.rcpts.iter().any(|r| r.attempts > 0)
    }
}

/// The spool's octets for `records`.
pub fn encode(records: &[Record]) -> std::io::Result<Vec<Vec<u8>>> {
    records
        .iter()
        .map(|r| serde_json::to_vec(r).map_err(std::io::Error::other))
        .collect()
}

pub fn outcome(rcpt: usize, status: RcptStatus, reply: &Reply, next_ms: u64) -> Record {
    Record::Outcome {
        rcpt,
        status,
        reply: reply.into(),
        next_ms,
        at_ms: now_ms(),
    }
}
