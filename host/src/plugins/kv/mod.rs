//! The plugin key-value stores: one per plugin, shared by all its instances (never between plugins) and kept
//! across reloads. [`KvStore`] is the seam for the backends `[kv] backend` chooses:
//! - [`embedded`]: redb in `<state>/kv.redb`, the default of `mailwit serve` (survives restarts);
//! - [`MemoryKv`]: a HashMap (tests, embedding, `backend = "memory"`);
//! - [`redis`]: a Redis server shared by several instances.
//!
//! [`Counted`] wraps any of them to count operations in the server's metrics.

pub mod embedded;
pub mod redis;
mod store;

use store::check_key;
pub use store::{KvStore, MAX_ENTRIES, MAX_KEY, MAX_VALUE};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Makes the kv store of a plugin (by plugin name).
pub type KvFactory = Arc<dyn Fn(&str) -> Arc<dyn KvStore> + Send + Sync>;

/// In-memory store with lazy expiry.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

impl MemoryKv {
    /// Makes room for one new key, dropping expired entries first.
    fn ensure_room(
        entries: &mut HashMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Result<(), String> {
        if entries.len() < MAX_ENTRIES || entries.contains_key(key) {
            return Ok(());
        }
        entries.retain(|_, e| e.live(now));
        if entries.len() >= MAX_ENTRIES {
            return Err(format!("kv store full ({MAX_ENTRIES} entries)"));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap();
        Ok(entries
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone()))
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(format!("value larger than {MAX_VALUE} bytes"));
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        Self::ensure_room(&mut entries, key, now)?;
        entries.insert(
            key.to_string(),
            Entry {
                value,
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(())
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        check_key(key)?;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        let current = match entries.get(key).filter(|e| e.live(now)) {
            Some(entry) => Some(
                std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| format!("value of {key:?} is not an integer"))?,
            ),
            None => None,
        };
        let next = current
            .unwrap_or(0)
            .checked_add(delta)
            .ok_or_else(|| "counter overflow".to_string())?;
        let expires = match current {
            Some(_) => entries.get(key).and_then(|e| e.expires),
            None => {
                Self::ensure_room(&mut entries, key, now)?;
                ttl.map(|t| now + t)
            }
        };
        entries.insert(
            key.to_string(),
            Entry {
                value: next.to_string().into_bytes(),
                expires,
            },
        );
        Ok(next)
    }

    async fn delete(&self, key: &str) -> Result<bool, String> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        Ok(entries.remove(key).is_some_and(|e| e.live(now)))
    }
}

/// Counts every operation of the store it wraps (`mailwit_kv_operations_total`).
pub struct Counted {
    pub inner: Arc<dyn KvStore>,
    pub backend: &'static str,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Counted {
    fn count<T>(&self, op: &'static str, result: Result<T, String>) -> Result<T, String> {
        self.metrics.kv(self.backend, op, result.is_ok());
        result
    }
}

#[async_trait::async_trait]
impl KvStore for Counted {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let result = self.inner.get(key).await;
        self.count("get", result)
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String> {
        let result = self.inner.put(key, value, ttl).await;
        self.count("put", result)
    }
    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        let result = self.inner.increment(key, delta, ttl).await;
        self.count("increment", result)
    }
    async fn delete(&self, key: &str) -> Result<bool, String> {
        let result = self.inner.delete(key).await;
        self.count("delete", result)
    }
}

/// The kv backend `[kv]` chooses, as a per-plugin factory for the runtime. Opens the embedded
/// database (`<state>/kv.redb` unless `[kv] path` says otherwise) or sets up the Redis
/// connection (lazily: Redis may come up later).
pub fn from_config(
    config: &crate::config::ops::KvConfig,
    state_dir: &std::path::Path,
) -> Result<(&'static str, KvFactory), String> {
    use crate::config::ops::KvBackend;
    let factory: KvFactory;
    let backend = match config.backend {
        KvBackend::Memory => {
            factory = Arc::new(|_: &str| Arc::new(MemoryKv::default()) as Arc<dyn KvStore>);
            "memory"
        }
        KvBackend::Embedded => {
            let path = config
                .path
                .clone()
                .unwrap_or_else(|| state_dir.join("kv.redb"));
            let db = embedded::EmbeddedDb::open(&path)?;
            factory = Arc::new(move |plugin: &str| Arc::new(db.store(plugin)) as Arc<dyn KvStore>);
            "embedded"
        }
        KvBackend::Redis => {
            let url = config.url.as_deref().ok_or("kv.url is required")?;
            let db = self::redis::RedisDb::new(url, config.prefix())?;
            factory = Arc::new(move |plugin: &str| Arc::new(db.store(plugin)) as Arc<dyn KvStore>);
            "redis"
        }
    };
    Ok((backend, factory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_are_atomic_text_and_expire() {
        let kv = MemoryKv::default();
        assert_eq!(kv.increment("c", 2, None).await, Ok(2));
        assert_eq!(kv.increment("c", 3, None).await, Ok(5));
        assert_eq!(kv.get("c").await, Ok(Some(b"5".to_vec())));
        kv.put("s", b"text".to_vec(), None).await.unwrap();
        assert!(kv.increment("s", 1, None).await.is_err());
        kv.put("t", b"x".to_vec(), Some(Duration::from_millis(0)))
            .await
            .unwrap();
        assert_eq!(kv.get("t").await, Ok(None));
        assert_eq!(kv.delete("c").await, Ok(true));
        assert_eq!(kv.delete("c").await, Ok(false));
        assert!(kv.put("", vec![], None).await.is_err());
        assert!(kv.put("big", vec![0; MAX_VALUE + 1], None).await.is_err());
    }
}
