//! redb as the spool: messages in one table, per-recipient states in another keyed by
//! (message, n); one write transaction with `Durability::Immediate` per group.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use redb::{Database, Durability, TableDefinition};

use super::Store;
use super::group::{GroupCommit, Op, message_value};

const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
const STATES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("states");

pub struct Redb {
    group: GroupCommit,
    next: AtomicU64,
}

impl Redb {
    pub fn open(dir: &Path) -> Result<Redb> {
        let db = Database::create(dir.join("spool.redb"))?;
        let group = GroupCommit::start(move |ops| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut messages = txn.open_table(MESSAGES)?;
                let mut states = txn.open_table(STATES)?;
                for op in ops {
                    match op {
                        Op::Store { key, value } => {
                            messages.insert(key, value.as_slice())?;
                        }
                        Op::State { key, n, value } => {
                            states.insert((*key, *n), value.as_slice())?;
                        }
                        Op::Done { key, states: count } => {
                            messages.remove(key)?;
                            for n in 0..*count {
                                states.remove((*key, n))?;
                            }
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        });
        Ok(Redb {
            group,
            next: AtomicU64::new(1),
        })
    }
}

impl Store for Redb {
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
