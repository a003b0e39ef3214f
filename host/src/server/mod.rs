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
//! - [`proxy`]: the PROXY protocol header (v1/v2) behind load balancers.
//! - [`reload`]: applying a new configuration to the running server without dropping sessions.
//! - [`tls`]: rustls acceptor and certificates.

pub mod auth_failures;
pub mod connection;
pub mod limits;
pub mod listener;
pub mod proxy;
pub mod received;
pub mod relay;
pub mod reload;
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

/// Everything a connection needs, shared by all connections. A reload builds a new one; each
/// connection keeps the one it started with, so established sessions finish on their settings.
pub struct Shared {
    pub config: Arc<Config>,
    pub hooks: Arc<dyn HookFactory>,
    pub spool: Arc<Spool>,
    /// For ETRN (None: ETRN is not offered).
    pub queue: Option<Queue>,
    pub users: UserDb,
    pub tls: tokio_rustls::TlsAcceptor,
    pub limits: Arc<limits::ConnectionLimits>,
    pub auth_failures: Arc<auth_failures::AuthFailures>,
    /// What operators see at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
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
    fn with(&self, config: Arc<Config>, users: UserDb, tls: tokio_rustls::TlsAcceptor) -> Shared {
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
        Self::start_with_metrics(config, hooks, spool, queue, Arc::default()).await
    }

