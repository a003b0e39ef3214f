//! The durable message store: an append-only log of checksummed records in segment files, an
//! in-memory index rebuilt from it at start, and group commit. A message costs an append and a
//! share of one `fdatasync`, not a file: [`Spool::store`] returns once the message's record is
//! durable, and the queue manager's per-recipient state changes go into the same log
//! ([`Spool::append_state`]), as does the end of a message ([`Spool::discard`]).
//!
//! # On-disk format (`<state>/queue/`)
//!
//! | file                  | content |
//! |-----------------------|---------|
//! | `<16 hex>.seg`        | a segment: records appended in order (see `record.rs` for the octets) |
//! | `quarantine/*.rec`    | damaged records set aside at start, for an operator (never read back) |
//!
//! Records: *message* (id, envelope and metadata as JSON, the message octets exactly as they will
//! be delivered), *state* (opaque records of the queue manager for one message, in order), *done*
//! (the message left the queue). Each carries a CRC-32 of its body.
//!
//! A queue id is 18 upper-case hex digits: 14 of a strictly increasing microsecond clock (kept
//! monotonic across restarts by seeding it from the newest id in the spool) and 4 random ones.
//!
//! # Durability
//!
//! One thread owns the newest ("active") segment (`commit.rs`): it takes every record waiting at
//! that moment, writes them with one `pwrite`, syncs them with one `fdatasync`, updates the index
//! and only then completes the callers, so 250 follows durability and concurrent sessions share
//! each sync. A new segment is created with its header, fsynced, and its directory fsynced before
//! any record in it is acknowledged. After a restart the spool always starts a new segment, so an
//! append never follows a torn record.
//!
//! On open every segment is read: a torn tail (an unacknowledged append cut by a crash) is
//! ignored; a record with a bad checksum in the middle of a segment is copied to `quarantine/`
//! with an error log line and skipped; the server starts either way (`segment.rs`).
//!
//! A message is done when its done record is durable; a crash before that repeats its last
//! deliveries (at-least-once: a duplicate, never a loss). Segments are reclaimed oldest first:
//! deleted when no queued message is left in them, or, when their queued messages take at most
//! half of them and they have been closed for [`SpoolOptions::compact_after`], after those
//! messages were copied (with their states) to the active segment.
//!
//! A `queue/` directory written by earlier versions (one `ID.msg` and `ID.state` file per
//! message) is migrated into the log on open (`legacy.rs`).

mod commit;
mod id;
mod index;
mod legacy;
mod message;
mod options;
mod record;
mod segment;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub use id::QueueId;
pub use message::{Incoming, MessageMeta, SpooledMessage};
pub use options::{SpoolOptions, SpoolStats};
pub(crate) use segment::fsync_dir;

pub struct Spool {
    ids: id::IdGenerator,
    shared: Arc<commit::Shared>,
    committer: commit::Committer,
    arrivals_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<QueueId>>>,
}

impl Spool {
    /// Opens (creating if needed) the spool directory (by convention `<state>/queue/`): reads
    /// every segment into the index, migrates old-format files, starts a new active segment.
    pub async fn open(dir: PathBuf) -> std::io::Result<Spool> {
        Spool::open_with(dir, SpoolOptions::default()).await
    }

    pub async fn open_with(dir: PathBuf, options: SpoolOptions) -> std::io::Result<Spool> {
        let scan_dir = dir.clone();
        let (index, active) = tokio::task::spawn_blocking(move || recover(&scan_dir))
            .await
            .map_err(std::io::Error::other)??;
        let ids = id::IdGenerator::new(index.newest());
        let (arrivals, arrivals_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(commit::Shared {
            dir,
            index: std::sync::Mutex::new(index),
            counters: std::sync::Mutex::default(),
            options,
            arrivals,
        });
        let committer = commit::Committer::start(shared.clone(), active)?;
        Ok(Spool {
            ids,
            shared,
            committer,
            arrivals_rx: std::sync::Mutex::new(Some(arrivals_rx)),
        })
    }

    /// Makes `incoming` durable and returns its id. Returns only once its record is synced.
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
        let bytes = record::message(&meta, &[], &incoming.message)?;
        drop(incoming.message);
        self.committer
            .submit(bytes, commit::Change::Store(meta))
            .await?;
        Ok(id)
    }

