//! The durable message store. [`Spool::store`] returns only once the message and its envelope are
//! on disk (file and directory fsynced), sharing directory fsyncs between concurrent sessions
//! (group commit).
//!
//! # On-disk format (`<state>/queue/`)
//!
//! One flat directory; every file name starts with the message's [`QueueId`]:
//!
//! | file            | written by | content |
//! |-----------------|------------|---------|
//! | `ID.tmp`        | `store`    | a message being written; never read, removed on open |
//! | `ID.msg`        | `store`    | the message: see below; never modified after the rename |
//! | `ID.state`      | queue      | append-only JSON lines: per-recipient outcomes, hold/release |
//!
//! `ID.msg` is three parts:
//!
//! ```text
//! mailwit-spool 1\n                       magic and format version
//! {"id":…,"arrived_ms":…,"size":N,…}\n    the envelope and metadata as one JSON line (MessageMeta)
//! <N octets>                              the message exactly as it will be delivered (CRLF)
//! ```
//!
//! A queue id is 18 upper-case hex digits: 14 of a strictly increasing microsecond clock (kept
//! monotonic across restarts by seeding it from the newest id in the spool) and 4 random ones.
//! Ids therefore sort by arrival and are safe file names.
//!
//! # Durability
//!
//! `store` writes `ID.tmp` and fsyncs it (in the caller's blocking task, so concurrent sessions
//! write in parallel), then hands it to the committer thread. The committer takes every hand-off
//! waiting at that moment as one batch, renames each `ID.tmp` to `ID.msg`, fsyncs the directory
//! once, and only then completes the batch's `store` calls. A crash before the rename leaves at
//! most an `ID.tmp`, which [`Spool::open`] deletes; a crash after the directory fsync but before
//! the reply leaves a complete message that is delivered (the client may send it again: duplicate,
//! never loss). Cost per message: one file fsync plus 1/batch directory fsyncs (see [`SpoolStats`]).
//!
//! `ID.state` is the queue manager's; it is appended and fsynced per outcome, and a torn last
//! line (crash mid-append) is ignored on recovery. A message leaves the spool by deleting
//! `ID.msg` first, then `ID.state`; an orphaned `ID.state` is removed on open.

mod commit;
mod id;

use crate::policy::Envelope;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub use id::QueueId;

/// First line of every `ID.msg`.
const MAGIC: &[u8] = b"mailwit-spool 1\n";

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

/// The JSON line of `ID.msg`: everything about a message except its bytes.
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

/// Counters for measuring the cost of durability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub stored: u64,
    pub file_fsyncs: u64,
    pub dir_fsyncs: u64,
    /// Group-commit batches (one directory fsync each).
    pub batches: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    stored: AtomicU64,
    file_fsyncs: AtomicU64,
    dir_fsyncs: AtomicU64,
    batches: AtomicU64,
}

pub struct Spool {
    dir: PathBuf,
    ids: id::IdGenerator,
    committer: commit::Committer,
    counters: Arc<Counters>,
    arrivals_tx: mpsc::UnboundedSender<QueueId>,
    arrivals_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<QueueId>>>,
}

impl Spool {
    /// Opens (creating if needed) the spool directory (by convention `<state>/queue/`), removing
    /// half-written messages and orphaned state files left by a crash.
    pub async fn open(dir: PathBuf) -> std::io::Result<Spool> {
        let scan_dir = dir.clone();
        let newest = tokio::task::spawn_blocking(move || recover(&scan_dir))
            .await
            .map_err(std::io::Error::other)??;
        let counters = Arc::new(Counters::default());
        let committer = commit::Committer::start(dir.clone(), counters.clone())?;
        let (arrivals_tx, arrivals_rx) = mpsc::unbounded_channel();
        Ok(Spool {
            ids: id::IdGenerator::new(newest.as_ref()),
            dir,
            committer,
            counters,
            arrivals_tx,
            arrivals_rx: std::sync::Mutex::new(Some(arrivals_rx)),
        })
    }

