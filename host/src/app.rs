//! The composition root: `mailwit serve` wires the spool, the plugin platform, the delivery
//! agents, the queue, the admin socket and the listeners together, and `check-config` checks
//! what the schema cannot. The only module that knows every other one; none of them knows it.

use std::sync::Arc;

use anyhow::Context;

use crate::admin::{AdminServer, ReloadFn};
use crate::config::Config;
use crate::config::engine::LocalConfig;
use crate::delivery::Agents;
use crate::plugins::Reloader;
use crate::policy::{HookFactory, QueueHooks};
use crate::queue::{LocalDomains, Queue, QueueOptions};
use crate::server::{self, Server};
use crate::spool::Spool;

/// Checks what `check-config` can check beyond the schema: the users file, TLS material and
/// every plugin (loaded, exports and grants validated). Returns the plugins x hooks table.
pub fn check(config: &Config) -> anyhow::Result<String> {
    server::load_users(config)?;
    if config.server.tls.cert.is_some() {
        server::tls::acceptor(&config.server.tls, &config.server.hostname)?;
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
    let reload = admin_reload(plugins.reloader());
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
    // Deliveries in flight get the same bounded grace as the sessions had.
    let left = queue.drain(config.server.shutdown_grace()).await;
    if left > 0 {
        tracing::warn!(
            in_flight = left,
            "shutdown grace expired with deliveries in flight; they are retried after a restart"
        );
    }
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

/// The callback the admin socket runs for `mailwit reload`.
fn admin_reload(reloader: Reloader) -> ReloadFn {
    Arc::new(move || {
        let reloader = reloader.clone();
        Box::pin(async move { reloader.reload().await.map(|report| report.to_string()) })
    })
}