    /// Appends the queue manager's records for message `id` (in order, after the earlier ones);
    /// returns once they are durable. Records for a message no longer queued are dropped.
    pub async fn append_state(&self, id: &QueueId, states: Vec<Vec<u8>>) -> std::io::Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        let bytes = record::state(id, &states)?;
        self.committer
            .submit(bytes, commit::Change::States(id.clone(), states))
            .await
    }

    /// Takes a message out of the queue for good (delivered, bounced or removed by an operator);
    /// returns once that is durable. Its space is reclaimed with its segment's.
    pub async fn discard(&self, id: &QueueId) -> std::io::Result<()> {
        let bytes = record::done(id)?;
        self.committer
            .submit(bytes, commit::Change::Done(id.clone()))
            .await
    }

    /// The stream of ids stored from now on, for the queue manager. Returns `None` after the
    /// first call (there is one consumer).
    pub fn arrivals(&self) -> Option<mpsc::UnboundedReceiver<QueueId>> {
        self.arrivals_rx.lock().unwrap().take()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn stats(&self) -> SpoolStats {
        *self.shared.counters()
    }

    /// Every queued message, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<QueueId>> {
        Ok(self.shared.index().messages.keys().cloned().collect())
    }

    /// The segment files in use (the active one included), for tests and tools.
    pub fn segments(&self) -> Vec<PathBuf> {
        let index = self.shared.index();
        index
            .segments
            .keys()
            .map(|&seq| self.shared.dir.join(segment::file_name(seq)))
            .collect()
    }

    /// A queued message's envelope and metadata (from memory).
    pub fn load_meta(&self, id: &QueueId) -> std::io::Result<MessageMeta> {
        let index = self.shared.index();
        let m = index.messages.get(id).ok_or_else(|| not_queued(id))?;
        Ok(m.meta.clone())
    }

    /// A queued message's state records (appended by [`Spool::append_state`]), oldest first.
    pub fn states(&self, id: &QueueId) -> std::io::Result<Vec<Vec<u8>>> {
        let index = self.shared.index();
        let m = index.messages.get(id).ok_or_else(|| not_queued(id))?;
        Ok(m.states.clone())
    }

    /// Reads a message back (checking its record's checksum). Blocking: call from a blocking task.
    pub fn load(&self, id: &QueueId) -> std::io::Result<SpooledMessage> {
        let (file, span) = {
            let index = self.shared.index();
            let m = index.messages.get(id).ok_or_else(|| not_queued(id))?;
            let seg = index
                .segments
                .get(&m.seq)
                .ok_or_else(|| std::io::Error::other(format!("{id}: segment missing")))?;
            (seg.file.clone(), m.span)
        };
        let body = commit::read_record(&file, span)?;
        match record::decode(&body) {
            Ok(record::Entry::Message { meta, message, .. }) if &meta.id == id => {
                Ok(SpooledMessage {
                    message: message.to_vec(),
                    meta,
                })
            }
            _ => Err(invalid(format!("{id}: the record is not this message"))),
        }
    }
}

fn not_queued(id: &QueueId) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{id} is not in the queue"),
    )
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

/// Reads every segment into a fresh index, starts a new active segment, migrates old-format
/// files into it.
fn recover(dir: &Path) -> std::io::Result<(index::Index, commit::Active)> {
    std::fs::create_dir_all(dir)?;
    // The directory itself must be durable in its parent for the first message to survive.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    let quarantine = dir.join("quarantine");
    let mut index = index::Index::default();
    let seqs = segment::list(dir)?;
    for &seq in &seqs {
        let file = Arc::new(segment::open(dir, seq)?);
        let size = file.metadata()?.len();
        index.segments.insert(
            seq,
            index::Segment {
                file,
                size,
                live: 0,
                live_bytes: 0,
                closed_at: Some(std::time::Instant::now()),
            },
        );
        segment::scan(dir, seq, Some(&quarantine), |span, entry| match entry {
            record::Entry::Message { meta, states, .. } => index.put(meta, states, seq, span),
            record::Entry::State { id, states } => index.add_states(&id, states),
            record::Entry::Done { id } => {
                index.forget(&id);
            }
        })?;
    }
    let seq = seqs.last().map_or(1, |s| s + 1);
    let file = Arc::new(segment::create(dir, seq)?);
    let size = record::SEGMENT_MAGIC.len() as u64;
    index.segments.insert(
        seq,
        index::Segment {
            file: file.clone(),
            size,
            live: 0,
            live_bytes: 0,
            closed_at: None,
        },
    );
    let mut active = commit::Active {
        seq,
        file,
        size,
        broken: false,
    };
    legacy::migrate(dir, &mut index, &mut active)?;
    if !index.messages.is_empty() {
        tracing::info!(
            queued = index.messages.len(),
            segments = index.segments.len(),
            "spool opened"
        );
    }
    Ok((index, active))
}

/// Every message queued in the spool at `dir`, read without opening it for writing (no
/// quarantine copies, no new segment): for tests and tools, also while a server runs.
pub fn snapshot(dir: &Path) -> std::io::Result<Vec<SpooledMessage>> {
    let mut queued = std::collections::BTreeMap::new();
    let seqs = match segment::list(dir) {
        Ok(seqs) => seqs,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for seq in seqs {
        let scanned = segment::scan(dir, seq, None, |_, entry| match entry {
            record::Entry::Message { meta, message, .. } => {
                let message = message.to_vec();
                queued.insert(meta.id.clone(), SpooledMessage { meta, message });
            }
            record::Entry::State { .. } => {}
            record::Entry::Done { id } => {
                queued.remove(&id);
            }
        });
        match scanned {
            Ok(_) => {}
            // Reclaimed meanwhile: whatever was live in it was copied to a later segment first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(queued.into_values().collect())
}

#[cfg(test)]
mod tests;
