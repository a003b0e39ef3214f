//! Configuration for operating the server: the operator HTTP listener, log format and the
//! plugins' kv backend.
//!
//! ```toml
//! [admin]
//! http = "127.0.0.1:2580"        # /metrics, /healthz, /readyz (absent: no HTTP listener)
//! watch_config = true            # reload when the configuration file changes
//!
//! [log]
//! format = "json"                # "text" (default) or "json": one object per line
//!
//! [kv]
//! backend = "embedded"           # "embedded" (default, <state>/kv.redb), "memory" or "redis"
//! url = "redis://127.0.0.1:6379/0"
//! prefix = "mailwit"             # redis key prefix: <prefix>:<plugin>:<key>
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the operator HTTP listener (metrics and health); port 0 picks a free port
    /// (written to `<state>/admin-http.addr`).
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// Reload when the configuration file (or a plugin's .wasm) changes. Off: only
    /// `mailwit reload` and SIGHUP reload.
    #[serde(default = "yes")]
    pub watch_config: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            http: None,
            watch_config: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the fields of the enclosing spans (session id, client,
    /// listener, ...).
    Json,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KvBackend {
    /// An embedded store in the state directory (redb): survives restarts.
    #[default]
    Embedded,
    /// A HashMap: emptied by every restart.
    Memory,
    /// A Redis server shared by several instances.
    Redis,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    pub backend: KvBackend,
    /// `redis://host:port/db` (backend = "redis" only).
    pub url: Option<String>,
    /// Key prefix in Redis, so several deployments can share one server.
    pub prefix: Option<String>,
    /// The embedded store's file (default `<state>/kv.redb`).
    pub path: Option<PathBuf>,
}

impl KvConfig {
    /// The semantic checks of `[kv]`: (key, message) on error.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match (self.backend, &self.url) {
            (KvBackend::Redis, None) => Err((
                "kv.url".into(),
                "backend = \"redis\" needs url = \"redis://host:port\"".into(),
            )),
            (KvBackend::Redis, Some(url))
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://")
                    || url.starts_with("unix://")) =>
            {
                Err(("kv.url".into(), format!("{url:?} is not a redis:// URL")))
            }
            (KvBackend::Embedded | KvBackend::Memory, Some(_)) => Err((
                "kv.url".into(),
                "url applies to backend = \"redis\" only".into(),
            )),
            _ => Ok(()),
        }
    }

    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("mailwit")
    }
}
