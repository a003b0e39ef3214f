//! The server's own settings: `[server]` (server-wide), `[[listeners]]`, `[local]` domains and
//! mailboxes, `[auth]` built-in users.
//!
//! ```toml
//! [server]
//! hostname = "mx.example.test"      # default: the machine's host name
//! state_dir = "var"                 # spool, Maildirs, listeners.json (relative to the working directory)
//! plugin_cache_dir = "/var/cache/mailwit"   # compiled plugins (default: <state_dir>/plugin-cache)
//! shutdown_grace = 30               # seconds transactions in flight get on SIGTERM
//! [server.limits]
//! max_message_size = 26214400
//! [server.timeouts]
//! command = 300
//! [server.tls]
//! cert = "cert.pem"                 # both optional: without them a self-signed cert is generated
//! key = "key.pem"
//! certificates = [{ cert = "other.pem", key = "other.key" }]   # more, chosen by SNI
//! reload_interval = 10              # seconds between checks for changed files (0: never)
//!
//! [[listeners]]
//! name = "mx"
//! address = "127.0.0.1:2525"
//! role = "mx"                       # mx | submission | submissions | odmr
//!
//! [local]
//! domains = ["example.test"]
//! mailboxes = ["alice@example.test", "bob@example.test"]
//! aliases = { postmaster = "alice@example.test" }
//!
//! [auth]
//! users_file = "users"
//! ```

use crate::policy::ListenerRole;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The name in the greeting, EHLO reply and Received header. Default: the machine's host name.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Where the spool (`queue/`), Maildirs (`mail/`) and `listeners.json` live. A relative path is
    /// relative to the working directory (it is run-time state, not part of the configuration);
    /// `--state-dir` overrides it.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where compiled plugins are cached (default `<state_dir>/plugin-cache`). Entries are keyed
    /// by the component's SHA-256 and the engine, so servers may share one directory: a Python or
    /// JavaScript component then compiles once, not once per server.
    #[serde(default)]
    pub plugin_cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Seconds that transactions in flight get to finish after SIGTERM/SIGINT.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: u64,
    /// Certificate and key for STARTTLS and implicit TLS.
    #[serde(default)]
    pub tls: TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            hostname: default_hostname(),
            state_dir: default_state_dir(),
            plugin_cache_dir: None,
            limits: LimitsConfig::default(),
            timeouts: TimeoutsConfig::default(),
            shutdown_grace: default_shutdown_grace(),
            tls: TlsConfig::default(),
        }
    }
}

impl ServerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }
}

fn default_hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("var")
}

fn default_shutdown_grace() -> u64 {
    30
}

/// Per-session and per-server limits. Each one is enforced with a precise reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Octets; advertised as SIZE. Larger messages get 552 5.3.4.
    pub max_message_size: usize,
    /// Recipients per transaction; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Octets in a command line including CRLF (RFC 5321 4.5.3.1.4: 512).
    pub max_command_line: usize,
    /// Octets in a message text line including CRLF (RFC 5321 4.5.3.1.6: 1000).
    pub max_text_line: usize,
    /// Simultaneous connections over all listeners; more get 421 4.7.0.
    pub max_connections: usize,
    /// Simultaneous connections from one client IP address; more get 421 4.7.0.
    pub max_connections_per_ip: usize,
    /// Unknown or bad commands before the session is closed with 421.
    pub max_bad_commands: u32,
    /// Failed AUTH attempts before the session is closed with 421.
    pub max_auth_failures: u32,
    /// Recent failed AUTH attempts from one client IP (over all its connections) after which
    /// AUTH from it is refused with 421 4.7.0.
    pub max_auth_failures_per_ip: u32,
    /// Seconds after which one remembered AUTH failure of an IP is forgotten.
    pub auth_failure_decay: u64,
    /// Milliseconds a session may wait for the client between transactions before its plugin
    /// instances are given back (the next hook call makes new ones). Idle connections then cost
    /// no Wasm memory; 0 gives them back as soon as the session waits.
    pub plugin_idle_release_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 512,
            max_text_line: 1000,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_bad_commands: 20,
            max_auth_failures: 3,
            max_auth_failures_per_ip: 10,
            auth_failure_decay: 60,
            plugin_idle_release_ms: 250,
        }
    }
}

/// RFC 5321 4.5.3.2 server timeouts, in seconds. Expiry gets 421 4.4.2 and the connection closes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Before the greeting: the implicit-TLS handshake (a STARTTLS handshake gets `command`).
    pub greeting: u64,
    /// Waiting for the next command.
    pub command: u64,
    /// Waiting for the first data line after 354 (or the first BDAT chunk octets).
    pub data_init: u64,
    /// Waiting for each further block of message data.
    pub data_block: u64,
    /// The client waits this long for the reply after the end of data (RFC 5321 4.5.3.2.6), so it
    /// bounds the engine's own work there (data hook and spool); past it the reply is 451 4.4.2.
    pub data_termination: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            greeting: 300,
            command: 300,
            data_init: 120,
            data_block: 180,
            data_termination: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. Relative paths are relative to the configuration file.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// More certificates, chosen by the name the client asks for (SNI) among each certificate's
    /// DNS names; `cert`/`key` serve clients asking for no name or an unknown one.
    #[serde(default)]
    pub certificates: Vec<CertificateFiles>,
    /// Seconds between checks of the certificate files; a changed file is loaded without a
    /// restart (a broken one is logged and the previous certificate kept). 0: never.
    #[serde(default = "default_tls_reload")]
    pub reload_interval: u64,
}

