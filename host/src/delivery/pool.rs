//! Idle sessions kept for the next delivery to the same place: relays, LMTP servers and MX hosts
//! share this one pool.
//!
//! After a delivery a usable session waits here under a key that names where it goes and how it
//! was set up (address, TLS policy, login), for at most `idle_time`. The next delivery with the
//! same key takes it and starts with a pipelined RSET, which doubles as the check that the peer
//! is still there: a session the peer closed meanwhile is found dead before anything of the
//! message was sent, so the message goes over a new session at once. A session that has carried
//! `max_messages` messages is closed instead of kept (peers limit messages per connection, and a
//! session that never ends would never notice a changed policy or certificate).
//!
//! Expired sessions are closed (QUIT) by a sweep every `idle_time`, not left open until the next
//! delivery to the same place, which may never come.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::contract::{Attempt, Outbound};
use super::smtp_client::{Connection, Failure};

/// How long and how much a session is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// How long an idle session stays (0: no reuse, one session per delivery).
    pub idle_time: Duration,
    /// Idle sessions kept per key.
    pub per_key: usize,
    /// Messages per session, then it is closed (0: no limit).
    pub max_messages: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            idle_time: Duration::from_secs(5),
            per_key: 8,
            max_messages: 100,
        }
    }
}

struct Idle {
    since: Instant,
    conn: Connection,
}

pub struct SessionPool {
    settings: PoolSettings,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl SessionPool {
    /// A pool, and (inside a tokio runtime, with reuse on) its sweep task, which ends with the pool.
    pub fn start(settings: PoolSettings) -> Arc<SessionPool> {
        let pool = Arc::new(SessionPool {
            settings,
            idle: Mutex::new(HashMap::new()),
        });
        let period = pool.settings.idle_time;
        if !period.is_zero() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&pool), period));
        }
        pool
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Sends over an idle session for `key` if there is one, else over a new one from `connect`;
    /// keeps the session afterwards while it is usable.
    pub async fn send(
        &self,
        key: &str,
        connect: impl Future<Output = Result<Connection, Failure>>,
        out: &Outbound<'_>,
    ) -> Attempt {
        if let Some(attempt) = self.send_idle(key, out, |_| {}).await {
            return attempt;
        }
        match connect.await {
            Ok(conn) => self.send_new(key, conn, out).await,
            Err(failure) => Attempt::all(out, failure.outcome()),
        }
    }

    /// Sends over an idle session for `key`. `None`: there was none, or each one was found
    /// closed before anything was sent (the caller opens a new session). `used` sees the
    /// session that carried the message.
    pub async fn send_idle(
        &self,
        key: &str,
        out: &Outbound<'_>,
        used: impl FnOnce(&Connection),
    ) -> Option<Attempt> {
        while let Some(mut conn) = self.take(key) {
            conn.prepare_reuse();
            let attempt = conn.send(out).await;
            if conn.failed_before_transaction() {
                tracing::debug!(remote = %conn.remote(), "idle delivery session was closed by the peer; not reused");
                conn.quit().await;
                continue;
            }
            tracing::debug!(remote = %conn.remote(), messages = conn.messages_sent(), "delivery session reused");
            used(&conn);
            self.put(key, conn);
            return Some(attempt);
        }
        None
    }

    /// Sends over a session just opened, then keeps it for the next delivery while usable.
    pub async fn send_new(&self, key: &str, mut conn: Connection, out: &Outbound<'_>) -> Attempt {
        tracing::debug!(remote = %conn.remote(), "delivery session opened");
        let attempt = conn.send(out).await;
        self.put(key, conn);
        attempt
    }

    /// The most recently used idle session for `key` still within the idle time.
    fn take(&self, key: &str) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < self.settings.idle_time {
                return Some(entry.conn);
            }
            drop(entry); // expired: closed without ceremony
        }
        None
    }

    /// Keeps `conn` for `key` if it may carry another message; otherwise closes it (QUIT).
    fn put(&self, key: &str, conn: Connection) {
        let at_cap =
            self.settings.max_messages > 0 && conn.messages_sent() >= self.settings.max_messages;
        let keep = conn.is_usable() && !at_cap && !self.settings.idle_time.is_zero();
        let refused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.entry(key.to_string()).or_default();
            if keep && list.len() < self.settings.per_key {
                list.push(Idle {
                    since: Instant::now(),
                    conn,
                });
                None
            } else {
                Some(conn)
            }
        };
        if let Some(conn) = refused {
            if at_cap {
                tracing::debug!(remote = %conn.remote(), messages = conn.messages_sent(), "delivery session closed at its message limit");
            }
            close_later(vec![conn]);
        }
    }

    /// Takes every session idle for longer than the idle time out of the pool.
    fn expired(&self) -> Vec<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut stale = Vec::new();
        for list in idle.values_mut() {
            let (keep, old): (Vec<Idle>, Vec<Idle>) = std::mem::take(list)
                .into_iter()
                .partition(|entry| entry.since.elapsed() < self.settings.idle_time);
            *list = keep;
            stale.extend(old.into_iter().map(|entry| entry.conn));
        }
        idle.retain(|_, list| !list.is_empty());
        stale
    }

    /// Idle sessions per key (tests, diagnostics).
    pub fn idle_count(&self, key: &str) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(key).map_or(0, Vec::len)
    }

    /// Closes every idle session (QUIT), e.g. at shutdown.
    pub async fn close_all(&self) {
        let all: Vec<Connection> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.drain()
                .flat_map(|(_, list)| list)
                .map(|entry| entry.conn)
                .collect()
        };
        for conn in all {
            conn.quit().await;
        }
    }
}

/// QUITs sessions off the delivery's path (the peer's 221 is not worth waiting for).
fn close_later(conns: Vec<Connection>) {
    if conns.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                for conn in conns {
                    conn.quit().await;
                }
            });
        }
        Err(_) => drop(conns),
    }
}

/// Every `period`, closes the sessions that have been idle too long; ends with the pool.
async fn sweep(pool: Weak<SessionPool>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        close_later(pool.expired());
    }
}
