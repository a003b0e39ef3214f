//! The default kv backend: an embedded redb database in the state directory (`<state>/kv.redb`),
//! one table per plugin. It survives restarts, so greylisting and rate limits do not start over.
//!
//! Why redb: a single file, ACID commits that are durable when `commit` returns, pure Rust with
//! no dependencies of its own and no background threads. fjall (an LSM tree) buffers writes and
//! compacts in the background, which suits write-heavy stores much larger than a policy kv; its
//! extra crates would only lengthen the build.
//!
//! Durability: `put` and `delete` are durable when they return (a greylist triplet must survive
//! `kill -9`). Counters (`increment`, what rate limits do on every connection and message) are
//! committed without an fsync and made durable by a background flush at most [`FLUSH_EVERY`]
//! later, or by the next durable commit, or as the server stops ([`flush_all`]; a `kill -9`
//! within that second loses those counts): an fsync per counter
//! doubled the cost of a message on disk, and a crash losing the last second of rate-limit counts
//! is harmless (Redis's `appendfsync everysec` makes the same trade).
//!
//! Each value is stored with its expiry: 8 bytes of big-endian milliseconds since the Unix epoch
//! (0: none), then the value. Wall-clock time, because a restart must not renew every TTL.
//! Expired entries are invisible at once and removed when the table is full (and by
//! [`EmbeddedKv::purge_expired`] at open). The limits are [`MemoryKv`](super::MemoryKv)'s.

use super::store::{KvStore, MAX_ENTRIES, MAX_VALUE, check_key};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableError,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest time a counter update stays in memory only.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The database and whether it holds commits not yet on disk.
struct Shared {
    db: Database,
    unflushed: AtomicBool,
    /// Held around every write transaction: redb has one writer at a time and no way to ask
    /// without waiting, so this lets a counter update run inline when nobody else is writing.
    writer: Mutex<()>,
}

impl Shared {
    /// Makes every earlier non-durable commit durable (an empty durable commit does it).
    fn flush(&self) -> Result<(), String> {
        if !self.unflushed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let _writer = self.lock_writer();
        let result = self
            .db
            .begin_write()
            .map_err(err)
            .and_then(|txn| txn.commit().map_err(err));
        if result.is_err() {
            self.unflushed.store(true, Ordering::Release);
        }
        result
    }
}

impl Shared {
    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "kv: the last counter updates could not be made durable");
        }
    }
}

/// The database file every plugin's table lives in.
#[derive(Clone)]
pub struct EmbeddedDb {
    shared: Arc<Shared>,
}

impl EmbeddedDb {
    /// Opens (or creates) the database file, with a thread that flushes counter updates.
    pub fn open(path: &Path) -> Result<EmbeddedDb, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let db = Database::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let shared = Arc::new(Shared {
            db,
            unflushed: AtomicBool::new(false),
            writer: Mutex::new(()),
        });
        register(&shared);
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("kv-flush".into())
            .spawn(move || flush_until_closed(weak))
            .map_err(|e| format!("kv flush thread: {e}"))?;
        Ok(EmbeddedDb { shared })
    }

    /// The store of one plugin (its own table).
    pub fn store(&self, plugin: &str) -> EmbeddedKv {
        let kv = EmbeddedKv {
            shared: self.shared.clone(),
            table: Arc::from(format!("plugin:{plugin}")),
        };
        if let Err(e) = kv.purge_expired() {
            tracing::warn!(plugin, error = %e, "kv: purging expired entries failed");
        }
        kv
    }
}

/// Every database opened in this process, so the server can flush their counters as it stops.
static OPEN: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn register(shared: &Arc<Shared>) {
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    open.retain(|db| db.strong_count() > 0);
    open.push(Arc::downgrade(shared));
}

/// Makes the counter updates of every open database durable: the server calls it as it stops
/// (it exits without dropping the databases, so their `Drop` would not run).
pub fn flush_all() {
    let open: Vec<_> = OPEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for shared in open {
        if let Err(e) = shared.flush() {
            tracing::warn!(error = %e, "kv: the last counter updates could not be made durable");
        }
    }
}

/// Flushes counter updates every [`FLUSH_EVERY`] until the database is closed.
fn flush_until_closed(shared: Weak<Shared>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.flush() {
            tracing::warn!(error = %e, "kv: flushing counter updates failed (retried)");
        }
    }
}

