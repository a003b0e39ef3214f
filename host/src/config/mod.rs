//! The TOML configuration: schema, loading and validation.
//!
//! Every table denies unknown keys, and errors name the file, line and key at fault.
//! Each section lives in its own file, owned by the concern that reads it.

pub mod engine;
pub mod plugins;
pub mod queue;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host name, state directory, limits, TLS material.
    #[serde(default)]
    pub server: engine::ServerConfig,
    /// `[[listeners]]`: address, role, pipeline.
    #[serde(default)]
    pub listeners: Vec<engine::ListenerConfig>,
    /// Local domains, mailboxes and aliases.
    #[serde(default)]
    pub local: engine::LocalConfig,
    /// The built-in credential backend.
    #[serde(default)]
    pub auth: engine::AuthConfig,
    /// `[plugins.NAME]`: one table per plugin instance.
    #[serde(default)]
    pub plugins: std::collections::BTreeMap<String, plugins::PluginConfig>,
    /// `[pipelines.NAME]`: per hook, the plugins that run in order.
    #[serde(default)]
    pub pipelines: std::collections::BTreeMap<String, plugins::PipelineConfig>,
    /// Retry schedule, bounces, concurrency.
    #[serde(default)]
    pub queue: queue::QueueConfig,
    /// The route table used when no route hook decides.
    #[serde(default)]
    pub routes: queue::RoutesConfig,
}
