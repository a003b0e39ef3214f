//! Group commit for the engines that do not group by themselves: one thread takes every
//! operation waiting at that moment and hands them to the engine as one durable write, then
//! answers their callers (what mailwit's spool does for its log).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::Result;
use tokio::sync::oneshot;

use super::Store;

/// One spool operation, keyed by a message number.
pub enum Op {
    Store { key: u64, value: Vec<u8> },
    State { key: u64, n: u32, value: Vec<u8> },
    Done { key: u64, states: u32 },
}

type Waiting = (Op, oneshot::Sender<Result<(), String>>);

/// Also the [`Store`] of such an engine: it numbers the messages and submits each operation.
pub struct GroupCommit {
    tx: mpsc::Sender<Waiting>,
    groups: Arc<AtomicU64>,
    next: AtomicU64,
}

impl GroupCommit {
    /// `commit` writes one group durably; it runs on the group thread.
    pub fn start(mut commit: impl FnMut(&[Op]) -> Result<()> + Send + 'static) -> GroupCommit {
        let (tx, rx) = mpsc::channel::<Waiting>();
        let groups = Arc::new(AtomicU64::new(0));
        let counted = groups.clone();
        std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let (ops, waiters): (Vec<Op>, Vec<_>) = batch.into_iter().unzip();
                let result = commit(&ops).map_err(|e| format!("{e:#}"));
                counted.fetch_add(1, Ordering::Relaxed);
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        GroupCommit {
            tx,
            groups,
            next: AtomicU64::new(1),
        }
    }

    /// Queues `op` for the next group and returns once that group is durable.
    pub async fn submit(&self, op: Op) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((op, done))
            .map_err(|_| anyhow::anyhow!("group thread stopped"))?;
        wait.await?.map_err(anyhow::Error::msg)
    }
}

impl Store for GroupCommit {
    type Id = u64;

    async fn store(&self, envelope: &[u8], message: Vec<u8>) -> Result<u64> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let value = message_value(envelope, &message);
        drop(message);
        self.submit(Op::Store { key, value }).await?;
        Ok(key)
    }

    async fn state(&self, id: &u64, n: u32, value: Vec<u8>) -> Result<()> {
        self.submit(Op::State { key: *id, n, value }).await
    }

    async fn done(&self, id: &u64, states: u32) -> Result<()> {
        self.submit(Op::Done { key: *id, states }).await
    }

    fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }
}

/// A message's value: the envelope's length, the envelope, the octets (one record, as the
/// segment log keeps them).
pub fn message_value(envelope: &[u8], message: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(4 + envelope.len() + message.len());
    value.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
    value.extend_from_slice(envelope);
    value.extend_from_slice(message);
    value
}
