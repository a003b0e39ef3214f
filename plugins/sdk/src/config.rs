//! The plugin's own `config` table from the server's configuration (needs the `config` grant).
//!
//! Deserialize it into a struct of yours with serde:
//!
//! ```ignore
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct Settings { reject_words: Vec<String> }
//!
//! let settings: Settings = mailwit_plugin::config::load()?;
//! ```
//!
//! A plugin instance serves one SMTP session (or, queue-side, many route calls), so loading once
//! per instance (a `OnceLock`) costs one parse per instance; the host hands over the table as it is
//! in the generation the session runs on, so a reloaded configuration applies from the next
//! transaction on.

use serde::de::DeserializeOwned;

pub use crate::bindings::mailwit::plugin::config::{Value, all, get};

/// Why the configuration table could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid plugin configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The plugin's whole `config` table, deserialized (an absent table reads as empty).
pub fn load<T: DeserializeOwned>() -> Result<T, ConfigError> {
    parse(&all())
}

/// Deserializes a `config` table given as TOML text (as the host's `config.all()` returns it):
/// the pure half of [`load`], for tests.
pub fn parse<T: DeserializeOwned>(toml_text: &str) -> Result<T, ConfigError> {
    basic_toml::from_str(toml_text).map_err(|e| ConfigError(e.to_string().trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        words: Vec<String>,
        limit: u32,
    }

    #[test]
    fn parses_tables_and_reports_errors() {
        let s: Settings = parse("words = [\"a\", \"b\"]\nlimit = 3\n").unwrap();
        assert_eq!(s.words, ["a", "b"]);
        assert_eq!(s.limit, 3);
        assert_eq!(parse::<Settings>("").unwrap(), Settings::default());
        let err = parse::<Settings>("limt = 3").unwrap_err();
        assert!(err.0.contains("limt"), "{err}");
    }
}
