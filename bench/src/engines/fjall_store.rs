//! fjall (an LSM tree) as the spool: messages and per-recipient states in two keyspaces; one
//! `WriteBatch` per group, committed with `PersistMode::SyncData` (its journal synced once).

use std::path::Path;

use anyhow::Result;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

use super::group::{GroupCommit, Op};

fn state_key(key: u64, n: u32) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&key.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

pub fn open(dir: &Path) -> Result<GroupCommit> {
    let db = Database::builder(dir.join("spool.fjall")).open()?;
    let messages = db.keyspace("messages", KeyspaceCreateOptions::default)?;
    let states = db.keyspace("states", KeyspaceCreateOptions::default)?;
    Ok(GroupCommit::start(move |ops| {
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
    }))
}
