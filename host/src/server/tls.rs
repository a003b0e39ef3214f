//! TLS for STARTTLS and implicit-TLS listeners: rustls with the ring provider, TLS 1.2 and 1.3.
//!
//! The certificate and key come from PEM files (`[server.tls]`); without them a self-signed ECDSA
//! P-256 certificate for the host name is generated at start (rcgen), with a warning, so the
//! quickstart offers TLS out of the box. Clients must then not verify the certificate.
//!
//! More certificates (`certificates = [...]`) are chosen by the name the client sends (SNI),
//! matched against each certificate's DNS names (exact, then one wildcard label). The files are
//! checked every `reload_interval` seconds and reloaded when they change, without a restart.

use crate::config::engine::{CertificateFiles, TlsConfig};
use crate::policy::TlsInfo;
use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor shared by all listeners. With certificate files configured, a task
/// (when a tokio runtime is running) checks them every `reload_interval` seconds and swaps in
/// changed ones; handshakes in progress keep the certificate they started with.
pub fn acceptor(config: &TlsConfig, hostname: &str) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(CertStore::load(config, hostname, provider.clone())?);
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    // Our cipher suite order (strongest first, as the provider lists them) wins over the
    // client's: a client preferring a weaker suite does not get it when a better one is shared.
    server.ignore_client_order = true;
    if config.reload_interval > 0
        && !store.files.is_empty()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        let interval = Duration::from_secs(config.reload_interval);
        runtime.spawn(watch(Arc::downgrade(&store), interval));
    }
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The acceptors of a server: its own (`[server.tls]`) and those of listeners with a `tls`
/// table of their own.
#[derive(Clone)]
pub struct Acceptors {
    pub default: TlsAcceptor,
    by_listener: HashMap<String, TlsAcceptor>,
}

impl Acceptors {
    /// The server's acceptor and one per listener that names its own certificates.
    pub fn from_config(
        config: &crate::config::Config,
        default: TlsAcceptor,
    ) -> anyhow::Result<Acceptors> {
        let mut by_listener = HashMap::new();
        for listener in &config.listeners {
            let Some(tls) = &listener.tls else {
                continue;
            };
            anyhow::ensure!(
                tls.cert.is_some() && tls.key.is_some(),
                "listener {:?}: tls needs cert and key",
                listener.name
            );
            let acceptor = acceptor(tls, &config.server.hostname)
                .with_context(|| format!("listener {:?}: tls", listener.name))?;
            by_listener.insert(listener.name.clone(), acceptor);
        }
        Ok(Acceptors {
            default,
            by_listener,
        })
    }

    /// The acceptor for connections to `listener`.
    pub fn for_listener(&self, listener: &str) -> TlsAcceptor {
        self.by_listener
            .get(listener)
            .unwrap_or(&self.default)
            .clone()
    }

    /// Whether any listener has certificates of its own.
    pub fn has_listener_certificates(&self) -> bool {
        !self.by_listener.is_empty()
    }
}

/// The server's certificates: a default one, and others by DNS name (SNI). Swapped whole on
/// reload.
#[derive(Debug)]
struct CertStore {
    current: ArcSwap<Certs>,
    /// The files behind `current` (default first) and their modification times when loaded.
    files: Vec<CertificateFiles>,
    stamps: std::sync::Mutex<Vec<Option<SystemTime>>>,
    /// Without `cert`/`key`: the certificate generated at start, kept across reloads.
    generated_default: Option<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
struct Certs {
    default: Arc<CertifiedKey>,
    /// Lower-case DNS names (wildcards as "*.example.test") to certificates.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl CertStore {
    fn load(
        config: &TlsConfig,
        hostname: &str,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<CertStore> {
        let mut files = Vec::new();
        let configured = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => {
                files.push(CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                });
                None
            }
            _ => {
                tracing::warn!(
                    hostname,
                    "no [server.tls] cert/key configured: using a generated self-signed certificate"
                );
                Some(Arc::new(generated(hostname, &provider)?))
            }
        };
        files.extend(config.certificates.iter().cloned());
        let stamps = files.iter().map(stamp).collect();
        let certs = build(&files, configured.clone(), &provider)?;
        Ok(CertStore {
            current: ArcSwap::from_pointee(certs),
            files,
            stamps: std::sync::Mutex::new(stamps),
            generated_default: configured,
            provider,
        })
    }

