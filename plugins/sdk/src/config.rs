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
//! A plugin instance serves one SMTP session (or, queue-side, many route calls): [`cached`]
//! parses the table once per instance and hands out the same value on every later call, so a hook
//! just writes `let settings = config::cached::<Settings>()?;`. [`cached_with`] also caches what
//! the settings are turned into (a compiled rule table, say). The host hands over the table as it
//! is in the generation the session runs on, so a reloaded configuration applies from the next
//! instance on.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;

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

/// The plugin's `config` table as `T`, parsed on the first call of this instance and remembered
/// (the error too: a table that does not parse is reported the same way on every call).
pub fn cached<T: DeserializeOwned + Send + Sync + 'static>() -> Result<&'static T, ConfigError> {
    cached_with::<T, T>(Ok)
}

/// Like [`cached`], but remembers what `build` makes of the settings (e.g. a table compiled from
/// them); `build`'s error reads as a configuration error. One value per type `T` and instance.
pub fn cached_with<S, T>(
    build: impl FnOnce(S) -> Result<T, String>,
) -> Result<&'static T, ConfigError>
where
    S: DeserializeOwned,
    T: Send + Sync + 'static,
{
    remembered(|| load::<S>().and_then(|settings| build(settings).map_err(ConfigError)))
}

/// One value per type for the life of the instance, made by `make` on first use. Leaked on
/// purpose: an instance ends as a whole, and the value must outlive every hook call.
fn remembered<T: Send + Sync + 'static>(
    make: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<&'static T, ConfigError> {
    type Values = HashMap<TypeId, &'static (dyn Any + Send + Sync)>;
    static VALUES: Mutex<Option<Values>> = Mutex::new(None);
    let key = TypeId::of::<Result<T, ConfigError>>();
    let found = VALUES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(&key)
        .copied();
    let value = match found {
        Some(value) => value,
        None => {
            // Made outside the lock: `make` may itself read cached values.
            let made: &'static (dyn Any + Send + Sync) = Box::leak(Box::new(make()));
            *VALUES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(HashMap::new)
                .entry(key)
                .or_insert(made)
        }
    };
    let value: &'static Result<T, ConfigError> =
        value.downcast_ref().expect("stored under its own type");
    value.as_ref().map_err(Clone::clone)
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

    #[test]
    fn remembered_values_are_made_once_per_type() {
        struct Built(u32);
        let mut calls = 0;
        let first = remembered(|| {
            calls += 1;
            Ok(Built(7))
        })
        .unwrap();
        let again = remembered::<Built>(|| unreachable!("made once")).unwrap();
        assert!(std::ptr::eq(first, again));
        assert_eq!((again.0, calls), (7, 1));
        struct Broken;
        let err = remembered::<Broken>(|| Err(ConfigError("bad".into()))).err();
        assert_eq!(err, Some(ConfigError("bad".into())));
        assert!(remembered::<Broken>(|| unreachable!("made once")).is_err());
    }
}
