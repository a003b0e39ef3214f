//! Applying a new configuration to the running server: listeners added, removed and rebound,
//! limits, timeouts, TLS certificates, local domains and aliases, users, listener settings, DKIM
//! signing keys (read again) and `[authentication]`.
//!
//! In two steps, so a change that cannot apply is refused whole: [`ServerHandle::prepare`] does
//! everything that can fail (reads certificates and users, binds new addresses, refuses edits
//! that need a restart) without touching the running server; [`Prepared::commit`] cannot fail:
//! it swaps the settings new connections start with, starts the new accept loops and stops the
//! old ones. Established sessions keep the settings they started with and finish normally, also
//! on a listener that was removed.

use super::shared::{Live, Shared, load_users};
use super::tls;
use crate::config::Config;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::sync::Arc;

/// Sections whose change needs a restart: what they configure is built once at start (the
/// state directory, the queue's total concurrency, the resolver, the kv backend, the admin
/// HTTP listener, logging).
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    // Debug text compares these sections without asking every owner for PartialEq.
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut sections = Vec::new();
    let (o, n) = (&old.server, &new.server);
    if o.state_dir != n.state_dir {
        sections.push("server.state_dir");
    }
    if o.hostname != n.hostname {
        sections.push("server.hostname");
    }
    if o.limits.max_auth_failures_per_ip != n.limits.max_auth_failures_per_ip
        || o.limits.auth_failure_decay != n.limits.auth_failure_decay
    {
        sections.push("server.limits.max_auth_failures_per_ip/auth_failure_decay");
    }
    if old.queue.concurrency != new.queue.concurrency {
        sections.push("queue.concurrency");
    }
    if old.queue.nameservers != new.queue.nameservers {
        sections.push("queue.nameservers");
    }
    if differs(&old.dns, &new.dns) {
        sections.push("[dns]");
    }
    if differs(&old.dmarc_reports, &new.dmarc_reports) {
        sections.push("[dmarc_reports]");
    }
    if old.kv != new.kv {
        sections.push("[kv]");
    }
    if old.tls_rpt != new.tls_rpt {
        // The session store and the report task are set up once at start.
        sections.push("[tls_rpt]");
    }
    if old.admin != new.admin {
        sections.push("[admin]");
    }
    if old.log != new.log {
        sections.push("[log]");
    }
    sections
}

/// What the reload path holds of a running server.
#[derive(Clone)]
pub struct ServerHandle {
    live: Arc<Live>,
}

/// A reload checked and ready to apply.
pub struct Prepared {
    live: Arc<Live>,
    shared: Arc<Shared>,
    /// New sockets: (listener name, configured address, socket).
    bind: Vec<(String, SocketAddr, tokio::net::TcpListener)>,
    /// The DKIM keys read for the new configuration, swapped in by commit.
    signers: crate::mailauth::sign::Signers,
    stop: Vec<String>,
    changes: Vec<String>,
}

impl ServerHandle {
    pub(crate) fn new(live: Arc<Live>) -> Self {
        ServerHandle { live }
    }

    /// The configuration new connections get now.
    pub fn config(&self) -> Arc<Config> {
        self.live.current.load().config.clone()
    }