fn default_tls_reload() -> u64 {
    10
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            certificates: Vec::new(),
            reload_interval: default_tls_reload(),
        }
    }
}

/// One certificate chain and its key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Names the listener in logs, in hooks' SessionInfo and for pipeline selection.
    pub name: String,
    /// "ip:port"; port 0 asks the OS for a free port (the bound address is logged and written to
    /// `<state>/listeners.json`).
    pub address: SocketAddr,
    /// mx: inbound for local domains; submission: STARTTLS, AUTH required; submissions: implicit
    /// TLS, AUTH required; odmr: AUTH (CRAM-MD5 too), then ATRN to collect held mail (RFC 2645).
    pub role: ListenerRole,
    /// The plugin pipeline that decides this listener's policy (see `[pipelines]`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Offer AUTH without TLS. Off by default: credentials never cross the wire in clear.
    #[serde(default)]
    pub auth_plaintext: bool,
    /// Milliseconds to wait before the greeting. A client that sends anything before the greeting
    /// is refused (554 5.5.0) and disconnected, like Postfix's postscreen "pregreet" test. 0 (the
    /// default) still refuses a client whose bytes arrived before the greeting was written.
    #[serde(default)]
    pub greeting_delay_ms: u64,
    /// Expect a PROXY protocol header (v1 or v2, as HAProxy's `send-proxy`/`send-proxy-v2`
    /// sends) before SMTP; the client address it carries is the session's client.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Networks the PROXY header is accepted from (the balancers), e.g. `["10.0.0.0/8"]`.
    /// A connection from elsewhere, or with a malformed header, is closed without a reply.
    #[serde(default)]
    pub proxy_trusted: Vec<ipnet::IpNet>,
    /// Offer AUTH CRAM-MD5 (RFC 2195), also without TLS. Default: only on odmr listeners (its
    /// client, fetchmail, speaks nothing else); see `auth::cram` for why it is weak.
    #[serde(default)]
    pub cram_md5: Option<bool>,
    /// This listener's own certificates (the keys of `[server.tls]`: `cert`, `key`,
    /// `certificates` for SNI, `reload_interval`); absent: the server's.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl ListenerConfig {
    /// Whether this listener offers STARTTLS (mx and submission do; submissions is TLS already).
    pub fn starttls(&self) -> bool {
        !matches!(self.role, ListenerRole::Submissions)
    }
    /// Whether the TLS handshake comes first.
    pub fn implicit_tls(&self) -> bool {
        matches!(self.role, ListenerRole::Submissions)
    }
    /// Whether AUTH is offered at all (submission roles; an mx offers it only under TLS).
    pub fn auth(&self) -> bool {
        true
    }
    /// Whether MAIL needs AUTH first.
    pub fn auth_required(&self) -> bool {
        !matches!(self.role, ListenerRole::Mx)
    }
    /// Whether AUTH CRAM-MD5 is offered.
    pub fn cram_md5(&self) -> bool {
        self.cram_md5
            .unwrap_or(matches!(self.role, ListenerRole::Odmr))
    }
}

/// Local domains, their mailboxes and aliases. Domains and local parts compare case-insensitively.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Domains whose mail is delivered here (to Maildirs).
    pub domains: Vec<String>,
    /// Full addresses of local mailboxes, e.g. "alice@example.test".
    pub mailboxes: Vec<String>,
    /// Alias -> target address. The key is a full address, or a bare local part that applies to
    /// every local domain (e.g. `postmaster`). Targets may be aliases themselves (up to 8 hops).
    pub aliases: BTreeMap<String, String>,
}

impl LocalConfig {
    /// Whether `domain` (any case, trailing dot NOT accepted) is one of ours.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Resolves a local address through aliases to a mailbox address (lowercased), or None if
    /// it names no mailbox. The address's domain must be local.
    pub fn resolve(&self, address: &str) -> Option<String> {
        let mut current = address.to_ascii_lowercase();
        for _ in 0..8 {
            let (local, domain) = crate::mail::address::split(&current)?;
            if !self.is_local_domain(domain) {
                return None;
            }
            if self
                .mailboxes
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&current))
            {
                return Some(current);
            }
            let target = self
                .aliases
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(&current))
                .or_else(|| {
                    self.aliases.iter().find(|(alias, _)| {
                        !alias.contains('@') && alias.eq_ignore_ascii_case(local)
                    })
                })
                .map(|(_, target)| target.to_ascii_lowercase())?;
            current = target;
        }
        None
    }
}

/// The built-in credential backend, asked when no auth plugin knows the user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A file of `user:argon2-PHC-hash` lines (`#` comments); make hashes with
    /// `mailwit hash-password`. Relative paths are relative to the configuration file.
    pub users_file: Option<PathBuf>,
    /// The same lines inline (used by the embedded quickstart; handy in tests).
    pub users: Vec<String>,
}
