//! MTA-STS (RFC 8461): a domain publishes, over HTTPS, which MX host names are legitimate and
//! that they must present a WebPKI-valid certificate; senders cache the policy for `max_age`.
//!
//! Discovery (§3.1): a TXT record `_mta-sts.<domain>` = `v=STSv1; id=…`. Fetch (§3.3):
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`, certificate verified against the system
//! roots (plus `[mta_sts] ca_file`), status 200 only (redirects refused), at most 64 KiB, within
//! `[mta_sts] timeout`. Cache (§5): `<state>/mta-sts/<domain>.json`, keyed by the policy id: an
//! unchanged id means no fetch; a failed fetch keeps using a cached policy until it expires.
//!
//! Application (§5.1, in `mx`): `enforce` skips MX hosts matching no `mx` pattern and requires a
//! verified certificate naming the host; `testing` delivers as without a policy, logs what
//! enforcement would have refused and has TLS-RPT count it as a failure; `none` does nothing.
//! Where DANE applies it wins (RFC 8461 §2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerified;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::smtp_client::tls::{self, CertificateCheck, Presented};
use crate::config::mta_sts::MtaStsConfig;
use crate::dns::Resolver;

/// Largest policy body accepted (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Largest `max_age` honoured (RFC 8461 §3.2: 31557600 seconds, about a year).
const MAX_AGE_LIMIT: u64 = 31_557_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

/// A parsed policy (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: a host name, or `*.` and a domain (one leftmost label).
    pub mx: Vec<String>,
    pub max_age: u64,
    /// The TXT record's id this policy was fetched under.
    pub id: String,
}

impl Policy {
    /// Whether `host` is one of the policy's MX hosts (§4.1: a wildcard matches exactly one
    /// leftmost label; case-insensitive).
    pub fn allows_mx(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| mx_matches(pattern, &host))
    }
}

/// A domain's policy with the client configurations that apply it (in `mx`, which uses this
/// module and never the reverse).
pub struct StsApplied {
    pub policy: Policy,
    /// Verifies chain and name (for `enforce`).
    pub enforce_tls: Arc<rustls::ClientConfig>,
    /// Verifies and logs, never refuses (for `testing`).
    pub testing_tls: Arc<rustls::ClientConfig>,
    /// What `testing_tls` refused, per host (for TLS-RPT).
    pub testing_refusals: Arc<TestingRefusals>,
}

impl StsApplied {
    /// Why a `testing` policy would have refused `host`: its certificate (the verifier's
    /// verdict), else the host not being one of the policy's MX patterns (RFC 8461 §4.1).
    pub fn testing_refusal(&self, host: &str) -> Option<&'static str> {
        self.testing_refusals
            .refusal(host)
            .or_else(|| (!self.policy.allows_mx(host)).then_some("validation-failure"))
    }
}

impl Policy {
    /// The policy as text lines (TLS-RPT's policy-string).
    pub fn lines(&self) -> Vec<String> {
        let mode = match self.mode {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        };
        let mut lines = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
        lines.extend(self.mx.iter().map(|mx| format!("mx: {mx}")));
        lines.push(format!("max_age: {}", self.max_age));
        lines
    }
}

pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix,
            None => false,
        },
        None => pattern == host,
    }
}

/// Parses a policy body: `key: value` lines (CRLF or LF); `version: STSv1`, `mode`, `max_age`
/// required, `mx` required (repeated) unless the mode is `none`; unknown keys ignored.
pub fn parse_policy(text: &str, id: &str) -> Result<Policy, String> {
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("malformed policy line {line:?}"));
        };
        let value = value.trim();
        match key.trim() {
            "version" => version = Some(value.to_string()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            "max_age" => {
                let age: u64 = value
                    .parse()
                    .map_err(|_| format!("invalid max_age {value:?}"))?;
                max_age = Some(age.min(MAX_AGE_LIMIT));
            }
            "mx" => mx.push(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("missing or unknown version (want STSv1)".into());
    }
    let mode = mode.ok_or("missing mode")?;
    let max_age = max_age.ok_or("missing max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx patterns".into());
    }
    Ok(Policy {
        mode,
        mx,
        max_age,
        id: id.to_string(),
    })
}

/// The id of the one `v=STSv1` TXT record (§3.1); more than one is an error (no policy).
pub fn parse_txt(records: &[String]) -> Result<String, String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.trim_start().starts_with("v=STSv1"))
        .collect();
    if sts.len() != 1 {
        return Err(format!("{} v=STSv1 records (want exactly one)", sts.len()));
    }
    let id = sts[0]
        .split(';')
        .map(str::trim)
        .find_map(|field| field.strip_prefix("id="))
        .ok_or("no id field")?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("invalid id {id:?}"));
    }
    Ok(id.to_string())
}

/// Why a policy could not be had (RFC 8460 result types, for the log and reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Connect, TLS, HTTP status, size or timeout: `sts-policy-fetch-error`.
    Fetch(String),
    /// The policy host's certificate was refused: `sts-webpki-invalid`.
    Webpki(String),
    /// The body did not parse: `sts-policy-invalid`.
    Invalid(String),
}

impl FetchError {
    pub fn result_type(&self) -> &'static str {
        match self {
            FetchError::Fetch(_) => "sts-policy-fetch-error",
            FetchError::Webpki(_) => "sts-webpki-invalid",
            FetchError::Invalid(_) => "sts-policy-invalid",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Fetch(e) | FetchError::Webpki(e) | FetchError::Invalid(e) => {
                write!(f, "{}: {e}", self.result_type())
            }
        }
    }
}

/// What the cache file holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Cached {
    id: String,
    /// The policy as fetched.
    body: String,
    /// Milliseconds since the epoch after which the policy is no longer used.
    expires_ms: u64,
}

/// Policy discovery, fetch and cache for all destinations.
pub struct MtaSts {
    resolver: Arc<Resolver>,
    config: MtaStsConfig,
    cache_dir: Option<PathBuf>,
    /// Verifying client configuration: system roots plus `ca_file`.
    tls: Arc<rustls::ClientConfig>,
    roots: Arc<RootCertStore>,
    memory: Mutex<HashMap<String, Cached>>,
}

impl MtaSts {
    /// `cache_dir`: where policies are kept across restarts (`<state>/mta-sts`); `None`: memory.
    pub fn new(
        resolver: Arc<Resolver>,
        config: MtaStsConfig,
        cache_dir: Option<PathBuf>,
    ) -> Result<MtaSts, String> {
        let roots = tls::system_roots(config.ca_file.as_deref())
            .map_err(|e| format!("mta_sts.ca_file: {e}"))?;
        let roots = Arc::new(roots);
        let tls = tls::verifying_config(roots.clone()).map_err(|e| e.to_string())?;
        Ok(MtaSts {
            resolver,
            config,
            cache_dir,
            tls,
            roots,
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// The policy of `domain` with the TLS configurations that apply it (see `mx`).
    pub async fn applied(&self, domain: &str) -> Option<StsApplied> {
        self.applied_reporting(domain).await.0
    }

    /// [`MtaSts::applied`], and why a policy fetch failed if one did (for TLS-RPT).
    pub async fn applied_reporting(
        &self,
        domain: &str,
    ) -> (Option<StsApplied>, Option<FetchError>) {
        let (policy, error) = self.policy_reporting(domain).await;
        let applied = policy.map(|policy| {
            let testing_refusals = Arc::new(TestingRefusals::default());
            StsApplied {
                enforce_tls: self.verifying_config(),
                testing_tls: self.testing_config(domain, testing_refusals.clone()),
                testing_refusals,
                policy,
            }
        });
        (applied, error)
    }

    /// The client configuration that verifies MX certificates under an `enforce` policy.
    pub fn verifying_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// A client configuration for `testing` policies: verifies as `enforce` would, logs a
    /// refusal, notes it in `refusals` (TLS-RPT reports it as a failure) and goes on
    /// (handshake signatures are still checked).
    pub fn testing_config(
        &self,
        domain: &str,
        refusals: Arc<TestingRefusals>,
    ) -> Arc<rustls::ClientConfig> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), tls::provider())
                .build();
        let Ok(inner) = inner else {
            return self.tls.clone();
        };
        let verifier = TestingVerifier {
            inner,
            domain: domain.to_string(),
            refusals,
        };
        let config = tls::checked_config(verifier, tls::provider())
            .expect("ring supports the default protocol versions");
        Arc::new(config)
    }

    /// The policy in force for `domain`, if any. Failures are logged (and yield the cached
    /// policy while it lasts, else none: RFC 8461 §5 — a domain whose policy cannot be fetched
    /// gets mail as if it had none).
    pub async fn policy(&self, domain: &str) -> Option<Policy> {
        self.policy_reporting(domain).await.0
    }

    /// [`MtaSts::policy`], and the fetch failure if there was one.
    pub async fn policy_reporting(&self, domain: &str) -> (Option<Policy>, Option<FetchError>) {
        if !self.config.enabled {
            return (None, None);
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let now = now_ms();
        let cached = self.cached(&domain).filter(|c| c.expires_ms > now);
        let id = self
            .resolver
            .txt_policy(&format!("_mta-sts.{domain}"), "MTA-STS", parse_txt)
            .await;
        let from_cache = |c: &Cached| {
            tracing::debug!(%domain, id = %c.id, "MTA-STS: policy from cache");
            parse_policy(&c.body, &c.id).ok()
        };
        match (id, cached) {
            // No (usable) TXT record: a cached policy stays in force until it expires (§5.1).
            (None, Some(c)) => (from_cache(&c), None),
            (None, None) => (None, None),
            // Unchanged id: no fetch.
            (Some(id), Some(c)) if c.id == id => (from_cache(&c), None),
            (Some(id), cached) => match self.fetch(&domain, &id).await {
                Ok((policy, body)) => {
                    self.store(&domain, &id, body, policy.max_age);
                    (Some(policy), None)
                }
                Err(e) => {
                    tracing::warn!(%domain, error = %e, cached = cached.is_some(), "MTA-STS: policy fetch failed");
                    (cached.as_ref().and_then(from_cache), Some(e))
                }
            },
        }
    }

    /// GET https://mta-sts.<domain>/.well-known/mta-sts.txt, bounded in time and size.
    async fn fetch(&self, domain: &str, id: &str) -> Result<(Policy, String), FetchError> {
        let fetch = self.fetch_body(domain);
        let body = match tokio::time::timeout(self.config.timeout, fetch).await {
            Ok(result) => result?,
            Err(_) => return Err(FetchError::Fetch("timed out".into())),
        };
        let policy = parse_policy(&body, id).map_err(FetchError::Invalid)?;
        Ok((policy, body))
    }

    async fn fetch_body(&self, domain: &str) -> Result<String, FetchError> {
        let host = format!("mta-sts.{domain}");
        let ips = self
            .resolver
            .ips(&host)
            .await
            .map_err(|e| FetchError::Fetch(format!("{host}: {e}")))?;
        let mut last = FetchError::Fetch(format!("{host} has no address"));
        for ip in ips.records {
            let addr = std::net::SocketAddr::new(ip, self.config.https_port);
            let tcp = match tokio::net::TcpStream::connect(addr).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    last = FetchError::Fetch(format!("connect to {addr}: {e}"));
                    continue;
                }
            };
            let name = ServerName::try_from(host.clone())
                .map_err(|e| FetchError::Fetch(format!("{host}: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let mut tls = match connector.connect(name, tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    let failure = super::smtp_client::tls::HandshakeFailure::of(&e);
                    return Err(if failure.is_certificate() {
                        FetchError::Webpki(e.to_string())
                    } else {
                        FetchError::Fetch(e.to_string())
                    });
                }
            };
            let request = format!(
                "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n\
                 User-Agent: mailwit\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
            );
            tls.write_all(request.as_bytes())
                .await
                .map_err(|e| FetchError::Fetch(e.to_string()))?;
            let mut response = Vec::new();
            // Headers plus the largest body, and one byte to notice a larger one.
            let limit = (MAX_POLICY_BYTES + 16 * 1024 + 1) as u64;
            let read = (&mut tls).take(limit).read_to_end(&mut response).await;
            // A peer closing without close_notify after a complete response is common.
            if let Err(e) = read
                && response.is_empty()
            {
                return Err(FetchError::Fetch(e.to_string()));
            }
            return parse_http(&response);
        }
        Err(last)
    }

    fn cache_path(&self, domain: &str) -> Option<PathBuf> {
        // Domain names are [a-z0-9.-]; anything else is not cached on disk.
        if !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            || domain.starts_with('.')
        {
            return None;
        }
        Some(self.cache_dir.as_ref()?.join(format!("{domain}.json")))
    }

    fn cached(&self, domain: &str) -> Option<Cached> {
        if let Some(c) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(domain)
        {
            return Some(c.clone());
        }
        let text = std::fs::read_to_string(self.cache_path(domain)?).ok()?;
        let cached: Cached = serde_json::from_str(&text).ok()?;
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_string(), cached.clone());
        Some(cached)
    }

    fn store(&self, domain: &str, id: &str, body: String, max_age: u64) {
        let cached = Cached {
            id: id.to_string(),
            body,
            expires_ms: now_ms().saturating_add(max_age.saturating_mul(1000)),
        };
        if let Some(path) = self.cache_path(domain)
            && let Err(e) =
                write_atomically(&path, &serde_json::to_vec(&cached).unwrap_or_default())
        {
            tracing::warn!(%domain, error = %e, "MTA-STS: cannot cache the policy on disk");
        }
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_string(), cached);
    }
}

/// What the background refresh does with one cached policy (RFC 8461 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Nothing: the id is unchanged and the policy is young enough.
    Keep,
    /// Fetch under this id: the TXT record names a new policy, or the cached one has used up
    /// half its `max_age` (a successful fetch restarts it).
    Fetch(String),
    /// Expired and no TXT record any more: forget it.
    Drop,
}

impl Refresh {
    /// `txt_id`: the id in the domain's TXT record now (None: none, or the lookup failed).
    fn decide(cached: &Cached, txt_id: Option<&str>, now_ms: u64) -> Refresh {
        let max_age_ms = parse_policy(&cached.body, &cached.id)
            .map(|p| p.max_age.saturating_mul(1000))
            .unwrap_or(0);
        let left = cached.expires_ms.saturating_sub(now_ms);
        match txt_id {
            Some(id) if id != cached.id => Refresh::Fetch(id.to_string()),
            Some(id) if left < max_age_ms / 2 => Refresh::Fetch(id.to_string()),
            // No record: a cached policy stays in force until it expires (§5.1: the TXT
            // record may have been removed by an attacker); an expired one goes.
            None if left == 0 => Refresh::Drop,
            _ => Refresh::Keep,
        }
    }
}

impl MtaSts {
    /// Checks every cached policy now (see [`Refresh`]); returns how many were fetched anew.
    pub async fn refresh(&self) -> usize {
        let mut domains: Vec<String> = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if let Some(dir) = &self.cache_dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(domain) = name.strip_suffix(".json")
                    && !domains.iter().any(|d| d == domain)
                {
                    domains.push(domain.to_string());
                }
            }
        }
        let mut fetched = 0;
        for domain in domains {
            let Some(cached) = self.cached(&domain) else {
                continue;
            };
            let txt_id = match self.resolver.txt(&format!("_mta-sts.{domain}")).await {
                Ok(answer) => parse_txt(&answer.records).ok(),
                Err(_) => None,
            };
            match Refresh::decide(&cached, txt_id.as_deref(), now_ms()) {
                Refresh::Keep => {}
                Refresh::Drop => {
                    tracing::info!(%domain, "MTA-STS: expired policy without a TXT record dropped");
                    self.memory
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&domain);
                    if let Some(path) = self.cache_path(&domain) {
                        let _ = std::fs::remove_file(path);
                    }
                }
                Refresh::Fetch(id) => match self.fetch(&domain, &id).await {
                    Ok((policy, body)) => {
                        // Stored first: the log line says the new policy is in force.
                        self.store(&domain, &id, body, policy.max_age);
                        tracing::info!(%domain, %id, previous = %cached.id, max_age = policy.max_age,
                            "MTA-STS: policy refreshed in the background");
                        fetched += 1;
                    }
                    Err(e) => {
                        tracing::warn!(%domain, error = %e, "MTA-STS: background refresh failed; the cached policy stays until it expires");
                    }
                },
            }
        }
        fetched
    }

    /// Runs [`MtaSts::refresh`] every `[mta_sts] refresh_interval` while `this` lives.
    pub fn spawn_refresh(this: &Arc<MtaSts>) {
        let interval = this.config.refresh_interval;
        if !this.config.enabled || interval.is_zero() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(this);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(sts) = weak.upgrade() else {
                    return;
                };
                sts.refresh().await;
            }
        });
    }
}

/// An HTTP/1.x response: status 200 (anything else, redirects included, is a failure), the
/// body within [`MAX_POLICY_BYTES`], chunked or not.
fn parse_http(response: &[u8]) -> Result<String, FetchError> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| FetchError::Fetch("incomplete HTTP response".into()))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status.split(' ').nth(1).unwrap_or("");
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(FetchError::Fetch(format!(
            "HTTP status {status:?} (only 200 is accepted; redirects are not followed)"
        )));
    }
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    let raw = &response[split + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    if body.len() > MAX_POLICY_BYTES {
        return Err(FetchError::Fetch(format!(
            "policy larger than {MAX_POLICY_BYTES} bytes"
        )));
    }
    String::from_utf8(body).map_err(|_| FetchError::Invalid("policy is not UTF-8".into()))
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, FetchError> {
    let bad = || FetchError::Fetch("malformed chunked body".into());
    let mut body = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_text, 16).map_err(|_| bad())?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if raw.len() < size + 2 || body.len() + size > MAX_POLICY_BYTES + 1 {
            return Err(bad());
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// What a `testing` policy's verifier refused, per MX host name: RFC 8460 §4.3 wants those
/// sessions reported as failures with their result type although the mail went through (that
/// is what testing mode is for). One per delivery attempt, so a TLS session resumed from an
/// earlier handshake in it (no certificate check) keeps that handshake's verdict.
#[derive(Debug, Default)]
pub struct TestingRefusals(Mutex<HashMap<String, &'static str>>);

impl TestingRefusals {
    /// The RFC 8460 result type an `enforce` policy would have refused `host`'s certificate with.
    pub fn refusal(&self, host: &str) -> Option<&'static str> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key).copied()
    }

    fn note(&self, server_name: &ServerName<'_>, refused: Option<&'static str>) {
        let key = server_name
            .to_str()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match refused {
            Some(result) => map.insert(key, result),
            None => map.remove(&key),
        };
    }
}

/// `testing` mode: the WebPKI check runs and its refusal is logged and noted, not enforced.
#[derive(Debug)]
struct TestingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    domain: String,
    refusals: Arc<TestingRefusals>,
}

impl CertificateCheck for TestingVerifier {
    fn check(&self, chain: Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match chain.verify_with(self.inner.as_ref()) {
            Ok(_) => None,
            Err(e) => {
                let result = tls::HandshakeFailure::of_tls(&e).result_type();
                tracing::warn!(domain = %self.domain, host = ?chain.server_name, error = %e, result,
                    "MTA-STS testing: an enforced policy would refuse this certificate");
                Some(result)
            }
        };
        self.refusals.note(chain.server_name, refused);
        Ok(ServerCertVerified::assertion())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parsing_per_rfc_8461() {
        let p = parse_policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
            "id1",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert!(p.allows_mx("mail.example.com"));
        assert!(p.allows_mx("MX1.example.net."));
        assert!(!p.allows_mx("a.b.example.net"), "wildcard covers one label");
        assert!(!p.allows_mx("example.net"));
        assert!(parse_policy("version: STSv1\nmode: enforce\nmax_age: 1\n", "x").is_err());
        assert!(parse_policy("mode: enforce\nmx: a\nmax_age: 1\n", "x").is_err());
        assert!(parse_policy("version: STSv1\nmode: maybe\nmx: a\nmax_age: 1\n", "x").is_err());
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 99999999999\n", "x").unwrap();
        assert_eq!(none.max_age, MAX_AGE_LIMIT);
    }

    #[test]
    fn txt_record_needs_exactly_one_sts_record() {
        assert_eq!(
            parse_txt(&["v=STSv1; id=20190429T010101;".into()]).unwrap(),
            "20190429T010101"
        );
        assert!(parse_txt(&["v=STSv1; id=a".into(), "v=STSv1; id=b".into()]).is_err());
        assert!(parse_txt(&["v=spf1 -all".into()]).is_err());
        assert!(parse_txt(&["v=STSv1; id=bad-id!".into()]).is_err());
    }

    #[test]
    fn refresh_decisions_per_rfc_8461_section_5_1() {
        let body = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 100\n".to_string();
        let cached = Cached {
            id: "id1".into(),
            body,
            expires_ms: 1_000_000 + 100_000,
        };
        let young = 1_000_000 + 10_000; // 90 s of 100 left
        let old = 1_000_000 + 60_000; // 40 s left
        let gone = 1_000_000 + 200_000;
        assert_eq!(Refresh::decide(&cached, Some("id1"), young), Refresh::Keep);
        assert_eq!(
            Refresh::decide(&cached, Some("id2"), young),
            Refresh::Fetch("id2".into())
        );
        assert_eq!(
            Refresh::decide(&cached, Some("id1"), old),
            Refresh::Fetch("id1".into())
        );
        assert_eq!(Refresh::decide(&cached, None, old), Refresh::Keep);
        assert_eq!(Refresh::decide(&cached, None, gone), Refresh::Drop);
    }

    #[test]
    fn http_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\n";
        assert_eq!(parse_http(ok).unwrap(), "version: STSv1\r\n");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(parse_http(chunked).unwrap(), "hello");
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere/\r\n\r\n";
        assert!(matches!(parse_http(redirect), Err(FetchError::Fetch(_))));
        let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_POLICY_BYTES + 1));
        assert!(parse_http(&big).is_err());
    }
}
