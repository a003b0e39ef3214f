//! The plugin's key-value store (needs the `kv` grant), shared by all instances of one plugin and
//! kept by the host; keys are the plugin's own (other plugins cannot see them).

pub use crate::bindings::mailwit::plugin::kv::{Error, delete, get, increment, put};

/// Adds one to the counter `key` and returns the new count. The counter expires `window_ms` after
/// it was created, so this counts events per fixed window (rate limits).
pub fn count(key: &str, window_ms: u64) -> Result<i64, Error> {
    increment(key, 1, Some(window_ms))
}

/// A `u64` stored with [`put_u64`]; `None` when absent, expired or not 8 bytes.
pub fn get_u64(key: &str) -> Result<Option<u64>, Error> {
    Ok(get(key)?.and_then(|bytes| Some(u64::from_le_bytes(bytes.try_into().ok()?))))
}

/// Stores a `u64` (little-endian) with an optional time to live.
pub fn put_u64(key: &str, value: u64, ttl_ms: Option<u64>) -> Result<(), Error> {
    put(key, &value.to_le_bytes(), ttl_ms)
}

/// A UTF-8 string stored with [`put_str`].
pub fn get_string(key: &str) -> Result<Option<String>, Error> {
    Ok(get(key)?.and_then(|bytes| String::from_utf8(bytes).ok()))
}

/// Stores a string with an optional time to live.
pub fn put_str(key: &str, value: &str, ttl_ms: Option<u64>) -> Result<(), Error> {
    put(key, value.as_bytes(), ttl_ms)
}
