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
//! - [`proxy`]: the PROXY protocol header (v1/v2) behind load balancers.
//! - [`reload`]: applying a new configuration to the running server without dropping sessions.
//! - [`tls`]: rustls acceptor and certificates.
//! - [`odmr`]: the client side of an ATRN session after the line turned (RFC 2645).

pub mod auth_failures;
pub mod connection;
pub mod limits;
pub mod listener;
pub mod odmr;
pub mod proxy;
pub mod received;
pub mod relay;
pub mod reload;
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
    next_session: Arc<AtomicU64>,
    /// Distinguishes this process's session ids from an earlier run's.
    boot: String,
}

impl Shared {
    /// A new session id: `<boot>.<n>`, unique across restarts.
    pub fn session_id(&self) -> String {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.boot)
    }

    /// The same server with another configuration, users and TLS acceptor (reload); counters,
    /// limits and the session numbering carry over.
    fn with(
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
    stop: watch::Sender<bool>,
}

/// What a reload changes, shared by the server and its [`reload::ServerHandle`].
pub(crate) struct Live {
    /// The settings new connections start with.
    pub current: arc_swap::ArcSwap<Shared>,
    pub listeners: std::sync::Mutex<std::collections::BTreeMap<String, Bound>>,
    tasks: std::sync::Mutex<JoinSet<()>>,
    shutdown: watch::Sender<bool>,
}

impl Live {
    /// Starts accepting on a bound socket under `name`.
    fn spawn_listener(
        self: &Arc<Self>,
        name: &str,
        configured: SocketAddr,
        socket: tokio::net::TcpListener,
    ) -> anyhow::Result<SocketAddr> {
        let bound = socket.local_addr()?;
        self.current.load().metrics.listener_started(name);
        let (stop, stop_rx) = watch::channel(false);
        self.tasks.lock().unwrap().spawn(listener::accept_loop(
            self.clone(),
            name.to_string(),
            socket,
            stop_rx,
        ));
        let previous = self.listeners.lock().unwrap().insert(
            name.to_string(),
            Bound {
                configured,
                bound,
                stop,
            },
        );
        if let Some(previous) = previous {
            let _ = previous.stop.send(true);
        }
        Ok(bound)
    }

    /// Stops accepting on `name`; its sessions finish.
    fn stop_listener(&self, name: &str) {
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

/// A running server.
pub struct Server {
    /// (listener name, bound address) at start, in configuration order.
    pub addresses: Vec<(String, SocketAddr)>,
    live: Arc<Live>,
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
        Self::start_with_metrics(config, hooks, spool, queue, Arc::default(), None).await
    }

    /// [`Server::start`], counting into `metrics`; AUTH failures per IP also counted in
    /// `auth_failure_counters` when given (shared by instances, or kept across restarts).
    pub async fn start_with_metrics(
        config: Arc<Config>,
        hooks: Arc<dyn HookFactory>,
        spool: Arc<Spool>,
        queue: Option<Queue>,
        metrics: Arc<crate::metrics::Metrics>,
        auth_failure_counters: Option<Arc<dyn auth_failures::SharedCounters>>,
    ) -> anyhow::Result<Server> {
        let mailauth = Arc::new(
            crate::mailauth::MailAuth::from_config(&config).context("mail authentication")?,
        );
        Self::start_with_mailauth(
            config,
            hooks,
            spool,
            queue,
            metrics,
            mailauth,
            auth_failure_counters,
        )
        .await
    }

    /// [`Server::start_with_metrics`] with DKIM signers and verifier built by the caller (the
    /// queue shares the signers for its DSNs).
    pub async fn start_with_mailauth(
        config: Arc<Config>,
        hooks: Arc<dyn HookFactory>,
        spool: Arc<Spool>,
        queue: Option<Queue>,
        metrics: Arc<crate::metrics::Metrics>,
        mailauth: Arc<crate::mailauth::MailAuth>,
        auth_failure_counters: Option<Arc<dyn auth_failures::SharedCounters>>,
    ) -> anyhow::Result<Server> {
        let users = load_users(&config)?;
        let tls = tls::Acceptors::from_config(
            &config,
            tls::acceptor(&config.server.tls, &config.server.hostname)?,
        )?;
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
            auth_failures: {
                let failures = auth_failures::AuthFailures::new(
                    config.server.limits.max_auth_failures_per_ip,
                    std::time::Duration::from_secs(config.server.limits.auth_failure_decay),
                );
                if let Some(counters) = auth_failure_counters {
                    failures.share(counters);
                }
                Arc::new(failures)
            },
            mailauth,
            metrics,
            shutdown: shutdown_rx,
            next_session: Arc::new(AtomicU64::new(1)),
            boot,
        });
        let live = Arc::new(Live {
            current: arc_swap::ArcSwap::new(shared),
            listeners: Default::default(),
            tasks: Default::default(),
            shutdown,
        });
        let mut addresses = Vec::new();
        for listener in &config.listeners {
            let socket = tokio::net::TcpListener::bind(listener.address)
                .await
                .with_context(|| {
                    format!("listener {:?}: bind {}", listener.name, listener.address)
                })?;
            let bound = live.spawn_listener(&listener.name, listener.address, socket)?;
            tracing::info!(listener = %listener.name, address = %bound, role = ?listener.role, "listening");
            addresses.push((listener.name.clone(), bound));
        }
        Ok(Server { addresses, live })
    }

    /// The bound address of the listener named `name` (now: reloads may have changed it).
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.live
            .listeners
            .lock()
            .unwrap()
            .get(name)
            .map(|b| b.bound)
    }

    /// What a reload goes through.
    pub fn handle(&self) -> reload::ServerHandle {
        reload::ServerHandle::new(self.live.clone())
    }

    /// Writes `<state>/listeners.json`: `{"mx": "127.0.0.1:2525", ...}` (how tests and scripts
    /// find ports bound as 0). Reloads rewrite it.
    pub fn write_listeners_json(&self, state_dir: &std::path::Path) -> std::io::Result<PathBuf> {
        self.live.write_listeners_json(state_dir)
    }

    /// Stops accepting, lets transactions in flight finish for up to `shutdown_grace`, then
    /// closes whatever is left.
    pub async fn shutdown(self) {
        let _ = self.live.shutdown.send(true);
        let shared = self.live.current.load_full();
        let grace = shared.config.server.shutdown_grace();
        let mut tasks = std::mem::take(&mut *self.live.tasks.lock().unwrap());
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                active = shared.limits.active(),
                "shutdown grace expired: closing remaining connections"
            );
            tasks.shutdown().await;
        }
    }
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