    /// [`Server::start`], counting into `metrics`.
    pub async fn start_with_metrics(
        config: Arc<Config>,
        hooks: Arc<dyn HookFactory>,
        spool: Arc<Spool>,
        queue: Option<Queue>,
        metrics: Arc<crate::metrics::Metrics>,
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
            auth_failures: Arc::new(auth_failures::AuthFailures::new(
                config.server.limits.max_auth_failures_per_ip,
                std::time::Duration::from_secs(config.server.limits.auth_failure_decay),
            )),
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

pub(crate) fn load_users(config: &Config) -> anyhow::Result<UserDb> {
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
    let metrics = Arc::new(crate::metrics::Metrics::new());
    // The plugins' kv: the embedded store in the state directory unless [kv] says otherwise.
    let (kv_backend, kv) = crate::plugins::imports::kv::from_config(&config.kv, &state_dir)
        .map_err(|e| anyhow::anyhow!("cannot open the kv store: {e}"))?;
    let plugins = crate::plugins::Plugins::from_config(
        &config,
        config.source.as_deref(),
        crate::plugins::RuntimeOptions {
            kv: Some(kv),
            kv_backend,
            metrics: metrics.clone(),
            ..crate::plugins::RuntimeOptions::for_server(&config)
        },
    )
    .context("cannot load plugins")?;
    let hooks: Arc<dyn HookFactory> = plugins.hook_factory();
    let queue_hooks: Arc<dyn QueueHooks> = plugins.queue_hooks();
    // Reload (admin socket, SIGHUP, file watch) re-reads the whole file: listeners, limits,
    // TLS, local domains and plugins, or nothing if any part cannot apply.
    let local = Arc::new(reload::LiveLocal::new(config.local.clone()));
    let reloader = reload::ConfigReload::new(
        config.source.clone(),
        state_dir.clone(),
        plugins.clone(),
        local.clone(),
    );
    let _config_watch = match config.source {
        Some(_) if config.admin.watch_config => {
            let (reloader, runtime) = (reloader.clone(), tokio::runtime::Handle::current());
            plugins
                .watch_with(
                    std::time::Duration::from_millis(200),
                    Box::new(move || {
                        let _ = runtime.block_on(reloader.reload());
                    }),
                )
                .map_err(|e| tracing::warn!("configuration file watch not started (reload with SIGHUP or `mailwit reload`): {e:#}"))
                .ok()
        }
        _ => None,
    };
    let _sighup = reload_on_sighup(reloader.clone())?;
    let reload: crate::admin::ReloadFn = {
        let reloader = reloader.clone();
        Arc::new(move || {
            let reloader = reloader.clone();
            Box::pin(async move { reloader.reload().await })
        })
    };
    // Maildir, LMTP, relays and MX (delivery::remote), set up from [queue] and [routes].
    let agents: Arc<dyn Agents> = Arc::new(crate::delivery::measured::Measured {
        inner: crate::delivery::from_config(
            &state_dir,
            &config.server.hostname,
            &config.queue,
            &config.routes,
        )
        .map_err(|e| anyhow::anyhow!("cannot start the delivery agents: {e}"))?,
        metrics: metrics.clone(),
    });
    let queue = Queue::start(
        spool.clone(),
        QueueOptions {
            config: config.queue.clone(),
            routes: config.routes.clone(),
            hostname: config.server.hostname.clone(),
            hooks: queue_hooks,
            local,
            agents,
        },
    )
    .await
    .context("cannot start the queue manager")?;
    let _admin = AdminServer::start(&state_dir, Some(queue.clone()), Some(reload))
        .await
        .context("cannot start the admin socket")?;
    register_probes(&metrics, &queue, &plugins);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _http = match config.admin.http {
        Some(address) => {
            let http =
                crate::metrics::http::HttpServer::start(address, metrics.clone(), ready.clone())
                    .await
                    .with_context(|| format!("[admin] http: cannot bind {address}"))?;
            write_atomically(
                &state_dir,
                "admin-http.addr",
                http.address.to_string().as_bytes(),
            )?;
            Some(http)
        }
        None => None,
    };
    let server = Server::start_with_metrics(
        config.clone(),
        hooks,
        spool,
        Some(queue.clone()),
        metrics.clone(),
    )
    .await?;
    server.write_listeners_json(&state_dir)?;
    let _ = reloader.server.set(server.handle());
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(state_dir = %state_dir.display(), "mailwit ready");

    wait_for_signal().await?;
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("shutting down: no new connections; finishing transactions in flight");
    server.shutdown().await;
    queue.shutdown();
    tracing::info!("stopped");
    Ok(())
}
/// Gauges read at scrape time from the parts that keep their own state: queue depth, circuit
/// breakers, the plugin instance pool.
fn register_probes(
    metrics: &crate::metrics::Metrics,
    queue: &Queue,
    plugins: &Arc<crate::plugins::Plugins>,
) {
    let q = queue.clone();
    metrics.gauge_probe(
        "mailwit_queue_recipients",
        "Recipients in the queue, by state",
        "state",
        move || {
            let mut counts = std::collections::BTreeMap::<String, i64>::new();
            for state in ["pending", "deferred"] {
                counts.insert(state.to_string(), 0);
            }
            for message in q.list() {
                for rcpt in message.recipients.iter().filter(|r| !r.status.is_final()) {
                    let state = format!("{:?}", rcpt.status).to_ascii_lowercase();
                    *counts.entry(state).or_default() += 1;
                }
            }
            counts.into_iter().collect()
        },
    );
    let q = queue.clone();
    metrics.gauge_probe(
        "mailwit_queue_messages",
        "Messages in the spool, by state (active: being delivered)",
        "state",
        move || {
            let (mut active, mut held, mut waiting) = (0, 0, 0);
            for message in q.list() {
                match (message.active, message.held) {
                    (true, _) => active += 1,
                    (_, true) => held += 1,
                    _ => waiting += 1,
                }
            }
            vec![
                ("active".into(), active),
                ("held".into(), held),
                ("waiting".into(), waiting),
            ]
        },
    );
    let p = plugins.clone();
    metrics.gauge_probe(
        "mailwit_plugin_breaker_open",
        "1 while a plugin's circuit breaker is open",
        "plugin",
        move || {
            p.current()
                .plugins
                .iter()
                .map(|(name, entry)| (name.clone(), i64::from(entry.breaker.is_open())))
                .collect()
        },
    );
    metrics.gauge_probe(
        "mailwit_plugin_pool_slots_in_use",
        "Wasm instance pool slots taken (one per live plugin instance)",
        "",
        || {
            vec![(
                String::new(),
                crate::plugins::engine::WasmEngine::pool_slots_in_use() as i64,
            )]
        },
    );
}

/// Reloads on SIGHUP for as long as the returned task runs.
fn reload_on_sighup(
    reloader: Arc<reload::ConfigReload>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = reloader.reload().await;
        }
    }))
}

/// Writes `<dir>/<name>` through a temporary file and a rename (readers never see half of it).
fn write_atomically(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
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