/// One plugin's table in the embedded database.
pub struct EmbeddedKv {
    shared: Arc<Shared>,
    table: Arc<str>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn encode(value: &[u8], expires_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// (expiry, value) of a stored record; a record too short to carry an expiry is treated as gone.
fn decode(record: &[u8]) -> Option<(u64, &[u8])> {
    let (expiry, value) = record.split_at_checked(8)?;
    Some((u64::from_be_bytes(expiry.try_into().ok()?), value))
}

fn live(expires_ms: u64, now: u64) -> bool {
    expires_ms == 0 || expires_ms > now
}

fn expiry(ttl: Option<Duration>, now: u64) -> u64 {
    // A zero TTL is already expired (as in MemoryKv); never 0, which means "none".
    ttl.map_or(0, |t| now.saturating_add(t.as_millis() as u64).max(1))
}

fn err(e: impl std::fmt::Display) -> String {
    format!("kv store: {e}")
}

impl EmbeddedKv {
    fn definition(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.table)
    }

    /// Removes expired entries; returns how many.
    pub fn purge_expired(&self) -> Result<u64, String> {
        let now = now_ms();
        let _writer = self.shared.lock_writer();
        let txn = self.shared.db.begin_write().map_err(err)?;
        let removed = {
            let mut table = txn.open_table(self.definition()).map_err(err)?;
            let before = table.len().map_err(err)?;
            table
                .retain(|_, record| decode(record).is_some_and(|(at, _)| live(at, now)))
                .map_err(err)?;
            before - table.len().map_err(err)?
        };
        txn.commit().map_err(err)?;
        Ok(removed)
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let txn = self.shared.db.begin_read().map_err(err)?;
        let table = match txn.open_table(self.definition()) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let now = now_ms();
        Ok(table.get(key).map_err(err)?.and_then(|guard| {
            decode(guard.value())
                .filter(|(at, _)| live(*at, now))
                .map(|(_, v)| v.to_vec())
        }))
    }

    /// Runs `change` on the current live value of `key` in one write transaction; it returns
    /// the record to store (None: leave the key as it is) and the answer. `_writer`: the writer
    /// lock, which the caller holds for the whole update. `durable`: the commit is on disk when
    /// this returns; otherwise the next flush puts it there.
    fn update<T>(
        &self,
        _writer: &MutexGuard<'_, ()>,
        key: &str,
        durable: bool,
        change: impl FnOnce(Option<(u64, &[u8])>, u64) -> Result<(Option<Vec<u8>>, T), String>,
    ) -> Result<T, String> {
        let now = now_ms();
        let mut txn = self.shared.db.begin_write().map_err(err)?;
        if !durable {
            txn.set_durability(Durability::None).map_err(err)?;
        }
        let answer = {
            let mut table = txn.open_table(self.definition()).map_err(err)?;
            let current = table
                .get(key)
                .map_err(err)?
                .map(|guard| guard.value().to_vec());
            let live_current = current
                .as_deref()
                .and_then(decode)
                .filter(|(at, _)| live(*at, now));
            let (record, answer) = change(live_current, now)?;
            if let Some(record) = record {
                if current.is_none() && table.len().map_err(err)? >= MAX_ENTRIES as u64 {
                    // Full: drop expired entries first, then refuse if still full.
                    table
                        .retain(|_, r| decode(r).is_some_and(|(at, _)| live(at, now)))
                        .map_err(err)?;
                    if table.len().map_err(err)? >= MAX_ENTRIES as u64 {
                        return Err(format!("kv store full ({MAX_ENTRIES} entries)"));
                    }
                }
                table.insert(key, record.as_slice()).map_err(err)?;
            }
            answer
        };
        txn.commit().map_err(err)?;
        if !durable {
            self.shared.unflushed.store(true, Ordering::Release);
        }
        Ok(answer)
    }

    fn delete_blocking(&self, key: &str) -> Result<bool, String> {
        let now = now_ms();
        let _writer = self.shared.lock_writer();
        let txn = self.shared.db.begin_write().map_err(err)?;
        let existed = {
            let mut table = txn.open_table(self.definition()).map_err(err)?;
            let removed = table.remove(key).map_err(err)?;
            removed.is_some_and(|guard| decode(guard.value()).is_some_and(|(at, _)| live(at, now)))
        };
        txn.commit().map_err(err)?;
        Ok(existed)
    }

    fn clone_handle(&self) -> EmbeddedKv {
        EmbeddedKv {
            shared: self.shared.clone(),
            table: self.table.clone(),
        }
    }

    /// Runs blocking database work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(EmbeddedKv) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let handle = self.clone_handle();
        tokio::task::spawn_blocking(move || work(handle))
            .await
            .map_err(|e| format!("kv store task failed: {e}"))?
    }
}

