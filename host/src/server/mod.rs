//! The SMTP server around the sans-IO protocol: listeners, the per-connection IO loop, TLS,
//! connection limits, timeouts, core policy and graceful shutdown.
//!
//! - [`listener`]: binds the configured addresses and accepts connections.
//! - [`connection`]: drives one `smtp::Session` over a socket (read, write, timeouts, STARTTLS).
//! - [`stages`]: answers the session's events: hooks first, then the core's defaults.
//! - [`relay`]: relay control, the safety net under any plugin.
//! - [`received`]: the Received trace header.
//! - [`limits`]: connection limits in total and per client IP.
//! - [`auth_failures`]: AUTH failures remembered per client IP across connections.
//! - [`tls`]: rustls acceptor and certificates.

pub mod auth_failures;
pub mod connection;
pub mod limits;
pub mod listener;
pub mod received;
pub mod relay;
pub mod stages;
pub mod tls;

use crate::admin::AdminServer;
use crate::auth::UserDb;
use crate::config::Config;
use crate::config::engine::LocalConfig;
use crate::delivery::Agents;
use crate::policy::{HookFactory, QueueHooks};
use crate::queue::{LocalDomains, Queue, QueueOptions};
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
    /// DKIM signers and the inbound verifier (SPF, DKIM, DMARC, ARC).
    pub mailauth: Arc<crate::mailauth::MailAuth>,
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
        let mailauth = Arc::new(
            crate::mailauth::MailAuth::from_config(&config).context("mail authentication")?,
        );
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
            mailauth,
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

fn load_users(config: &Config) -> anyhow::Result<UserDb> {
    let mut lines: Vec<String> = config.auth.users.clone();
    if let Some(path) = &config.auth.users_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read users file", path.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    UserDb::parse(lines.iter().map(String::as_str)).context("users")
}

/// Checks what `check-config` can check beyond the schema: the users file, TLS material and
/// every plugin (loaded, exports and grants validated). Returns the plugins x hooks table.
pub fn check(config: &Config) -> anyhow::Result<String> {
    load_users(config)?;
    if config.server.tls.cert.is_some() {
        tls::acceptor(&config.server.tls, &config.server.hostname)?;
    }
    let base_dir = config
        .source
        .as_deref()
        .and_then(std::path::Path::parent)
        .unwrap_or(std::path::Path::new("."));
    let options = crate::plugins::RuntimeOptions {
        cache_dir: None,
        ..crate::plugins::RuntimeOptions::for_server(config)
    };
    crate::plugins::check_report_at(config, base_dir, options)
}

/// The `[local]` section answers the queue's routing questions too.
impl LocalDomains for LocalConfig {
    fn is_local_domain(&self, domain: &str) -> bool {
        LocalConfig::is_local_domain(self, domain)
    }
    fn resolve(&self, address: &str) -> Option<String> {
        LocalConfig::resolve(self, address)
    }
}

/// `mailwit serve`: opens the spool, starts the queue manager (which resumes whatever the
/// spool holds), the admin socket and the listeners; runs until SIGTERM/SIGINT, then shuts
/// down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let state_dir = config.server.state_dir.clone();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("{}: cannot create state dir", state_dir.display()))?;
    let spool_dir = state_dir.join("queue");
    let spool = Arc::new(
        Spool::open(spool_dir.clone())
            .await
            .with_context(|| format!("{}: cannot open spool", spool_dir.display()))?,
    );
    // The plugin platform: pipelines per listener, the "queue" pipeline for route/delivery, and
    // reload by file watch, SIGHUP and the admin socket.
    let plugins = crate::plugins::Plugins::from_config(
        &config,
        config.source.as_deref(),
        crate::plugins::RuntimeOptions::for_server(&config),
    )
    .context("cannot load plugins")?;
    let hooks: Arc<dyn HookFactory> = plugins.hook_factory();
    let queue_hooks: Arc<dyn QueueHooks> = plugins.queue_hooks();
    let _plugin_watch = config
        .source
        .is_some()
        .then(|| plugins.watch_default())
        .flatten();
    let _sighup = plugins.reload_on_sighup()?;
    let reload = plugins.reloader().admin_fn();
    // Maildir, LMTP, relays and MX (delivery::remote), set up from [queue] and [routes].
    let agents: Arc<dyn Agents> = Arc::new(
        crate::delivery::from_config(
            &state_dir,
            &config.server.hostname,
            &config.queue,
            &config.routes,
        )
        .map_err(|e| anyhow::anyhow!("cannot start the delivery agents: {e}"))?,
    );
    let queue = Queue::start(
        spool.clone(),
        QueueOptions {
            config: config.queue.clone(),
            routes: config.routes.clone(),
            hostname: config.server.hostname.clone(),
            hooks: queue_hooks,
            local: Arc::new(config.local.clone()),
            agents,
        },
    )
    .await
    .context("cannot start the queue manager")?;
    let _admin = AdminServer::start(&state_dir, Some(queue.clone()), Some(reload))
        .await
        .context("cannot start the admin socket")?;
    let server = Server::start(config.clone(), hooks, spool, Some(queue.clone())).await?;
    server.write_listeners_json(&state_dir)?;
    tracing::info!(state_dir = %state_dir.display(), "mailwit ready");

    wait_for_signal().await?;
    tracing::info!("shutting down: no new connections; finishing transactions in flight");
    server.shutdown().await;
    queue.shutdown();
    tracing::info!("stopped");
    Ok(())
}
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
