//! The shared kv backend: a Redis server (`[kv] backend = "redis"`), so several mailwit instances
//! see the same greylist triplets and rate-limit counters.
//!
//! Keys are `<prefix>:<plugin>:<key>`, so plugins never see each other's keys and several
//! deployments can share one server. TTLs are Redis's own (`PX`). A counter is created with its
//! TTL and incremented in one MULTI (`SET NX PX` then `INCRBY`), as the in-process stores do.
//! Key and value sizes have the same limits as the embedded store; the number of entries is
//! bounded by Redis's own `maxmemory` policy instead.
//!
//! The connection is the `redis` crate's `ConnectionManager`, created lazily: the server starts
//! while Redis is down, reconnects by itself when it returns, and every operation is bounded by
//! [`OPERATION_TIMEOUT`], so a dead Redis makes a plugin's kv call fail (the plugin's own error
//! handling decides) instead of holding the SMTP session.

use super::store::{KvStore, MAX_VALUE, check_key};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;

/// The longest a kv call waits for Redis.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection to one Redis server, shared by every plugin's store.
#[derive(Clone)]
pub struct RedisDb {
    connection: ConnectionManager,
    prefix: Arc<str>,
}

impl RedisDb {
    /// Parses the URL and sets up the (lazy) connection; no network traffic yet.
    pub fn new(url: &str, prefix: &str) -> Result<RedisDb, String> {
        let client = redis::Client::open(url).map_err(|e| format!("kv.url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("kv: redis: {e}"))?;
        Ok(RedisDb {
            connection,
            prefix: Arc::from(prefix),
        })
    }

    pub fn store(&self, plugin: &str) -> RedisKv {
        RedisKv {
            connection: self.connection.clone(),
            namespace: format!("{}:{plugin}:", self.prefix),
        }
    }
}

/// One plugin's keys in Redis.
pub struct RedisKv {
    connection: ConnectionManager,
    namespace: String,
}

impl RedisKv {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: Command) -> Result<T, String> {
        let mut connection = self.connection.clone();
        let work = async move {
            match command {
                Command::One(cmd) => cmd.query_async(&mut connection).await,
                Command::Atomic(pipe) => pipe.query_async(&mut connection).await,
            }
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("kv: redis: {e}")),
            Err(_) => Err("kv: redis did not answer in time".to_string()),
        }
    }
}

enum Command {
    One(redis::Cmd),
    Atomic(redis::Pipeline),
}

fn millis(ttl: Duration) -> u64 {
    // PX 0 is an error in Redis; a zero TTL (already expired) becomes 1 ms.
    (ttl.as_millis() as u64).max(1)
}

#[async_trait::async_trait]
impl KvStore for RedisKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        check_key(key)?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.run(Command::One(cmd)).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(format!("value larger than {MAX_VALUE} bytes"));
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        self.run(Command::One(cmd)).await
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        check_key(key)?;
        let full = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(ttl) = ttl {
            // Creates the counter with its TTL; an existing counter keeps its own.
            pipe.cmd("SET")
                .arg(&full)
                .arg(0)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .ignore();
        }
        pipe.cmd("INCRBY").arg(&full).arg(delta);
        let (value,): (i64,) = self.run(Command::Atomic(pipe)).await?;
        Ok(value)
    }

    async fn delete(&self, key: &str) -> Result<bool, String> {
        check_key(key)?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        let removed: i64 = self.run(Command::One(cmd)).await?;
        Ok(removed > 0)
    }
}
