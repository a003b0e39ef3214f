//! What every connection shares ([`Shared`], swapped whole by a reload) and what a reload
//! changes ([`Live`]: the current settings and the bound listeners). The listener, connection,
//! stage and reload files use this file, never `server/mod.rs`, which starts the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{auth_failures, limits, tls};
use crate::auth::UserDb;
use crate::config::Config;
use crate::policy::HookFactory;
use crate::queue::Queue;
use crate::spool::Spool;

/// Everything a connection needs, shared by all connections. A reload builds a new one; each
/// connection keeps the one it started with, so established sessions finish on their settings.
pub struct Shared {
    pub config: Arc<Config>,
    pub hooks: Arc<dyn HookFactory>,
    pub spool: Arc<Spool>,
    /// For ETRN (None: ETRN is not offered).
    pub queue: Option<Queue>,
    pub users: UserDb,
    /// The server's TLS acceptor and per-listener ones.
    pub tls: tls::Acceptors,
    pub limits: Arc<limits::ConnectionLimits>,
    pub auth_failures: Arc<auth_failures::AuthFailures>,
    /// What operators see at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// DKIM signers and the inbound verifier (SPF, DKIM, DMARC, ARC).
    pub mailauth: Arc<crate::mailauth::MailAuth>,
    /// Flips to true on shutdown: stop accepting, finish transactions, close idle sessions.
    pub shutdown: watch::Receiver<bool>,
    pub(super) next_session: Arc<AtomicU64>,
    /// Distinguishes this process's session ids from an earlier run's.
    pub(super) boot: String,
}

impl Shared {
    /// A new session id: `<boot>.<n>`, unique across restarts.
    pub fn session_id(&self) -> String {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.boot)
    }

    /// The same server with another configuration, users and TLS acceptor (reload); counters,
    /// limits and the session numbering carry over.
    pub(super) fn with(
        &self,
        config: Arc<Config>,
        users: UserDb,
        tls: tls::Acceptors,
        mailauth: Arc<crate::mailauth::MailAuth>,
    ) -> Shared {
        Shared {
            config,
            hooks: self.hooks.clone(),
            spool: self.spool.clone(),
            queue: self.queue.clone(),
            users,
            tls,
            limits: self.limits.clone(),
            auth_failures: self.auth_failures.clone(),
            metrics: self.metrics.clone(),
            mailauth,
            shutdown: self.shutdown.clone(),
            next_session: self.next_session.clone(),
            boot: self.boot.clone(),
        }
    }
}

/// One bound listener.
pub(crate) struct Bound {
    /// The address in the configuration (port 0 stays 0 here).
    pub configured: SocketAddr,
    /// The address the socket got.
    pub bound: SocketAddr,
    /// Stops this listener's accept loop (its connections finish).
    pub(super) stop: watch::Sender<bool>,
}

/// What a reload changes, shared by the server and its [`ServerHandle`](super::reload::ServerHandle).
pub(crate) struct Live {
    /// The settings new connections start with.
    pub current: arc_swap::ArcSwap<Shared>,
    pub listeners: std::sync::Mutex<std::collections::BTreeMap<String, Bound>>,
    pub(super) tasks: std::sync::Mutex<JoinSet<()>>,
    pub(super) shutdown: watch::Sender<bool>,
}

impl Live {
    /// Stops accepting on `name`; its sessions finish.
    pub(super) fn stop_listener(&self, name: &str) {
        if let Some(bound) = self.listeners.lock().unwrap().remove(name) {
            let _ = bound.stop.send(true);
        }
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here, not across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

impl Live {
    pub(crate) fn write_listeners_json(
        &self,
        state_dir: &std::path::Path,
    ) -> std::io::Result<PathBuf> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .listeners
            .lock()
            .unwrap()
            .iter()
            .map(|(n, b)| (n.clone(), serde_json::Value::String(b.bound.to_string())))
            .collect();
        let path = state_dir.join("listeners.json");
        let tmp = state_dir.join("listeners.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&map)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// The built-in users: `[auth] users` and the lines of `users_file`.
pub fn load_users(config: &Config) -> anyhow::Result<UserDb> {
    let mut lines: Vec<String> = config.auth.users.clone();
    if let Some(path) = &config.auth.users_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read users file", path.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    UserDb::parse(lines.iter().map(String::as_str)).context("users")
}
