//! Per-recipient delivery state, persisted as an append-only log next to the message
//! (`<queue>/ID.state`, one JSON record per line, fsynced per append).
//!
//! Replaying the log over the message's envelope gives the state; a torn last line (a crash
//! mid-append) ends the replay, so the recipient it described is simply tried again
//! (at-least-once: a duplicate is possible, a loss is not).

use crate::policy::Reply;
use crate::spool::{MessageMeta, now_ms};
use std::io::Write;
use std::path::Path;

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

/// One line of `ID.state`.
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

    /// Replays `ID.state` (if any) over the fresh state.
    pub fn load(meta: MessageMeta, state_path: &Path) -> std::io::Result<Self> {
        let mut state = MessageState::fresh(meta);
        let log = match std::fs::read(state_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(state),
            Err(e) => return Err(e),
        };
        for line in log.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Record>(line) {
                Ok(record) => state.apply(&record),
                Err(_) => break, // torn tail of an interrupted append
            }
        }
        Ok(state)
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

/// Appends `records` to the log at `path` and fsyncs it (and the directory when the log is new).
pub fn append(path: &Path, records: &[Record]) -> std::io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    let existed = path.exists();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    file.write_all(&buf)?;
    file.sync_data()?;
    if !existed && let Some(dir) = path.parent() {
        crate::spool::fsync_dir(dir)?;
    }
    Ok(())
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
