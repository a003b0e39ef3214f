//! redb as the spool: messages in one table, per-recipient states in another keyed by
//! (message, n); one write transaction with `Durability::Immediate` per group.

use std::path::Path;

use anyhow::Result;
use redb::{Database, Durability, TableDefinition};

use super::group::{GroupCommit, Op};

const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
const STATES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("states");

pub fn open(dir: &Path) -> Result<GroupCommit> {
    let db = Database::create(dir.join("spool.redb"))?;
    Ok(GroupCommit::start(move |ops| {
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
    }))
}
