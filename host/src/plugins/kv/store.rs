//! The seam every kv backend implements, and the limits all of them apply (the backends use
//! this file, never `kv/mod.rs`, which chooses among them).

use std::time::Duration;

/// Bounds that keep one plugin from eating the host's memory through kv.
pub const MAX_KEY: usize = 1024;
pub const MAX_VALUE: usize = 64 * 1024;
pub const MAX_ENTRIES: usize = 100_000;

/// A plugin's key-value store. Counters are stored as decimal ASCII ("42"), so `get` reads them.
#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String>;
    /// Adds `delta` to the counter (missing counts as 0); `ttl` applies when it is created.
    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String>;
    /// Whether the key existed.
    async fn delete(&self, key: &str) -> Result<bool, String>;
}

/// The key limit every backend applies.
pub(super) fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("key must be 1..={MAX_KEY} bytes"));
    }
    Ok(())
}
