//! Configuration of plugin instances (`[plugins.NAME]`) and pipelines (`[pipelines.NAME]`).
//!
//! ```toml
//! [plugins.filter]
//! path = "plugins/my_filter.wasm"        # relative to the config file; or: builtin = "content-filter"
//! grants = ["log", "config", "kv"]       # host imports the plugin may use
//! limits = { memory_mib = 32, time_ms = 200, fuel = 50_000_000, instances = 8 }
//! on_error = "tempfail"                  # tempfail | reject | continue | disconnect
//! breaker = { failures = 5, open_ms = 30_000 }
//! stateless = false                      # true: instances are reused across sessions
//! config = { reject_words = ["viagra"] } # handed to the plugin through the `config` import
//! # with grants = [..., "http"]: where wasi:http may go, and its limits
//! http = { allow = ["127.0.0.1:11333", "https://accounts.example.test"], timeout_ms = 5000, max_response_bytes = 1_048_576 }
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
    /// The plugin keeps no state between hook calls that belongs to one session, so its
    /// instances are reused across sessions (taken from a per-plugin pool for each call and given
    /// back after it) instead of one fresh instance per session: what makes a Python or
    /// JavaScript plugin affordable per connection.
    #[serde(default)]
    pub stateless: bool,
    /// Where the plugin's outgoing HTTP (wasi:http, grant "http") may go, and its limits.
    #[serde(default)]
    pub http: Option<HttpGrantConfig>,
}

/// `[plugins.NAME] http = { ... }`: the destinations and limits of the "http" grant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrantConfig {
    /// Authorities the plugin may reach: "host:port" (http or https), "https://host" (port 443),
    /// "http://host:port", ... Anything else is refused before a connection is made.
    pub allow: Vec<String>,
    /// Per request: connect, send, response headers and body, all together (also cut short by
    /// the hook call's `limits.time_ms`).
    #[serde(default = "HttpGrantConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest response body; a longer one fails the read in the plugin.
    #[serde(default = "HttpGrantConfig::default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Extra CA certificates (PEM) trusted for https, besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl HttpGrantConfig {
    fn default_timeout_ms() -> u64 {
        5000
    }
    fn default_max_response_bytes() -> u64 {
        1024 * 1024
    }
}

/// A capability that must be granted explicitly: a host import, real WASI clocks or randomness,
/// or sending mail off-site on behalf of an unauthenticated session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    Log,
    Config,
    Kv,
    Dns,
    /// The `clock` import, and the real `wasi:clocks` (without it they read a frozen clock).
    Clock,
    /// The real `wasi:random` (without it, a fixed deterministic byte sequence).
    Random,
    /// A decision that sends an unauthenticated session's mail off-site: a rcpt rewrite or an
    /// added recipient outside the local domains, or a route to a relay or MX.
    Relay,
    /// Outgoing HTTP through `wasi:http/outgoing-handler`, only to the authorities of the
    /// plugin's `http.allow`.
    Http,
}

impl Grant {
    pub const ALL: [Grant; 8] = [
        Grant::Log,
        Grant::Config,
        Grant::Kv,
        Grant::Dns,
        Grant::Clock,
        Grant::Random,
        Grant::Relay,
        Grant::Http,
    ];

    /// The grant's name in the configuration, e.g. "kv".
    pub fn name(self) -> &'static str {
        match self {
            Grant::Log => "log",
            Grant::Config => "config",
            Grant::Kv => "kv",
            Grant::Dns => "dns",
            Grant::Clock => "clock",
            Grant::Random => "random",
            Grant::Relay => "relay",
            Grant::Http => "http",
        }
    }

    /// The grant a `mailwit:plugin` import interface needs (`None` for interfaces the contract
    /// does not define as imports).
    pub fn for_interface(name: &str) -> Option<Grant> {
        [
            Grant::Log,
            Grant::Config,
            Grant::Kv,
            Grant::Dns,
            Grant::Clock,
        ]
        .into_iter()
        .find(|g| g.name() == name)
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
    /// Most live instances of this plugin at once (sessions beyond it wait up to `time_ms` for
    /// one, then `on_error` applies). Unset: only the server-wide pool bounds it.
    pub instances: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            time_ms: 1000,
            fuel: None,
            instances: None,
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
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub connect: Vec<String>,
    pub ehlo: Vec<String>,
    pub auth: Vec<String>,
    pub mail: Vec<String>,
    pub rcpt: Vec<String>,
    pub data: Vec<String>,
    pub route: Vec<String>,
    pub delivery: Vec<String>,
    /// Before each relay, MX or LMTP delivery attempt (pipeline `queue` only).
    pub outbound: Vec<String>,
}

impl PipelineConfig {
    /// (hook, plugins) for every hook, in transaction order.
    pub fn chains(&self) -> [(crate::policy::Hook, &[String]); 9] {
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
            (Hook::Outbound, &self.outbound),
        ]
    }
}
