//! Configuration of plugin instances (`[plugins.NAME]`) and pipelines (`[pipelines.NAME]`).
//!
//! ```toml
//! [plugins.filter]
//! path = "plugins/my_filter.wasm"        # relative to the config file; or: builtin = "content-filter"
//! grants = ["log", "config", "kv"]       # host imports the plugin may use
//! limits = { memory_mib = 32, time_ms = 200, fuel = 50_000_000 }
//! on_error = "tempfail"                  # tempfail | reject | continue | disconnect
//! breaker = { failures = 5, open_ms = 30_000 }
//! config = { reject_words = ["viagra"] } # handed to the plugin through the `config` import
//!
//! [pipelines.inbound]                    # a listener names it with `pipeline = "inbound"`
//! mail = ["filter"]
//! data = ["filter"]
//!
//! [pipelines.queue]                      # the pipeline named "queue" supplies route and delivery
//! route = ["router"]
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// The pipeline whose `route` and `delivery` lists the queue manager runs.
pub const QUEUE_PIPELINE: &str = "queue";

/// One plugin instance: which component, what it may import, its limits and failure policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// A `.wasm` component, relative to the configuration file.
    pub path: Option<PathBuf>,
    /// A first-party plugin embedded in the binary, by short name (e.g. "recipients").
    pub builtin: Option<String>,
    /// The plugin's own table, readable through the `config` import.
    #[serde(default)]
    pub config: toml::Table,
    /// Host imports the plugin may use (`message` is always available).
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// A host import that must be granted explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    Log,
    Config,
    Kv,
    Dns,
    Clock,
}

impl Grant {
    pub const ALL: [Grant; 5] = [
        Grant::Log,
        Grant::Config,
        Grant::Kv,
        Grant::Dns,
        Grant::Clock,
    ];

    /// The WIT interface name, e.g. "kv".
    pub fn interface(self) -> &'static str {
        match self {
            Grant::Log => "log",
            Grant::Config => "config",
            Grant::Kv => "kv",
            Grant::Dns => "dns",
            Grant::Clock => "clock",
        }
    }

    pub fn from_interface(name: &str) -> Option<Grant> {
        Grant::ALL.into_iter().find(|g| g.interface() == name)
    }
}

/// Resource limits of one plugin; exceeding one is a plugin failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_mib: u32,
    /// Wall-clock time per hook call (enforced with epoch interruption, 10 ms resolution).
    pub time_ms: u64,
    /// Optional fuel (roughly: wasm instructions) per hook call.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            time_ms: 1000,
            fuel: None,
        }
    }
}

/// What a plugin failure (trap, limit, timeout, open breaker) means for the hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// 451 4.3.0: the client retries later.
    #[default]
    Tempfail,
    /// 554 5.3.0.
    Reject,
    /// Behave as if the plugin had no opinion.
    Continue,
    /// 421 4.3.0 and close the connection.
    Disconnect,
}

/// Circuit breaker: after `failures` consecutive failures the plugin is not called for `open_ms`;
/// `on_error` applies meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub failures: u32,
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_ms: 30_000,
        }
    }
}

/// Per hook, the plugins that run, in order.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub connect: Vec<String>,
    #[serde(default)]
    pub ehlo: Vec<String>,
    #[serde(default)]
    pub auth: Vec<String>,
    #[serde(default)]
    pub mail: Vec<String>,
    #[serde(default)]
    pub rcpt: Vec<String>,
    #[serde(default)]
    pub data: Vec<String>,
    #[serde(default)]
    pub route: Vec<String>,
    #[serde(default)]
    pub delivery: Vec<String>,
}

impl PipelineConfig {
    /// (hook, plugins) for every hook, in transaction order.
    pub fn chains(&self) -> [(crate::policy::Hook, &[String]); 8] {
        use crate::policy::Hook;
        [
            (Hook::Connect, &self.connect),
            (Hook::Ehlo, &self.ehlo),
            (Hook::Auth, &self.auth),
            (Hook::Mail, &self.mail),
            (Hook::Rcpt, &self.rcpt),
            (Hook::Data, &self.data),
            (Hook::Route, &self.route),
            (Hook::Delivery, &self.delivery),
        ]
    }
}