    /// Checks `new` against the running server and gets everything it needs (certificates,
    /// users, new sockets). Nothing changes for the running server until [`Prepared::commit`];
    /// dropping the result closes the new sockets.
    pub async fn prepare(&self, new: Arc<Config>) -> anyhow::Result<Prepared> {
        if *self.live.shutdown.borrow() {
            bail!("the server is shutting down");
        }
        let current = self.live.current.load_full();
        let old = &current.config;
        let restart = restart_only(old, &new);
        if !restart.is_empty() {
            bail!(
                "not applied: {} changed, which needs a restart",
                restart.join(", ")
            );
        }
        let mut changes = Vec::new();
        let users = load_users(&new)?;
        let tls = if new.server.tls.cert.is_some() {
            // Certificates are re-read on every reload (rotation), not only when the paths change.
            changes.push("server.tls: certificate and key re-read".to_string());
            tls::acceptor(&new.server.tls, &new.server.hostname)?
        } else if old.server.tls.cert.is_some() {
            changes.push("server.tls: now a generated self-signed certificate".to_string());
            tls::acceptor(&new.server.tls, &new.server.hostname)?
        } else {
            current.tls.default.clone()
        };
        // Listeners' own certificates are re-read on every reload, like the server's.
        let tls = tls::Acceptors::from_config(&new, tls)?;
        if tls.has_listener_certificates() {
            changes.push("listener certificates re-read".to_string());
        }
        let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
        if debug(&old.server.limits) != debug(&new.server.limits) {
            changes.push("server.limits changed".into());
        }
        if debug(&old.server.timeouts) != debug(&new.server.timeouts) {
            changes.push("server.timeouts changed".into());
        }
        if debug(&old.local) != debug(&new.local) {
            changes.push("local domains, mailboxes or aliases changed".into());
        }
        if debug(&old.auth) != debug(&new.auth) {
            changes.push("[auth] changed".into());
        }

        // DKIM keys are read again on every reload (a rotated key file), like certificates.
        let (mailauth, signers) = current
            .mailauth
            .prepare_reload(old, &new, &mut changes)
            .context("not applied: mail authentication")?;

        let mut bind = Vec::new();
        let mut stop = Vec::new();
        {
            let bound = self.live.listeners.lock().unwrap();
            for (name, b) in bound.iter() {
                if !new.listeners.iter().any(|l| &l.name == name) {
                    stop.push(name.clone());
                    changes.push(format!(
                        "listener {name}: removed (was {}; its sessions finish)",
                        b.bound
                    ));
                }
            }
        }
        for listener in &new.listeners {
            let existing = self
                .live
                .listeners
                .lock()
                .unwrap()
                .get(&listener.name)
                .map(|b| (b.configured, b.bound));
            match existing {
                Some((configured, _)) if configured == listener.address => {
                    let before = old.listeners.iter().find(|l| l.name == listener.name);
                    if before.is_some_and(|b| debug(b) != debug(listener)) {
                        changes.push(format!(
                            "listener {}: settings changed (new connections)",
                            listener.name
                        ));
                    }
                }
                existing => {
                    let socket = tokio::net::TcpListener::bind(listener.address)
                        .await
                        .with_context(|| {
                            format!(
                                "not applied: listener {:?}: bind {}",
                                listener.name, listener.address
                            )
                        })?;
                    let bound = socket.local_addr()?;
                    changes.push(match existing {
                        Some((_, was)) => {
                            format!("listener {}: rebound {was} -> {bound}", listener.name)
                        }
                        None => format!("listener {}: added on {bound}", listener.name),
                    });
                    bind.push((listener.name.clone(), listener.address, socket));
                }
            }
        }
        Ok(Prepared {
            live: self.live.clone(),
            shared: Arc::new(current.with(new.clone(), users, tls, Arc::new(mailauth))),
            signers,
            bind,
            stop,
            changes,
        })
    }
}

impl Prepared {
    /// What will change, one line each.
    pub fn changes(&self) -> &[String] {
        &self.changes
    }

    /// Applies the reload: new connections get the new settings, new listeners accept, removed
    /// ones stop accepting. Returns what changed, one line each.
    pub fn commit(self) -> Vec<String> {
        let limits = &self.shared.config.server.limits;
        self.shared
            .limits
            .set(limits.max_connections, limits.max_connections_per_ip);
        self.shared.mailauth.signers.replace(self.signers);
        self.live.current.store(self.shared.clone());
        for name in &self.stop {
            self.live.stop_listener(name);
        }
        for (name, configured, socket) in self.bind {
            // spawn_listener stops a previous socket of the same name (a rebind).
            match self.live.spawn_listener(&name, configured, socket) {
                Ok(bound) => tracing::info!(listener = %name, address = %bound, "listening"),
                Err(e) => tracing::error!(listener = %name, error = %e, "listener not started"),
            }
        }
        let state_dir = &self.shared.config.server.state_dir;
        if let Err(e) = self.live.write_listeners_json(state_dir) {
            tracing::warn!(error = %e, "cannot rewrite listeners.json");
        }
        for change in &self.changes {
            tracing::info!("reload: {change}");
        }
        self.changes
    }
}

/// The local domains the queue routes by, replaced by a reload (the queue keeps this object).
pub struct LiveLocal(arc_swap::ArcSwap<crate::config::server::LocalConfig>);

