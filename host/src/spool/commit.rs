//! Group commit: one thread owns the active segment. It takes every record waiting at that moment
//! as one batch, appends them with one write, makes them durable with one `fdatasync`, applies
//! them to the index, and only then completes the batch's callers. Records that arrive while a
//! batch is being synced wait for the next one, so concurrent sessions share each sync.
//!
//! Between batches (and at least once a second) the same thread reclaims space, oldest segment
//! first: a closed segment with no queued message left is deleted; one whose queued messages
//! take at most half of it, closed for a while, has them copied (with their states) to the active
//! segment, then is deleted. Deleting only the oldest segment keeps every `done` and state record
//! of a message at or after the message's own record, so a deletion can never bring a delivered
//! message back or drop a live message's states.

use super::id::QueueId;
use super::index::{Index, Segment};
use super::message::MessageMeta;
use super::options::{SpoolOptions, SpoolStats};
use super::record::{self, Entry, Frame};
use super::segment::fsync_dir;
use super::segment::{self, Span};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a record changes in the index once it is durable.
pub(super) enum Change {
    Store(MessageMeta),
    States(QueueId, Vec<Vec<u8>>),
    Done(QueueId),
}

struct Pending {
    bytes: Vec<u8>,
    change: Change,
    done: oneshot::Sender<std::io::Result<()>>,
}

/// What the committer thread and the spool's readers share.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub index: Mutex<Index>,
    pub counters: Mutex<SpoolStats>,
    pub options: SpoolOptions,
    /// New messages, announced to the queue manager as soon as they are durable (even if the
    /// session that stored one gave up waiting meanwhile).
    pub arrivals: tokio::sync::mpsc::UnboundedSender<QueueId>,
}

impl Shared {
    pub fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A leaf lock: taken last (possibly under the index lock) and held for one update.
    pub fn counters(&self) -> std::sync::MutexGuard<'_, SpoolStats> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The segment being appended to.
pub(super) struct Active {
    pub seq: u64,
    pub file: Arc<File>,
    pub size: u64,
    /// A write or sync failed: the next batch starts a new segment instead of appending after
    /// octets of unknown state.
    pub broken: bool,
}

pub(super) struct Committer {
    tx: std_mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the committer thread; it ends when the `Committer` (the spool) is dropped.
    pub(super) fn start(shared: Arc<Shared>, active: Active) -> std::io::Result<Committer> {
        let (tx, rx) = std_mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run(shared, rx, active))?;
        Ok(Committer { tx })
    }

    /// Appends `bytes` (one framed record) and returns once it is durable and applied.
    pub(super) async fn submit(&self, bytes: Vec<u8>, change: Change) -> std::io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
                bytes,
                change,
                done,
            })
            .map_err(|_| std::io::Error::other("spool committer stopped"))?;
        wait.await
            .map_err(|_| std::io::Error::other("spool committer stopped"))?
    }
}

fn run(shared: Arc<Shared>, rx: std_mpsc::Receiver<Pending>, mut active: Active) {
    let mut buf = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(first) => {
                let mut batch = vec![first];
                // Everything that queued up while the previous batch was being synced.
                batch.extend(rx.try_iter());
                commit(&shared, &mut active, batch, &mut buf);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Err(e) = reclaim(&shared, &mut active, &mut buf) {
            tracing::error!(error = %e, "spool space reclamation failed; will retry");
        }
    }
}

fn commit(shared: &Shared, active: &mut Active, batch: Vec<Pending>, buf: &mut Vec<u8>) {
    let spans = match append(
        shared,
        active,
        batch.iter().map(|p| p.bytes.as_slice()),
        buf,
    ) {
        Ok(spans) => spans,
        Err(e) => {
            tracing::error!(error = %e, "spool append failed");
            for p in batch {
                let _ = p
                    .done
                    .send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            return;
        }
    };
    let seq = active.seq;
    let mut waiters = Vec::with_capacity(batch.len());
    let mut arrived = Vec::new();
    {
        let mut index = shared.index();
        for (p, span) in batch.into_iter().zip(spans) {
            match p.change {
                Change::Store(meta) => {
                    arrived.push(meta.id.clone());
                    index.put(meta, Vec::new(), seq, span);
                    shared.counters().stored += 1;
                }
                Change::States(id, states) => index.add_states(&id, states),
                Change::Done(id) => {
                    index.forget(&id);
                }
            }
            waiters.push(p.done);
        }
        if let Some(seg) = index.segments.get_mut(&seq) {
            seg.size = active.size;
        }
    }
    for id in arrived {
        // The queue manager may not be running (tests, tools): a closed channel is fine.
        let _ = shared.arrivals.send(id);
    }
    for w in waiters {
        let _ = w.send(Ok(()));
    }
}

/// Writes `records` at the end of the active segment (starting a new one first if it is full or
/// broken) and syncs them. Returns where each landed.
fn append<'a>(
    shared: &Shared,
    active: &mut Active,
    records: impl Iterator<Item = &'a [u8]>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Vec<Span>> {
    if active.broken || active.size >= shared.options.segment_bytes {
        rotate(shared, active)?;
    }
    buf.clear();
    let mut spans = Vec::new();
    for r in records {
        spans.push(Span {
            offset: active.size + buf.len() as u64,
            len: r.len() as u32,
        });
        buf.extend_from_slice(r);
    }
    let written = active
        .file
        .write_all_at(buf, active.size)
        .and_then(|()| active.file.sync_data());
    {
        let mut counters = shared.counters();
        counters.file_fsyncs += 1;
        counters.batches += 1;
    }
    if let Err(e) = written {
        active.broken = true;
        return Err(e);
    }
    active.size += buf.len() as u64;
    // Give back the memory of an unusually large batch.
    if buf.capacity() > 8 << 20 {
        *buf = Vec::new();
    }
    Ok(spans)
}

