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
//! - `shared`: what every connection shares, and what a reload swaps.

pub mod auth_failures;
pub mod connection;
pub mod limits;
pub mod listener;
pub mod odmr;
pub mod proxy;
pub mod received;
pub mod relay;
pub mod reload;
mod shared;
pub mod stages;
pub mod tls;

pub(crate) use shared::Live;
pub use shared::{Shared, load_users, stopped};

use crate::config::Config;
use crate::policy::HookFactory;
use crate::queue::Queue;
use crate::spool::Spool;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::watch;

/// A running server.
pub struct Server {
    /// (listener name, bound address) at start, in configuration order.
    pub addresses: Vec<(String, SocketAddr)>,
    live: Arc<Live>,
}

/// What the rest of the process shares with a server (see [`Server::start_sharing`]).
pub struct SharedParts {
    /// Where the server counts (the admin endpoint serves them).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// DKIM signers and verifier (the queue shares the signers for its DSNs).
    pub mailauth: Arc<crate::mailauth::MailAuth>,
    /// AUTH failures per client IP are also counted here when given (shared by instances, or
    /// kept across restarts).
    pub auth_failure_counters: Option<Arc<dyn auth_failures::SharedCounters>>,
}

impl Server {
    /// Binds every listener (port 0 gets a free port; see [`Server::addresses`]) and starts
    /// accepting. `hooks` makes each connection's policy hooks (`policy::NoHooks` without plugins);
    /// `queue`, when given, serves ETRN. Metrics and AUTH failure counts are the server's own;
    /// DKIM signers and verifier come from `config`.
    pub async fn start(
        config: Arc<Config>,
        hooks: Arc<dyn HookFactory>,
        spool: Arc<Spool>,
        queue: Option<Queue>,
    ) -> anyhow::Result<Server> {
        let mailauth = Arc::new(
            crate::mailauth::MailAuth::from_config(&config).context("mail authentication")?,
        );
        let parts = SharedParts {
            metrics: Arc::default(),
            mailauth,
            auth_failure_counters: None,
        };
        Self::start_sharing(config, hooks, spool, queue, parts).await
    }

    /// [`Server::start`] with the parts the rest of the process shares with the server.
    pub async fn start_sharing(
        config: Arc<Config>,
        hooks: Arc<dyn HookFactory>,
        spool: Arc<Spool>,
        queue: Option<Queue>,
        parts: SharedParts,
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
        let SharedParts {
            metrics,
            mailauth,
            auth_failure_counters,
        } = parts;
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
