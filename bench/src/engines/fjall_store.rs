//! fjall (an LSM tree) as the spool: messages and per-recipient states in two keyspaces; one
//! `WriteBatch` per group, committed with `PersistMode::SyncData` (its journal synced once).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

use super::Store;
use super::group::{GroupCommit, Op, message_value};

pub struct Fjall {
    group: GroupCommit,
    next: AtomicU64,
}

fn state_key(key: u64, n: u32) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&key.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

impl Fjall {
    pub fn open(dir: &Path) -> Result<Fjall> {
        let db = Database::builder(dir.join("spool.fjall")).open()?;
        let messages = db.keyspace("messages", KeyspaceCreateOptions::default)?;
        let states = db.keyspace("states", KeyspaceCreateOptions::default)?;
        let group = GroupCommit::start(move |ops| {
            let mut batch = db.batch().durability(Some(PersistMode::SyncData));
            for op in ops {
                match op {
                    Op::Store { key, value } => {
                        batch.insert(&messages, key.to_be_bytes(), value.as_slice())
                    }
                    Op::State { key, n, value } => {
                        batch.insert(&states, state_key(*key, *n), value.as_slice())
                    }
                    Op::Done { key, states: count } => {
                        batch.remove(&messages, key.to_be_bytes());
                        for n in 0..*count {
                            batch.remove(&states, state_key(*key, n));
                        }
                    }
                }
            }
            batch.commit()?;
            Ok(())
        });
        Ok(Fjall {
            group,
            next: AtomicU64::new(1),
        })
    }
}

impl Store for Fjall {
    type Id = u64;

    async fn store(&self, envelope: &[u8], message: Vec<u8>) -> Result<u64> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let value = message_value(envelope, &message);
        drop(message);
        self.group.submit(Op::Store { key, value }).await?;
        Ok(key)
    }

    async fn state(&self, id: &u64, n: u32, value: Vec<u8>) -> Result<()> {
        self.group.submit(Op::State { key: *id, n, value }).await
    }

    async fn done(&self, id: &u64, states: u32) -> Result<()> {
        self.group.submit(Op::Done { key: *id, states }).await
    }

    fn groups(&self) -> u64 {
        self.group.groups()
    }
}