/// Closes the active segment and starts the next one (durably created before any use).
fn rotate(shared: &Shared, active: &mut Active) -> std::io::Result<()> {
    let seq = active.seq + 1;
    let file = Arc::new(segment::create(&shared.dir, seq)?);
    shared.counters().dir_fsyncs += 1;
    let size = record::SEGMENT_MAGIC.len() as u64;
    let mut index = shared.index();
    if let Some(old) = index.segments.get_mut(&active.seq) {
        old.closed_at = Some(Instant::now());
    }
    index.segments.insert(
        seq,
        Segment {
            file: file.clone(),
            size,
            live: 0,
            live_bytes: 0,
            closed_at: None,
        },
    );
    *active = Active {
        seq,
        file,
        size,
        broken: false,
    };
    Ok(())
}

/// Deletes or compacts the oldest segments while that is possible.
fn reclaim(shared: &Shared, active: &mut Active, buf: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        let (seq, compact) = {
            let index = shared.index();
            let Some((&seq, seg)) = index.segments.first_key_value() else {
                return Ok(());
            };
            if seq == active.seq {
                return Ok(());
            }
            if seg.live == 0 {
                (seq, None)
            } else if seg.live_bytes * 2 <= seg.size
                && seg
                    .closed_at
                    .is_some_and(|t| t.elapsed() >= shared.options.compact_after)
            {
                let movers: Vec<_> = index
                    .living_in(seq)
                    .into_iter()
                    .filter_map(|id| {
                        let m = index.messages.get(&id)?;
                        Some((m.meta.clone(), m.states.clone(), m.span))
                    })
                    .collect();
                (seq, Some((seg.file.clone(), movers)))
            } else {
                return Ok(());
            }
        };
        if let Some((file, movers)) = compact {
            move_forward(shared, active, &file, movers, buf)?;
        }
        shared.index().segments.remove(&seq);
        match std::fs::remove_file(shared.dir.join(segment::file_name(seq))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fsync_dir(&shared.dir)?;
        {
            let mut counters = shared.counters();
            counters.dir_fsyncs += 1;
            counters.reclaimed += 1;
        }
    }
}

/// Copies live messages (with their states) from an old segment to the active one.
fn move_forward(
    shared: &Shared,
    active: &mut Active,
    from: &File,
    movers: Vec<(MessageMeta, Vec<Vec<u8>>, Span)>,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut copies = Vec::with_capacity(movers.len());
    for (meta, states, span) in &movers {
        let old = read_record(from, *span)?;
        let Ok(Entry::Message { message, .. }) = record::decode(&old) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: record changed under compaction", meta.id),
            ));
        };
        copies.push(record::message(meta, states, message)?);
    }
    let spans = append(shared, active, copies.iter().map(Vec::as_slice), buf)?;
    let mut index = shared.index();
    for ((meta, states, _), span) in movers.into_iter().zip(spans) {
        index.put(meta, states, active.seq, span);
    }
    if let Some(seg) = index.segments.get_mut(&active.seq) {
        seg.size = active.size;
    }
    shared.counters().compacted += copies.len() as u64;
    Ok(())
}

/// Reads the record at `span` and returns its body, checked against its checksum.
pub(super) fn read_record(file: &File, span: Span) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0; span.len as usize];
    file.read_exact_at(&mut bytes, span.offset)?;
    match record::frame_at(&bytes, 0) {
        Frame::Valid { end, .. } if end == bytes.len() => {
            bytes.drain(..record::FRAME_HEADER);
            Ok(bytes)
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("spool record at offset {} fails its checksum", span.offset),
        )),
    }
}