    /// Makes `incoming` durable and returns its id. Returns only after fsync of data and directory.
    pub async fn store(&self, incoming: Incoming) -> std::io::Result<QueueId> {
        let id = self.ids.next();
        let meta = MessageMeta {
            id: id.clone(),
            arrived_ms: now_ms(),
            size: incoming.message.len() as u64,
            envelope: incoming.envelope,
            quarantine: incoming.quarantine,
            session_id: incoming.session_id,
        };
        let tmp = self.dir.join(format!("{id}.tmp"));
        let counters = self.counters.clone();
        let tmp_for_write = tmp.clone();
        tokio::task::spawn_blocking(move || {
            write_message(&tmp_for_write, &meta, &incoming.message)?;
            counters.file_fsyncs.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(std::io::Error::other)??;
        let fin = self.dir.join(format!("{id}.msg"));
        self.committer.commit(tmp, fin).await?;
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
        // The queue manager may not be running (tests, tools): a closed channel is fine.
        let _ = self.arrivals_tx.send(id.clone());
        Ok(id)
    }

    /// The stream of ids stored from now on, for the queue manager. Returns `None` after the
    /// first call (there is one consumer).
    pub fn arrivals(&self) -> Option<mpsc::UnboundedReceiver<QueueId>> {
        self.arrivals_rx.lock().unwrap().take()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            stored: self.counters.stored.load(Ordering::Relaxed),
            file_fsyncs: self.counters.file_fsyncs.load(Ordering::Relaxed),
            dir_fsyncs: self.counters.dir_fsyncs.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
        }
    }

    /// Every message in the spool, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<QueueId>> {
        list_ids(&self.dir)
    }

    /// The path of a message's state file (owned by the queue manager).
    pub fn state_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(format!("{id}.state"))
    }

    pub fn msg_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    /// Reads a message's envelope and metadata without its bytes.
    pub fn load_meta(&self, id: &QueueId) -> std::io::Result<MessageMeta> {
        let file = std::fs::File::open(self.msg_path(id))?;
        let mut reader = std::io::BufReader::new(file);
        read_header(&mut reader)
    }

    /// Reads a message back.
    pub fn load(&self, id: &QueueId) -> std::io::Result<SpooledMessage> {
        let file = std::fs::File::open(self.msg_path(id))?;
        let mut reader = std::io::BufReader::new(file);
        let meta = read_header(&mut reader)?;
        let mut message = Vec::with_capacity(meta.size as usize);
        std::io::Read::read_to_end(&mut reader, &mut message)?;
        if message.len() as u64 != meta.size {
            return Err(invalid(format!(
                "{id}: message is {} octets, header says {}",
                message.len(),
                meta.size
            )));
        }
        Ok(SpooledMessage { meta, message })
    }

    /// Removes a message for good: `ID.msg` first (so a crash in between leaves only an orphaned
    /// state file, which `open` cleans), then `ID.state`, then fsyncs the directory.
    pub fn remove(&self, id: &QueueId) -> std::io::Result<()> {
        match std::fs::remove_file(self.msg_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match std::fs::remove_file(self.state_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fsync_dir(&self.dir)?;
        self.counters.dir_fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn write_message(path: &Path, meta: &MessageMeta, message: &[u8]) -> std::io::Result<()> {
    let mut header = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    header.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let result = (|| {
        let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, &mut file);
        buffered.write_all(MAGIC)?;
        buffered.write_all(&header)?;
        buffered.write_all(message)?;
        buffered.flush()?;
        drop(buffered);
        file.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn read_header(reader: &mut impl BufRead) -> std::io::Result<MessageMeta> {
    let mut magic = Vec::new();
    reader.read_until(b'\n', &mut magic)?;
    if magic != MAGIC {
        return Err(invalid("not a mailwit spool file".into()));
    }
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    serde_json::from_slice(&line).map_err(|e| invalid(format!("bad spool header: {e}")))
}

pub(crate) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn list_ids(dir: &Path) -> std::io::Result<Vec<QueueId>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_suffix(".msg").and_then(QueueId::parse) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// Crash recovery: delete `ID.tmp` (never acknowledged) and `ID.state` without `ID.msg` (removal
/// interrupted). Returns the newest id, to keep ids increasing across restarts.
fn recover(dir: &Path) -> std::io::Result<Option<QueueId>> {
    std::fs::create_dir_all(dir)?;
    let mut changed = false;
    let mut newest: Option<QueueId> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        let Some(id) = QueueId::parse(stem) else {
            continue;
        };
        match ext {
            "tmp" => {
                tracing::warn!(queue_id = %id, "removing half-written spool file");
                std::fs::remove_file(entry.path())?;
                changed = true;
            }
            "state" if !dir.join(format!("{stem}.msg")).exists() => {
                std::fs::remove_file(entry.path())?;
                changed = true;
            }
            _ => {}
        }
        if newest.as_ref().is_none_or(|n| &id > n) {
            newest = Some(id);
        }
    }
    if changed {
        fsync_dir(dir)?;
    }
    // The directory itself must be durable in its parent for the first message to survive.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(newest)
}

#[cfg(test)]
mod tests;