impl LiveLocal {
    pub fn new(local: crate::config::server::LocalConfig) -> Self {
        LiveLocal(arc_swap::ArcSwap::from_pointee(local))
    }
}

impl crate::queue::LocalDomains for LiveLocal {
    fn is_local_domain(&self, domain: &str) -> bool {
        self.0.load().is_local_domain(domain)
    }
    fn resolve(&self, address: &str) -> Option<String> {
        self.0.load().resolve(address)
    }
}

/// Builds the delivery agents for a configuration (the composition root knows how).
pub type AgentsBuilder =
    Box<dyn Fn(&Config) -> anyhow::Result<Arc<dyn crate::delivery::Agents>> + Send + Sync>;

/// What a reload changes in the queue: `[queue]`, `[routes]` and `[mta_sts]` with the agents
/// rebuilt from them.
pub struct QueueReload {
    pub queue: crate::queue::Queue,
    pub agents: AgentsBuilder,
}

/// `mailwit reload`, SIGHUP and the configuration file watch: re-reads the whole file and applies
/// it to the server, the queue and the plugins, or to none of them.
pub struct ConfigReload {
    pub path: Option<std::path::PathBuf>,
    /// `--state-dir` wins over the file, as at start.
    pub state_dir: std::path::PathBuf,
    pub plugins: Arc<crate::plugins::Plugins>,
    pub local: Arc<LiveLocal>,
    pub server: std::sync::OnceLock<ServerHandle>,
    pub queue: std::sync::OnceLock<QueueReload>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl ConfigReload {
    pub fn new(
        path: Option<std::path::PathBuf>,
        state_dir: std::path::PathBuf,
        plugins: Arc<crate::plugins::Plugins>,
        local: Arc<LiveLocal>,
    ) -> Arc<Self> {
        Arc::new(ConfigReload {
            path,
            state_dir,
            plugins,
            local,
            server: std::sync::OnceLock::new(),
            queue: std::sync::OnceLock::new(),
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }

    /// Reloads; the report names what changed, one line each. On error nothing changed.
    pub async fn reload(&self) -> anyhow::Result<String> {
        let result = self.try_reload().await;
        if let Err(e) = &result {
            tracing::error!("reload refused, the running configuration stays: {e:#}");
        }
        result
    }

    async fn try_reload(&self) -> anyhow::Result<String> {
        let _guard = self.one_at_a_time.lock().await;
        let path = self.path.as_ref().context(
            "serving the embedded quickstart: there is no configuration file to re-read",
        )?;
        let server = self.server.get().context("the server is still starting")?;
        let mut config = Config::load(path)?;
        config.server.state_dir = self.state_dir.clone();
        let config = Arc::new(config);
        let old = server.config();
        let prepared = server.prepare(config.clone()).await?;
        // Delivery settings: the agents are rebuilt (this can fail, so before anything applies).
        let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
        let delivery_changed = debug(&old.queue) != debug(&config.queue)
            || debug(&old.routes) != debug(&config.routes)
            || debug(&old.mta_sts) != debug(&config.mta_sts);
        let agents = match self.queue.get() {
            Some(q) if delivery_changed => Some(
                (q.agents)(&config)
                    .context("[queue]/[routes]: the delivery agents cannot start")?,
            ),
            _ => None,
        };
        let settings = crate::plugins::generation::PluginSettings::from_config(&config);
        let listener_pipelines =
            crate::plugins::RuntimeOptions::for_server(&config).listener_pipelines;
        let plugins = self.plugins.clone();
        let report = tokio::task::spawn_blocking(move || {
            plugins.reload_with_listeners(&settings, &listener_pipelines)
        })
        .await
        .context("the plugin reload task panicked")??;
        // Nothing can fail from here on.
        self.local.0.store(Arc::new(config.local.clone()));
        let mut changes = prepared.commit();
        if let (Some(q), Some(agents)) = (self.queue.get(), agents) {
            q.queue
                .reconfigure(config.queue.clone(), config.routes.clone(), agents);
            changes.push(
                "[queue]/[routes]/[mta_sts] changed: routes, retry times and delivery agents \
                 replaced (deliveries in flight finish on the old ones)"
                    .into(),
            );
        }
        changes.push(format!("plugins: {report}"));
        Ok(changes.join("\n"))
    }
}