/// A key's live record as a change sees it: (expiry, value).
type Live<'a> = Option<(u64, &'a [u8])>;
/// What a change returns: the record to store (None: leave it) and the caller's answer.
type Stored<T> = (Option<Vec<u8>>, T);

/// The change a counter update makes: the live value plus `delta` (a new counter starts at 0 and
/// takes `ttl`; an existing one keeps its expiry).
fn count(
    key: &str,
    delta: i64,
    ttl: Option<Duration>,
) -> impl FnOnce(Live<'_>, u64) -> Result<Stored<i64>, String> {
    let name = key.to_string();
    move |current, now| {
        let (value, expires) = match current {
            Some((at, bytes)) => {
                let n = std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| format!("value of {name:?} is not an integer"))?;
                (n, at)
            }
            // The TTL applies when the counter is created.
            None => (0, expiry(ttl, now)),
        };
        let next = value
            .checked_add(delta)
            .ok_or_else(|| "counter overflow".to_string())?;
        Ok((Some(encode(next.to_string().as_bytes(), expires)), next))
    }
}

#[async_trait::async_trait]
impl KvStore for EmbeddedKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        // A read transaction never waits for a writer (redb is MVCC) and does no fsync: inline.
        self.get_blocking(key)
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(format!("value larger than {MAX_VALUE} bytes"));
        }
        let key = key.to_string();
        self.blocking(move |kv| {
            kv.update(&kv.shared.lock_writer(), &key, true, |_, now| {
                Ok((Some(encode(&value, expiry(ttl, now))), ()))
            })
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        check_key(key)?;
        // Uncontended, a non-durable commit is microseconds of memory work: cheaper inline than
        // a hop to the blocking pool and back (two thread wake-ups per counter). When another
        // write (a durable one, or the flush) holds the writer, wait on the blocking pool.
        if let Ok(writer) = self.shared.writer.try_lock() {
            return self.update(&writer, key, false, count(key, delta, ttl));
        }
        let key = key.to_string();
        self.blocking(move |kv| {
            let writer = kv.shared.lock_writer();
            kv.update(&writer, &key, false, count(&key, delta, ttl))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, String> {
        let key = key.to_string();
        self.blocking(move |kv| kv.delete_blocking(&key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_counters_and_ttls_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        {
            let db = EmbeddedDb::open(&path).unwrap();
            let kv = db.store("grey");
            assert_eq!(kv.get("missing").await, Ok(None));
            kv.put("a", b"1".to_vec(), None).await.unwrap();
            kv.put("gone", b"x".to_vec(), Some(Duration::ZERO))
                .await
                .unwrap();
            assert_eq!(kv.get("gone").await, Ok(None));
            assert_eq!(
                kv.increment("c", 2, Some(Duration::from_secs(60))).await,
                Ok(2)
            );
            assert_eq!(kv.increment("c", 3, None).await, Ok(5));
            assert!(kv.increment("a", 1, None).await.is_ok());
            kv.put("s", b"text".to_vec(), None).await.unwrap();
            assert!(kv.increment("s", 1, None).await.is_err());
            assert!(kv.put("", vec![], None).await.is_err());
            assert!(kv.put("big", vec![0; MAX_VALUE + 1], None).await.is_err());
            // Plugins do not see each other's keys.
            assert_eq!(db.store("other").get("c").await, Ok(None));
        }
        let db = EmbeddedDb::open(&path).unwrap();
        let kv = db.store("grey");
        assert_eq!(kv.get("c").await, Ok(Some(b"5".to_vec())));
        assert_eq!(kv.get("a").await, Ok(Some(b"2".to_vec())));
        assert_eq!(kv.get("gone").await, Ok(None));
        assert_eq!(kv.delete("c").await, Ok(true));
        assert_eq!(kv.delete("c").await, Ok(false));
    }
}
