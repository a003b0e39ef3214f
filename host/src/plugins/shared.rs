//! What outlives generations: how the runtime is set up ([`RuntimeOptions`]) and the registries
//! every generation draws from ([`Shared`]: each plugin's kv store and counters, the resolver).
//! A generation is built from these; the runtime owns them and swaps generations.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::breaker::PluginStats;
use super::dns::{Dns, DnsOptions};
use super::kv::{Counted, KvFactory, KvStore, MemoryKv};

/// How the runtime is set up (from the engine's configuration).
#[derive(Clone, Default)]
pub struct RuntimeOptions {
    /// `<state>/plugin-cache`: compiled components are kept here. `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    pub dns: DnsOptions,
    /// The server's shared resolver (`[dns]`); when set, the `dns` import uses it and `dns` is
    /// ignored.
    pub resolver: Option<Arc<crate::dns::Resolver>>,
    /// Backend of the `kv` import; the in-memory store when `None`.
    pub kv: Option<KvFactory>,
    /// The backend's name in metrics (`embedded`, `redis`, ...), with `kv`.
    pub kv_backend: &'static str,
    /// Listener name -> pipeline name. A listener not named here runs the pipeline of its own name
    /// if there is one, else no plugins at all.
    pub listener_pipelines: BTreeMap<String, String>,
    /// Where hook calls, kv and DNS operations are counted (a private registry by default).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The local domains, for relay control on plugin decisions (see
    /// [`Grant::Relay`](crate::config::plugins::Grant::Relay)). `None` turns that check off
    /// (embedding without a `[local]` section); the server always sets it.
    pub local_domains: Option<Vec<String>>,
}

impl RuntimeOptions {
    /// What `mailwit serve` uses: the cache in `<state>/plugin-cache`, the system resolver, the
    /// in-memory kv, and each listener's `pipeline`.
    pub fn for_server(config: &crate::config::Config) -> Self {
        RuntimeOptions {
            cache_dir: Some(
                config
                    .server
                    .plugin_cache_dir
                    .clone()
                    .unwrap_or_else(|| config.server.state_dir.join("plugin-cache")),
            ),
            listener_pipelines: config
                .listeners
                .iter()
                .filter_map(|l| Some((l.name.clone(), l.pipeline.clone()?)))
                .collect(),
            local_domains: Some(config.local.domains.clone()),
            ..RuntimeOptions::default()
        }
    }
}

/// Registries that outlive generations: each plugin's kv store and counters, the resolver.
pub(crate) struct Shared {
    pub options: RuntimeOptions,
    /// Listener name -> pipeline name; starts as `options.listener_pipelines`, a full reload
    /// (listeners added or changed) replaces it.
    pub(super) listener_pipelines: ArcSwap<BTreeMap<String, String>>,
    pub dns: Arc<Dns>,
    pub(super) kv: Mutex<HashMap<String, Arc<dyn KvStore>>>,
    pub(super) stats: Mutex<HashMap<String, Arc<PluginStats>>>,
}

impl Shared {
    pub fn kv_for(&self, plugin: &str) -> Arc<dyn KvStore> {
        let mut stores = self.kv.lock().unwrap();
        stores
            .entry(plugin.to_string())
            .or_insert_with(|| {
                let (backend, inner) = match &self.options.kv {
                    Some(factory) => (self.options.kv_backend, factory(plugin)),
                    None => ("memory", Arc::new(MemoryKv::default()) as Arc<dyn KvStore>),
                };
                self.options.metrics.kv_started(backend);
                Arc::new(Counted {
                    inner,
                    backend,
                    metrics: self.options.metrics.clone(),
                })
            })
            .clone()
    }

    pub fn stats_for(&self, plugin: &str) -> Arc<PluginStats> {
        let mut stats = self.stats.lock().unwrap();
        stats.entry(plugin.to_string()).or_default().clone()
    }
}
