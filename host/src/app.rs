//! The composition root: `mailwit serve` wires the spool, the plugin platform, the delivery
//! agents, the queue, the admin socket and the listeners together, and `check-config` checks
//! what the schema cannot. The only module that knows every other one; none of them knows it.

use std::sync::Arc;

use anyhow::Context;

use crate::admin::AdminServer;
use crate::config::Config;
use crate::config::server::LocalConfig;
use crate::delivery::Agents;
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
    if config.listeners.iter().any(|l| l.tls.is_some()) {
        let default = server::tls::acceptor(&config.server.tls, &config.server.hostname)?;
        server::tls::Acceptors::from_config(config, default)?;
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

/// The server's shared counters (AUTH failures per IP) kept in a kv store.
struct KvCounters(Arc<dyn crate::plugins::KvStore>);

#[async_trait::async_trait]
impl server::auth_failures::SharedCounters for KvCounters {
    async fn get(&self, key: &str) -> Result<i64, String> {
        let value = self.0.get(key).await?;
        Ok(value
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
            .unwrap_or(0))
    }
    async fn increment(&self, key: &str, ttl: std::time::Duration) -> Result<i64, String> {
        self.0.increment(key, 1, Some(ttl)).await
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
    // The one resolver of [dns]: MX lookups, DANE, MTA-STS and the plugins' `dns` import.
    let resolver = crate::dns::Resolver::for_server(&config)
        .map_err(|e| anyhow::anyhow!("cannot set up the resolver: {e}"))?;
    // The plugin platform: pipelines per listener, the "queue" pipeline for route/delivery, and
    // reload by file watch, SIGHUP and the admin socket.
    let metrics = Arc::new(crate::metrics::Metrics::new());
    // The plugins' kv: the embedded store in the state directory unless [kv] says otherwise.
    let (kv_backend, kv) = crate::plugins::kv::from_config(&config.kv, &state_dir)
        .map_err(|e| anyhow::anyhow!("cannot open the kv store: {e}"))?;
    let kv_for_server = kv.clone();
    let plugins = crate::plugins::Plugins::from_config(
        &config,
        config.source.as_deref(),
        crate::plugins::RuntimeOptions {
            resolver: Some(resolver.clone()),
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
    let local = Arc::new(server::reload::LiveLocal::new(config.local.clone()));
    let reloader = server::reload::ConfigReload::new(
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
    // TLS-RPT: MX sessions' TLS results in <state>/tls-rpt, reported when a period ends.
    let tls_rpt = match config.tls_rpt.enabled {
        true => Some(
            crate::delivery::tls_rpt::TlsRpt::open(
                state_dir.join("tls-rpt"),
                config.tls_rpt.period_secs(),
            )
            .context("cannot open the TLS-RPT store")?,
        ),
        false => None,
    };
    // Maildir, LMTP, relays and MX (delivery::remote), set up from [queue] and [routes]; MX
    // lookups share the [dns] resolver with the plugins.
    let build_agents = {
        let (state_dir, hostname) = (state_dir.clone(), config.server.hostname.clone());
        let (resolver, metrics) = (resolver.clone(), metrics.clone());
        let tls_rpt = tls_rpt.clone();
        move |config: &Config| -> anyhow::Result<Arc<dyn Agents>> {
            let agents = crate::delivery::with_resolver(
                &state_dir,
                &hostname,
                &config.queue,
                &config.routes,
                resolver.clone(),
                &config.mta_sts,
                tls_rpt.clone(),
            )
            .map_err(|e| anyhow::anyhow!("cannot start the delivery agents: {e}"))?;
            Ok(Arc::new(crate::delivery::measured::Measured {
                inner: agents,
                metrics: metrics.clone(),
            }))
        }
    };
    let agents = build_agents(&config)?;
    // DKIM keys and the verifier: the queue signs its DSNs with the same (reloadable) keys.
    let mailauth =
        Arc::new(crate::mailauth::MailAuth::from_config(&config).context("mail authentication")?);
    let dsn_signer: Arc<dyn crate::queue::MessageSigner> = mailauth.signers.clone();
    // DMARC aggregate reports ([dmarc_reports], off by default) go out through the spool.
    if let (Some(log), Some(verifier)) = (mailauth.reports.clone(), mailauth.verifier.clone()) {
        tokio::spawn(crate::mailauth::reports::run(
            log,
            config.dmarc_reports.clone(),
            config.server.hostname.clone(),
            verifier,
            spool.clone(),
        ));
    }
    let queue = Queue::start_signed(
        spool.clone(),
        QueueOptions {
            config: config.queue.clone(),
            routes: config.routes.clone(),
            hostname: config.server.hostname.clone(),
            hooks: queue_hooks,
            local,
            agents,
        },
        Some(dsn_signer),
    )
    .await
    .context("cannot start the queue manager")?;
    // Reports go out through the spool and queue (mailto:) or HTTPS (https:).
    let _tls_reports = match tls_rpt {
        Some(store) => Some(AbortOnDrop(
            crate::delivery::tls_rpt::send::Reporter::new(
                store,
                resolver.clone(),
                spool.clone(),
                &config.tls_rpt,
                &config.server.hostname,
            )
            .map_err(|e| anyhow::anyhow!("[tls_rpt]: {e}"))?
            .signed_by(mailauth.signers.clone())
            .spawn(),
        )),
        None => None,
    };
    let _ = reloader.queue.set(server::reload::QueueReload {
        queue: queue.clone(),
        agents: Box::new(build_agents),
    });
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
    // AUTH failures per client IP are counted in the kv backend too (the reserved namespace
    // "@server", no plugin can name it): Redis shares them between instances, the embedded
    // store keeps them across a restart.
    let auth_failure_counters = (kv_backend != "memory").then(|| {
        Arc::new(KvCounters(kv_for_server("@server")))
            as Arc<dyn server::auth_failures::SharedCounters>
    });
    let parts = server::SharedParts {
        metrics: metrics.clone(),
        mailauth,
        auth_failure_counters,
    };
    let server =
        Server::start_sharing(config.clone(), hooks, spool, Some(queue.clone()), parts).await?;
    server.write_listeners_json(&state_dir)?;
    let _ = reloader.server.set(server.handle());
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(state_dir = %state_dir.display(), "mailwit ready");

    wait_for_signal().await?;
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
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
    // Rate-limit counters are flushed once a second; the last second's go to disk now.
    crate::plugins::kv::embedded::flush_all();
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
    reloader: Arc<server::reload::ConfigReload>,
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

/// Stops a background task when its owner goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
