//! `config`: the plugin's own `config` table from the TOML file, by dotted path or whole.

use crate::plugins::bindings::mailwit::plugin::config::{Host, Value};
use crate::plugins::state::HostState;

impl Host for HostState {
    async fn get(&mut self, key: String) -> Option<Value> {
        lookup(&self.ctx.config, &key).map(to_value)
    }

    async fn all(&mut self) -> String {
        self.ctx.config_text.to_string()
    }
}

/// The value at a dotted path such as "limits.per-ip".
pub fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

fn to_value(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::Text(s.clone()),
        toml::Value::Integer(i) => Value::Integer(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Boolean(*b),
        toml::Value::Datetime(d) => Value::Text(d.to_string()),
        toml::Value::Array(items) if items.iter().all(|v| v.is_str()) => Value::TextList(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        other => Value::Toml(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_reach_nested_tables() {
        let table: toml::Table = toml::from_str("a = 1\n[limits]\nper-ip = 5\n").unwrap();
        assert_eq!(lookup(&table, "a").and_then(|v| v.as_integer()), Some(1));
        assert_eq!(
            lookup(&table, "limits.per-ip").and_then(|v| v.as_integer()),
            Some(5)
        );
        assert!(lookup(&table, "limits.missing").is_none());
        assert!(lookup(&table, "a.b").is_none());
    }
}
