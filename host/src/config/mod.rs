//! The TOML configuration: schema, loading and validation.
//!
//! Every table denies unknown keys, and errors name the file, line and key at fault
//! (`examples/quickstart.toml:12:1: listeners[0].role: unknown variant ...`).
//! Each section lives in its own file, owned by the concern that reads it.

pub mod dns;
pub mod mailauth;
pub mod mta_sts;
pub mod ops;
pub mod plugins;
pub mod queue;
pub mod server;
pub mod tls_rpt;

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The quickstart configuration, embedded so `mailwit serve` works anywhere without files.
pub const QUICKSTART_TOML: &str = include_str!("../../../examples/quickstart.toml");
/// The quickstart's users file (alice@example.test / alice-secret, argon2-hashed).
pub const QUICKSTART_USERS: &str = include_str!("../../../examples/users");

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host name, state directory, limits, TLS material.
    #[serde(default)]
    pub server: server::ServerConfig,
    /// `[[listeners]]`: address, role, pipeline.
    #[serde(default)]
    pub listeners: Vec<server::ListenerConfig>,
    /// Local domains, mailboxes and aliases.
    #[serde(default)]
    pub local: server::LocalConfig,
    /// The built-in credential backend.
    #[serde(default)]
    pub auth: server::AuthConfig,
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
    /// `[dns]`: the resolver every lookup of the server goes through.
    #[serde(default)]
    pub dns: dns::DnsConfig,
    /// `[admin]`: the operator HTTP listener (metrics, health).
    #[serde(default)]
    pub admin: ops::AdminConfig,
    /// `[log]`: log format.
    #[serde(default)]
    pub log: ops::LogConfig,
    /// `[kv]`: where the plugins' kv stores live.
    #[serde(default)]
    pub kv: ops::KvConfig,
    /// `[odmr]`: who may collect which held domains with ATRN (RFC 2645).
    #[serde(default)]
    pub odmr: queue::OdmrConfig,
    /// `[mta_sts]`: MTA-STS (RFC 8461) for outbound delivery.
    #[serde(default)]
    pub mta_sts: mta_sts::MtaStsConfig,
    /// `[tls_rpt]`: SMTP TLS reporting (RFC 8460) for outbound delivery.
    #[serde(default)]
    pub tls_rpt: tls_rpt::TlsRptConfig,
    /// `[[dkim.sign]]`: DKIM keys outgoing mail is signed with.
    #[serde(default)]
    pub dkim: mailauth::DkimConfig,
    /// `[authentication]`: SPF, DKIM, DMARC and ARC verification of inbound mail.
    #[serde(default)]
    pub authentication: mailauth::AuthenticationConfig,
    /// `[arc]`: ARC sealing of verified mail forwarded off-site.
    #[serde(default)]
    pub arc: mailauth::ArcConfig,
    /// `[dmarc_reports]`: DMARC aggregate reports (off by default).
    #[serde(default)]
    pub dmarc_reports: mailauth::DmarcReportsConfig,
    /// The file this configuration came from (None for the embedded quickstart).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// A configuration error, located: `file:line:column: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error has no position (e.g. the file could not be read).
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `listeners[1].role` (empty if unknown).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Whether mail for `domain` is kept for an ODMR customer: a `[routes]` hold, or a domain
    /// `[odmr] users` may collect (held by a route plugin's `route-hold`). We are its MX: the
    /// relay check accepts it like a local domain.
    pub fn is_odmr_domain(&self, domain: &str) -> bool {
        self.routes.is_odmr(domain) || self.odmr.collects(domain)
    }

    /// Reads, parses and validates a configuration file. Relative paths inside it (TLS files,
    /// users file) are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Config::parse(&text, &file, Some(&base))?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The embedded quickstart (examples/quickstart.toml with its users inline).
    pub fn quickstart() -> Config {
        let mut config = Config::parse(QUICKSTART_TOML, "<embedded quickstart>", None)
            .expect("the embedded quickstart is valid");
        config.auth.users_file = None;
        config.auth.users = QUICKSTART_USERS.lines().map(str::to_string).collect();
        config
    }

    /// Parses and validates TOML text. `file` names it in errors; `base` resolves relative paths.
    pub fn parse(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let locate = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            let (line, column) = span.map_or((0, 0), |s| line_column(text, s.start));
            ConfigError {
                file: file.to_string(),
                line,
                column,
                key,
                message,
            }
        };
        let deserializer = toml::de::Deserializer::parse(text)
            .map_err(|e| locate(e.span(), String::new(), e.message().to_string()))?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            let inner = e.into_inner();
            locate(inner.span(), key, inner.message().to_string())
        })?;
        if let Some(base) = base {
            config.resolve_paths(base);
        }
        config.validate().map_err(|(key, message)| {
            let span = span_of(text, &key);
            locate(span, key, message)
        })?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.server.tls.cert.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.server.tls.key.as_mut() {
            resolve(p);
        }
        for files in self.server.tls.certificates.iter_mut() {
            resolve(&mut files.cert);
            resolve(&mut files.key);
        }
        for tls in self.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
            if let Some(p) = tls.cert.as_mut() {
                resolve(p);
            }
            if let Some(p) = tls.key.as_mut() {
                resolve(p);
            }
            for files in tls.certificates.iter_mut() {
                resolve(&mut files.cert);
                resolve(&mut files.key);
            }
        }
        if let Some(p) = self.auth.users_file.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.dns.trust_anchors.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.mta_sts.ca_file.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.tls_rpt.ca_file.as_mut() {
            resolve(p);
        }
        let relays = self
            .routes
            .smarthost
            .iter_mut()
            .chain((self.routes.domains.values_mut()).filter_map(|d| d.relay.as_mut()));
        for relay in relays {
            if let Some(p) = relay.ca_file.as_mut() {
                resolve(p);
            }
        }
        for entry in &mut self.dkim.sign {
            if let Some(p) = entry.key.as_mut() {
                resolve(p);
            }
        }
        if let Some(seal) = self.arc.seal.as_mut() {
            resolve(&mut seal.key);
        }
        if let Some(p) = self.kv.path.as_mut() {
            resolve(p);
        }
    }

    /// Semantic checks; the error names the key at fault.
    fn validate(&self) -> Result<(), (String, String)> {
        let s = &self.server;
        if s.hostname.is_empty() || s.hostname.contains(|c: char| c.is_whitespace()) {
            return Err((
                "server.hostname".into(),
                "must be a non-empty host name".into(),
            ));
        }
        let limits = &s.limits;
        let positive = [
            ("max_message_size", limits.max_message_size),
            ("max_recipients", limits.max_recipients),
            ("max_connections", limits.max_connections),
            ("max_connections_per_ip", limits.max_connections_per_ip),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((format!("server.limits.{key}"), "must be at least 1".into()));
            }
        }
        if limits.max_command_line < 512 {
            return Err((
                "server.limits.max_command_line".into(),
                "must be at least 512 (RFC 5321 4.5.3.1.4)".into(),
            ));
        }
        if limits.max_text_line < 1000 {
            return Err((
                "server.limits.max_text_line".into(),
                "must be at least 1000 (RFC 5321 4.5.3.1.6)".into(),
            ));
        }
        let t = &s.timeouts;
        for (key, value) in [
            ("greeting", t.greeting),
            ("command", t.command),
            ("data_init", t.data_init),
            ("data_block", t.data_block),
            ("data_termination", t.data_termination),
        ] {
            if value == 0 {
                return Err((
                    format!("server.timeouts.{key}"),
                    "must be at least 1 second".into(),
                ));
            }
        }
        if s.tls.cert.is_some() != s.tls.key.is_some() {
            let key = if s.tls.cert.is_some() { "key" } else { "cert" };
            return Err((
                format!("server.tls.{key}"),
                "cert and key must be given together".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.name.is_empty() {
                return Err((format!("listeners[{i}].name"), "must not be empty".into()));
            }
            if !names.insert(listener.name.as_str()) {
                return Err((
                    format!("listeners[{i}].name"),
                    format!("duplicate listener name {:?}", listener.name),
                ));
            }
            if listener.proxy_protocol && listener.proxy_trusted.is_empty() {
                return Err((
                    format!("listeners[{i}].proxy_trusted"),
                    "proxy_protocol = true needs the networks of the balancers, e.g. [\"10.0.0.0/8\"]".into(),
                ));
            }
            if let Some(pipeline) = &listener.pipeline
                && !self.pipelines.contains_key(pipeline)
            {
                return Err((
                    format!("listeners[{i}].pipeline"),
                    format!("no [pipelines.{pipeline}] is defined"),
                ));
            }
        }
        let mut selectors = std::collections::HashSet::new();
        for (i, entry) in self.dkim.sign.iter().enumerate() {
            let label_ok = |s: &str| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && !s.ends_with('.')
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            };
            if !label_ok(&entry.domain) {
                return Err((
                    format!("dkim.sign[{i}].domain"),
                    format!("{:?} is not a domain name", entry.domain),
                ));
            }
            if !label_ok(&entry.selector) {
                return Err((
                    format!("dkim.sign[{i}].selector"),
                    format!(
                        "{:?} is not a selector (letters, digits, '-', '.')",
                        entry.selector
                    ),
                ));
            }
            let pair = (
                entry.domain.to_ascii_lowercase(),
                entry.selector.to_ascii_lowercase(),
            );
            if !selectors.insert(pair) {
                return Err((
                    format!("dkim.sign[{i}].selector"),
                    "this domain already has a key with this selector".into(),
                ));
            }
        }
        let reports = &self.dmarc_reports;
        if reports.enabled && !reports.email.contains('@') {
            return Err((
                "dmarc_reports.email".into(),
                "an address is needed to send reports from".into(),
            ));
        }
        if reports.enabled && reports.interval.is_zero() {
            return Err((
                "dmarc_reports.interval".into(),
                "must be longer than zero".into(),
            ));
        }
        if self.authentication.max_signatures == 0 {
            return Err((
                "authentication.max_signatures".into(),
                "must be at least 1".into(),
            ));
        }
        self.kv.validate()?;
        if let Err(e) = self.routes.validate() {
            let (key, message) = e.split_once(": ").unwrap_or(("routes", &e));
            return Err((key.to_string(), message.to_string()));
        }
        let route_plugins = self
            .pipelines
            .get(plugins::QUEUE_PIPELINE)
            .is_some_and(|p| !p.route.is_empty());
        if let Err(e) = self.odmr.validate(&self.routes, route_plugins) {
            let (key, message) = e.split_once(": ").unwrap_or(("odmr", &e));
            return Err((key.to_string(), message.to_string()));
        }
        for (i, domain) in self.local.domains.iter().enumerate() {
            if domain.is_empty() || domain.contains(['@', ' ']) || domain.ends_with('.') {
                return Err((
                    format!("local.domains[{i}]"),
                    format!("{domain:?} is not a domain name"),
                ));
            }
        }
        for (i, mailbox) in self.local.mailboxes.iter().enumerate() {
            match crate::mail::address::split(mailbox) {
                Some((local, domain))
                    if !local.is_empty() && self.local.is_local_domain(domain) => {}
                _ => {
                    return Err((
                        format!("local.mailboxes[{i}]"),
                        format!("{mailbox:?} is not an address in a local domain"),
                    ));
                }
            }
        }
        for (alias, target) in &self.local.aliases {
            if self.local.resolve(target).is_none() {
                return Err((
                    format!("local.aliases.{alias}"),
                    format!("{target:?} is not a local mailbox (or the aliases loop)"),
                ));
            }
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// The span of a dotted key path such as `listeners[1].pipeline` or `local.aliases.postmaster`.
fn span_of(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable = root.get_ref();
    let mut found = None;
    let segments: Vec<&str> = key.split('.').collect();
    for (n, segment) in segments.iter().enumerate() {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*segment, None),
        };
        let (k, mut value) = table.iter().find(|(k, _)| k.get_ref() == name)?;
        found = Some(k.span());
        if let Some(i) = index {
            value = value.get_ref().as_array()?.get(i)?;
            found = Some(value.span());
        }
        if n + 1 == segments.len() {
            break;
        }
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        Config::parse(text, "t.toml", None).unwrap_err()
    }

    #[test]
    fn quickstart_parses() {
        let config = Config::quickstart();
        assert_eq!(config.listeners.len(), 4);
        assert_eq!(
            config.local.resolve("Postmaster@Example.TEST").as_deref(),
            Some("alice@example.test")
        );
        assert!(config.local.resolve("carol@example.test").is_none());
        assert!(!config.auth.users.is_empty());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("[server]\nhostname = \"a\"\nbogus = 1\n");
        assert_eq!((e.line, e.column), (3, 1));
        assert!(e.message.contains("bogus"), "{e}");
        assert_eq!(e.key, "server.bogus");
        assert!(
            e.to_string().starts_with("t.toml:3:1: server.bogus: "),
            "{e}"
        );
    }

    #[test]
    fn bad_value_names_nested_key() {
        let e = err(
            "[[listeners]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nrole = \"mx\"\n\n\
             [[listeners]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\nrole = \"relay\"\n",
        );
        assert_eq!(e.key, "listeners[1].role");
        assert_eq!(e.line, 9);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = err("[server]\nhostname = \n");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let e = err("[server.limits]\nmax_recipients = 0\n");
        assert_eq!(e.key, "server.limits.max_recipients");
        assert_eq!(e.line, 2);
        let e = err(
            "[local]\ndomains = [\"a.test\"]\nmailboxes = [\"x@a.test\"]\n\
                     aliases = { postmaster = \"nobody@a.test\" }\n",
        );
        assert_eq!(e.key, "local.aliases.postmaster");
        assert_eq!(e.line, 4);
        let e = err(
            "[[listeners]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nrole = \"mx\"\n\
                     pipeline = \"nope\"\n",
        );
        assert_eq!(e.key, "listeners[0].pipeline");
        assert_eq!(e.line, 5);
    }
}