    /// Reloads when a file's modification time changed; keeps the old certificates (and says
    /// so) when the new files do not load.
    fn reload_if_changed(&self) {
        let now: Vec<Option<SystemTime>> = self.files.iter().map(stamp).collect();
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if *stamps == now {
            return;
        }
        match build(&self.files, self.generated_default.clone(), &self.provider) {
            Ok(certs) => {
                self.current.store(Arc::new(certs));
                *stamps = now;
                tracing::info!("TLS certificates reloaded");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "TLS certificates changed but do not load; keeping the previous ones");
                // Try again only after the next change.
                *stamps = now;
            }
        }
    }
}

/// Reads every file; the first is the default unless a generated default is given.
fn build(
    files: &[CertificateFiles],
    generated_default: Option<Arc<CertifiedKey>>,
    provider: &CryptoProvider,
) -> anyhow::Result<Certs> {
    let mut by_name = HashMap::new();
    let mut default = generated_default;
    for pair in files {
        let key = Arc::new(read_pair(pair, provider)?);
        for name in dns_names(&key) {
            by_name.entry(name).or_insert_with(|| key.clone());
        }
        default.get_or_insert(key);
    }
    let default = default.ok_or_else(|| anyhow::anyhow!("no certificate"))?;
    Ok(Certs { default, by_name })
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.current.load();
        let Some(name) = hello.server_name() else {
            return Some(certs.default.clone());
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        let found = certs
            .by_name
            .get(&name)
            .or_else(|| wildcard.and_then(|w| certs.by_name.get(&w)));
        Some(found.unwrap_or(&certs.default).clone())
    }
}

async fn watch(store: std::sync::Weak<CertStore>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(store) = store.upgrade() else {
            return; // the server is gone
        };
        // File reads and key parsing are blocking work.
        let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
    }
}

fn stamp(files: &CertificateFiles) -> Option<SystemTime> {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // The later of the two: replacing either file counts.
    modified(&files.cert).max(modified(&files.key))
}

fn read_pair(files: &CertificateFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let (cert, key) = (&files.cert, &files.key);
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: cannot read PEM certificates", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate found",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: cannot read PEM private key", key.display()))?;
    CertifiedKey::from_der(certs, key_der, provider).with_context(|| {
        format!(
            "{} and {}: TLS certificate and key do not match",
            cert.display(),
            key.display()
        )
    })
}

fn generated(hostname: &str, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let (certs, key) = self_signed(hostname)?;
    Ok(CertifiedKey::from_der(certs, key, provider)?)
}

/// The DNS names of a certificate (subject alternative names), lower case.
fn dns_names(key: &CertifiedKey) -> Vec<String> {
    let Some(cert) = key.cert.first() else {
        return Vec::new();
    };
    match webpki::EndEntityCert::try_from(cert) {
        Ok(parsed) => parsed
            .valid_dns_names()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}
/// How long a generated certificate is valid: like an ACME certificate, so scanners (testssl.sh)
/// see a realistic lifetime; the server generates a new one at every start.
pub const SELF_SIGNED_DAYS: i64 = 90;

/// A fresh self-signed ECDSA certificate for `hostname` (and localhost), valid from yesterday
/// for [`SELF_SIGNED_DAYS`].
pub fn self_signed(
    hostname: &str,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use chrono::Datelike as _;
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".to_string());
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let day = |d: chrono::DateTime<chrono::Utc>| {
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let now = chrono::Utc::now();
    params.not_before = day(now - chrono::Duration::days(1));
    params.not_after = day(now + chrono::Duration::days(SELF_SIGNED_DAYS));
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key = PrivatePkcs8KeyDer::from(key.serialize_der());
    Ok((vec![cert.der().clone()], key.into()))
}

/// The negotiated version and cipher suite, for SessionInfo and the Received header.
pub fn info(connection: &rustls::ServerConnection) -> TlsInfo {
    let version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher = connection
        .negotiated_cipher_suite()
        .and_then(|suite| suite.suite().as_str())
        .unwrap_or("unknown")
        .to_string();
    TlsInfo { version, cipher }
}
