//! A generation: one wholly loaded and validated set of plugins and pipelines. Sessions hold an
//! `Arc<Generation>` per transaction, so a reload never changes a transaction in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use serde::Deserialize;

use super::breaker::{Breaker, PluginStats};
use super::instance::LiveInstance;
use super::loader::{LoadContext, LoadedPlugin, load};
use super::shared::Shared;
use super::state::{PluginContext, WasiGrants};
use crate::config::plugins::{Grant, PipelineConfig, PluginConfig, QUEUE_PIPELINE};
use crate::policy::Hook;

/// The plugin part of the configuration file: `[plugins.*]` and `[pipelines.*]`. Reload reads
/// only these; every other section of the file is ignored here (engine settings need a restart).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PluginSettings {
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
}

impl PluginSettings {
    /// Parses the plugin sections out of a whole configuration file.
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub fn from_config(config: &crate::config::Config) -> Self {
        PluginSettings {
            plugins: config.plugins.clone(),
            pipelines: config.pipelines.clone(),
        }
    }
}

/// A loaded plugin with what its instances share.
pub struct PluginEntry {
    pub loaded: LoadedPlugin,
    pub ctx: PluginContext,
    pub breaker: Breaker,
    pub stats: Arc<PluginStats>,
    /// Warm instances of a `stateless` plugin between hook calls, with the calls each served.
    idle: Mutex<Vec<(LiveInstance, u32)>>,
}

/// Idle instances a `stateless` plugin keeps warm (each holds its memory until reused).
pub const STATELESS_IDLE_INSTANCES: usize = 8;
/// Calls one reused instance serves before it is dropped and replaced (a slow leak in a guest
/// cannot grow without bound).
pub const REUSED_INSTANCE_USES: u32 = 10_000;

impl PluginEntry {
    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    /// A warm instance of a `stateless` plugin, if one is idle, and the calls it served.
    pub fn take_idle(&self) -> (Option<LiveInstance>, u32) {
        match self.idle.lock().unwrap().pop() {
            Some((instance, uses)) => (Some(instance), uses),
            None => (None, 0),
        }
    }

    /// Gives a healthy instance back after a call (a failed call has already emptied the slot).
    pub fn give_back(&self, slot: Option<LiveInstance>, uses: u32) {
        let Some(instance) = slot else { return };
        if uses >= REUSED_INSTANCE_USES {
            return;
        }
        let cap = self
            .loaded
            .config
            .limits
            .instances
            .map_or(STATELESS_IDLE_INSTANCES, |n| {
                (n as usize).min(STATELESS_IDLE_INSTANCES)
            });
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < cap {
            idle.push((instance, uses));
        }
    }

    /// Whether its decisions may send an unauthenticated session's mail off-site.
    pub fn may_relay(&self) -> bool {
        self.loaded.config.grants.contains(&Grant::Relay)
    }
}

/// Per hook, the plugins that run, in order.
pub struct Pipeline {
    pub name: String,
    chains: [Vec<Arc<PluginEntry>>; 9],
}

impl Pipeline {
    pub fn chain(&self, hook: Hook) -> &[Arc<PluginEntry>] {
        &self.chains[hook as usize]
    }
}

pub struct Generation {
    /// 1 for the generation loaded at start, +1 for each successful reload.
    pub number: u64,
    pub settings: PluginSettings,
    pub plugins: BTreeMap<String, Arc<PluginEntry>>,
    pub pipelines: BTreeMap<String, Arc<Pipeline>>,
    /// How many plugins were loaded from the compilation cache.
    pub from_cache: usize,
}

impl Generation {
    /// An empty generation: no plugins, no pipelines.
    pub fn empty() -> Self {
        Generation {
            number: 0,
            settings: PluginSettings::default(),
            plugins: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            from_cache: 0,
        }
    }

    /// Loads every plugin and checks every pipeline. Any error fails the whole generation.
    pub(crate) fn build(
        number: u64,
        settings: &PluginSettings,
        base_dir: &Path,
        shared: &Shared,
        listener_pipelines: &BTreeMap<String, String>,
    ) -> Result<Generation> {
        let cx = LoadContext {
            base_dir,
            cache_dir: shared.options.cache_dir.as_deref(),
        };
        let mut plugins = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, config) in &settings.plugins {
            match load(name, config, &cx) {
                Ok(loaded) => {
                    let ctx = PluginContext {
                        plugin: Arc::from(name.as_str()),
                        config: Arc::new(config.config.clone()),
                        config_text: Arc::from(toml::to_string(&config.config).unwrap_or_default()),
                        kv: shared.kv_for(name),
                        dns: shared.dns.clone(),
                        memory_bytes: config.limits.memory_mib as usize * 1024 * 1024,
                        metrics: shared.options.metrics.clone(),
                        wasi: WasiGrants {
                            clocks: config.grants.contains(&Grant::Clock),
                            random: config.grants.contains(&Grant::Random),
                        },
                        http: loaded.http.clone(),
                    };
                    let entry = PluginEntry {
                        idle: Mutex::default(),
                        breaker: Breaker::new(config.breaker),
                        stats: shared.stats_for(name),
                        ctx,
                        loaded,
                    };
                    plugins.insert(name.clone(), Arc::new(entry));
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }

        let mut pipelines = BTreeMap::new();
        for (name, config) in &settings.pipelines {
            let mut chains: [Vec<Arc<PluginEntry>>; 9] = Default::default();
            for (hook, names) in config.chains() {
                if matches!(hook, Hook::Route | Hook::Delivery | Hook::Outbound)
                    && name != QUEUE_PIPELINE
                    && !names.is_empty()
                {
                    errors.push(format!(
                        "pipeline `{name}`: `{hook}` runs in the queue; put it in [pipelines.{QUEUE_PIPELINE}]"
                    ));
                    continue;
                }
                for plugin in names {
                    match plugins.get(plugin) {
                        None => errors.push(format!(
                            "pipeline `{name}`: `{hook}` names plugin `{plugin}`, which is not configured in [plugins]"
                        )),
                        Some(entry) if !entry.loaded.hooks.contains(&hook) => errors.push(format!(
                            "pipeline `{name}`: plugin `{plugin}` does not export the `{hook}` hook (it exports: {})",
                            entry.loaded.hooks.iter().map(|h| h.name()).collect::<Vec<_>>().join(", ")
                        )),
                        Some(entry) => chains[hook as usize].push(entry.clone()),
                    }
                }
            }
            pipelines.insert(
                name.clone(),
                Arc::new(Pipeline {
                    name: name.clone(),
                    chains,
                }),
            );
        }
        for (listener, pipeline) in listener_pipelines {
            if !pipelines.contains_key(pipeline) {
                errors.push(format!(
                    "listener `{listener}` uses pipeline `{pipeline}`, which is not configured in [pipelines]"
                ));
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        let from_cache = plugins.values().filter(|p| p.loaded.from_cache).count();
        Ok(Generation {
            number,
            settings: settings.clone(),
            plugins,
            pipelines,
            from_cache,
        })
    }

    pub fn pipeline(&self, name: &str) -> Option<&Arc<Pipeline>> {
        self.pipelines.get(name)
    }

    /// Files whose change should trigger a reload: every plugin's `.wasm`.
    pub fn plugin_files(&self, base_dir: &Path) -> Vec<std::path::PathBuf> {
        self.settings
            .plugins
            .values()
            .filter_map(|p| p.path.as_ref())
            .map(|p| super::loader::resolve(base_dir, p))
            .collect()
    }
}
