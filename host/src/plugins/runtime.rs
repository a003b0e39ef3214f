//! The running plugin platform: the current [`Generation`] behind an `ArcSwap`, and reload.
//!
//! A reload (file watch, SIGHUP, or `mailwit reload` through the admin socket via [`Reloader`])
//! builds a whole new generation off the hot path (parse, compile or load from cache, validate,
//! pre-instantiate) and swaps it in only if every part of it is good; otherwise the running
//! generation stays and the error is logged and returned. Sessions pick the new generation up at
//! their next MAIL; transactions in flight finish on the one they started with.
//!
//! Reload re-reads only `[plugins]` and `[pipelines]`; listener, TLS and queue settings need a restart.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use super::breaker::StatsSnapshot;
use super::dns::Dns;
use super::generation::{Generation, PluginSettings};
pub use super::kv::KvFactory;
pub use super::shared::RuntimeOptions;
use super::shared::Shared;

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    pub generation: u64,
    pub plugins: usize,
    pub pipelines: usize,
    /// Plugins whose compiled code came from the cache (the rest were compiled).
    pub from_cache: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generation {} live: {} plugins ({} from cache), {} pipelines, built in {} ms",
            self.generation,
            self.plugins,
            self.from_cache,
            self.pipelines,
            self.elapsed.as_millis()
        )
    }
}

pub struct Plugins {
    current: ArcSwap<Generation>,
    /// The configuration file reload re-reads (none: reload only through `reload_with`).
    config_path: Option<PathBuf>,
    /// Relative plugin paths are resolved against this.
    base_dir: PathBuf,
    shared: Shared,
    next_generation: AtomicU64,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl Plugins {
    /// Loads the plugin sections of a configuration file.
    pub fn from_file(path: &Path, options: RuntimeOptions) -> Result<Arc<Plugins>> {
        let settings = read_settings(path)?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::build(settings, base_dir, Some(path.to_path_buf()), options)
    }

    /// From an already parsed configuration; `config_path` (if any) is what reload re-reads and
    /// what relative plugin paths are relative to.
    pub fn from_config(
        config: &crate::config::Config,
        config_path: Option<&Path>,
        options: RuntimeOptions,
    ) -> Result<Arc<Plugins>> {
        let base_dir = config_path
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self::build(
            PluginSettings::from_config(config),
            base_dir,
            config_path.map(Path::to_path_buf),
            options,
        )
    }

    /// From plugin settings directly (tests, embedding).
    pub fn from_settings(
        settings: PluginSettings,
        base_dir: &Path,
        options: RuntimeOptions,
    ) -> Result<Arc<Plugins>> {
        Self::build(settings, base_dir.to_path_buf(), None, options)
    }

    fn build(
        settings: PluginSettings,
        base_dir: PathBuf,
        config_path: Option<PathBuf>,
        options: RuntimeOptions,
    ) -> Result<Arc<Plugins>> {
        let shared = Shared {
            dns: Arc::new(match &options.resolver {
                Some(resolver) => Dns::shared(resolver.clone()),
                None => Dns::new(options.dns.clone()),
            }),
            listener_pipelines: ArcSwap::from_pointee(options.listener_pipelines.clone()),
            options,
            kv: Mutex::default(),
            stats: Mutex::default(),
        };
        let generation = Generation::build(
            1,
            &settings,
            &base_dir,
            &shared,
            &shared.options.listener_pipelines,
        )?;
        Ok(Arc::new(Plugins {
            current: ArcSwap::from_pointee(generation),
            config_path,
            base_dir,
            shared,
            next_generation: AtomicU64::new(2),
            reloading: Mutex::new(()),
        }))
    }

    /// Whether `address` leaves this server: its domain is not local. Always false when relay
    /// control on plugin decisions is off (no local domains configured).
    pub fn off_site(&self, address: &str) -> bool {
        let Some(local) = &self.shared.options.local_domains else {
            return false;
        };
        match address.rsplit_once('@') {
            Some((_, domain)) => !local.iter().any(|d| d.eq_ignore_ascii_case(domain)),
            // A bare "postmaster" is local.
            None => false,
        }
    }

    /// Whether relay control on plugin decisions is on (local domains are known).
    pub fn relay_control(&self) -> bool {
        self.shared.options.local_domains.is_some()
    }

    /// The generation new transactions run on.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// A handle the admin socket keeps to trigger reloads.
    pub fn reloader(self: &Arc<Self>) -> Reloader {
        Reloader {
            plugins: self.clone(),
        }
    }

    /// The pipeline a listener's sessions run, if any.
    pub fn pipeline_for_listener(&self, listener: &str) -> Option<String> {
        if let Some(name) = self.shared.listener_pipelines.load().get(listener) {
            return Some(name.clone());
        }
        self.current()
            .pipelines
            .contains_key(listener)
            .then(|| listener.to_string())
    }

    /// Counters of a plugin (kept across reloads).
    pub fn stats(&self, plugin: &str) -> Option<StatsSnapshot> {
        let stats = self.shared.stats.lock().unwrap();
        stats.get(plugin).map(|s| s.snapshot())
    }

    /// Re-reads the configuration file and swaps in the new generation if it is wholly good.
    /// Blocking (compiles); from async code use [`Reloader::reload`].
    pub fn reload(&self) -> Result<ReloadReport> {
        let path = self
            .config_path
            .as_ref()
            .context("this runtime was not loaded from a configuration file")?;
        let settings = read_settings(path);
        let result = settings.and_then(|s| self.reload_with(&s));
        if let Err(e) = &result {
            tracing::error!(
                "reload failed, keeping generation {}: {e:#}",
                self.current().number
            );
        }
        result
    }

    /// Builds a generation from `settings` and swaps it in if it is wholly good.
    pub fn reload_with(&self, settings: &PluginSettings) -> Result<ReloadReport> {
        let listeners = self.shared.listener_pipelines.load_full();
        self.reload_with_listeners(settings, &listeners)
    }

    /// [`Plugins::reload_with`] for a configuration whose listeners changed too: the generation
    /// is checked against the new listener -> pipeline map, and both are swapped in together.
    pub fn reload_with_listeners(
        &self,
        settings: &PluginSettings,
        listener_pipelines: &BTreeMap<String, String>,
    ) -> Result<ReloadReport> {
        let _one_at_a_time = self.reloading.lock().unwrap();
        let started = Instant::now();
        let number = self.next_generation.load(Ordering::Relaxed);
        let generation = Generation::build(
            number,
            settings,
            &self.base_dir,
            &self.shared,
            listener_pipelines,
        )
        .context("the new configuration was not applied")?;
        self.shared
            .listener_pipelines
            .store(Arc::new(listener_pipelines.clone()));
        self.next_generation.store(number + 1, Ordering::Relaxed);
        let report = ReloadReport {
            generation: number,
            plugins: generation.plugins.len(),
            pipelines: generation.pipelines.len(),
            from_cache: generation.from_cache,
            elapsed: started.elapsed(),
        };
        self.current.store(Arc::new(generation));
        tracing::info!("{report}");
        Ok(report)
    }

    /// Watches the configuration file and every plugin `.wasm` it names; a change (debounced)
    /// triggers a reload. Watching stops when the handle is dropped.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<WatchHandle> {
        let plugins = self.clone();
        self.watch_with(
            debounce,
            Box::new(move || {
                let _ = plugins.reload();
            }),
        )
    }

