//! The SMTP server around the sans-IO protocol: listeners, the per-connection IO loop, TLS,
//! connection limits, timeouts, core policy and graceful shutdown. What starts it with the
//! spool, queue, plugins and admin socket is `crate::app`.
//!
//! - [`listener`]: binds the configured addresses and accepts connections.
//! - [`connection`]: drives one `smtp::Session` over a socket (read, write, timeouts, STARTTLS).
//! - [`stages`]: answers the session's events: hooks first, then the core's defaults.
//! - [`relay`]: relay control, the safety net under any plugin.
//! - [`received`]: the Received trace header.
//! - [`limits`]: connection limits in total and per client IP.
//! - [`auth_failures`]: AUTH failures remembered per client IP across connections.
//! - [`tls`]: rustls acceptor and certificates.
//! - [`odmr`]: the client side of an ATRN session after the line turned (RFC 2645).

pub mod auth_failures;
pub mod connection;
pub mod limits;
pub mod listener;
pub mod odmr;
pub mod received;
pub mod relay;
pub mod stages;
pub mod tls;

use crate::auth::UserDb;
use crate::config::Config;
use crate::policy::HookFactory;
use crate::queue::Queue;
use crate::spool::Spool;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Everything a connection needs, shared by all connections.
pub struct Shared {
    pub config: Arc<Config>,
    pub hooks: Arc<dyn HookFactory>,
    pub spool: Arc<Spool>,
    /// For ETRN (None: ETRN is not offered).
    pub queue: Option<Queue>,
    pub users: UserDb,
    pub tls: tokio_rustls::TlsAcceptor,
    pub limits: Arc<limits::ConnectionLimits>,
    pub auth_failures: auth_failures::AuthFailures,
    /// Flips to true on shutdown: stop accepting, finish transactions, close idle sessions.
    pub shutdown: watch::Receiver<bool>,
    next_session: AtomicU64,
    /// Distinguishes this process's session ids from an earlier run's.
    boot: String,
}

impl Shared {
    /// A new session id: `<boot>.<n>`, unique across restarts.
    pub fn session_id(&self) -> String {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.boot)
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here, not across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// A running server.
pub struct Server {
    /// (listener name, bound address), in configuration order.
    pub addresses: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds every listener (port 0 gets a free port; see [`Server::addresses`]) and starts
    /// accepting. `hooks` makes each connection's policy hooks (`policy::NoHooks` without plugins);
    /// `queue`, when given, serves ETRN.
    pub async fn start(
        config: Arc<Config>,
        hooks: Arc<dyn HookFactory>,
        spool: Arc<Spool>,
        queue: Option<Queue>,
    ) -> anyhow::Result<Server> {
        let users = load_users(&config)?;
        let tls = tls::acceptor(&config.server.tls, &config.server.hostname)?;
        let limits = limits::ConnectionLimits::new(
            config.server.limits.max_connections,
            config.server.limits.max_connections_per_ip,
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let boot = format!("{:x}", chrono::Utc::now().timestamp_millis());
        let shared = Arc::new(Shared {
            config: config.clone(),
            hooks,
            spool,
            queue,
            users,
            tls,
            limits,
            auth_failures: auth_failures::AuthFailures::new(
                config.server.limits.max_auth_failures_per_ip,
                std::time::Duration::from_secs(config.server.limits.auth_failure_decay),
            ),
            shutdown: shutdown_rx,
            next_session: AtomicU64::new(1),
            boot,
        });
        let mut tasks = JoinSet::new();
        let mut addresses = Vec::new();
        for (index, listener) in config.listeners.iter().enumerate() {
            let socket = tokio::net::TcpListener::bind(listener.address)
                .await
                .with_context(|| {
                    format!("listener {:?}: bind {}", listener.name, listener.address)
                })?;
            let bound = socket.local_addr()?;
            tracing::info!(listener = %listener.name, address = %bound, role = ?listener.role, "listening");
            addresses.push((listener.name.clone(), bound));
            tasks.spawn(listener::accept_loop(shared.clone(), index, socket));
        }
        Ok(Server {
            addresses,
            shutdown,
            tasks,
            shared,
        })
    }

    /// The bound address of the listener named `name`.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.addresses
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Writes `<state>/listeners.json`: `{"mx": "127.0.0.1:2525", ...}` (how tests and scripts
    /// find ports bound as 0).
    pub fn write_listeners_json(&self, state_dir: &std::path::Path) -> std::io::Result<PathBuf> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .addresses
            .iter()
            .map(|(n, a)| (n.clone(), serde_json::Value::String(a.to_string())))
            .collect();
        let path = state_dir.join("listeners.json");
        let tmp = state_dir.join("listeners.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&map)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Stops accepting, lets transactions in flight finish for up to `shutdown_grace`, then
    /// closes whatever is left.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let grace = self.shared.config.server.shutdown_grace();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                active = self.shared.limits.active(),
                "shutdown grace expired: closing remaining connections"
            );
            self.tasks.shutdown().await;
        }
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