    /// [`Plugins::watch`], running `on_change` instead of a plugins-only reload (the server's
    /// full reload uses this).
    pub fn watch_with(
        self: &Arc<Self>,
        debounce: Duration,
        on_change: Box<dyn Fn() + Send>,
    ) -> Result<WatchHandle> {
        use notify::Watcher;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    let _ = tx.send(event);
                }
            })
            .context("starting the file watcher")?;
        let stop = Arc::new(AtomicBool::new(false));
        let plugins = self.clone();
        let mut watched_dirs: HashSet<PathBuf> = HashSet::new();
        let mut files = plugins.watched_files();
        for dir in parent_dirs(&files) {
            watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
                .with_context(|| format!("watching {}", dir.display()))?;
            watched_dirs.insert(dir);
        }
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mailwit-plugin-watch".into())
            .spawn(move || {
                let mut due: Option<Instant> = None;
                while !stop_flag.load(Ordering::Relaxed) {
                    match rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(event) => {
                            let relevant = !matches!(event.kind, notify::EventKind::Access(_))
                                && event.paths.iter().any(|p| files.contains(p));
                            if relevant {
                                due = Some(Instant::now() + debounce);
                            }
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    if due.is_some_and(|at| Instant::now() >= at) {
                        due = None;
                        on_change();
                        // The new generation may name other plugin files.
                        files = plugins.watched_files();
                        for dir in parent_dirs(&files) {
                            if !watched_dirs.contains(&dir)
                                && watcher
                                    .watch(&dir, notify::RecursiveMode::NonRecursive)
                                    .is_ok()
                            {
                                watched_dirs.insert(dir);
                            }
                        }
                    }
                }
            })
            .context("spawning the watch thread")?;
        Ok(WatchHandle {
            stop,
            thread: Some(thread),
        })
    }

    /// [`Plugins::watch`] with a 200 ms debounce; a watch that cannot start is logged, not fatal.
    pub fn watch_default(self: &Arc<Self>) -> Option<WatchHandle> {
        match self.watch(Duration::from_millis(200)) {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(
                    "plugin file watch not started (reload with SIGHUP or `mailwit reload`): {e:#}"
                );
                None
            }
        }
    }

    fn watched_files(&self) -> HashSet<PathBuf> {
        let mut files: HashSet<PathBuf> = self
            .current()
            .plugin_files(&self.base_dir)
            .into_iter()
            .map(|p| absolute(&p))
            .collect();
        if let Some(path) = &self.config_path {
            files.insert(absolute(path));
        }
        files
    }

    /// Reloads on SIGHUP for as long as the returned task runs (needs a tokio runtime).
    pub fn reload_on_sighup(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let reloader = self.reloader();
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading plugins");
                let _ = reloader.reload().await;
            }
        }))
    }
}

fn read_settings(path: &Path) -> Result<PluginSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PluginSettings::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn parent_dirs(files: &HashSet<PathBuf>) -> HashSet<PathBuf> {
    files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .filter(|d| d.is_dir())
        .collect()
}

/// Keeps the file watch alive; dropping it stops watching.
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the admin socket (`mailwit reload`) holds: reload from async code.
#[derive(Clone)]
pub struct Reloader {
    plugins: Arc<Plugins>,
}

impl Reloader {
    /// Re-reads the configuration file; builds the new generation on a blocking thread.
    pub async fn reload(&self) -> Result<ReloadReport> {
        let plugins = self.plugins.clone();
        tokio::task::spawn_blocking(move || plugins.reload())
            .await
            .context("the reload task panicked")?
    }

    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.plugins
    }
}
