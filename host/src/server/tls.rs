//! TLS for STARTTLS and implicit-TLS listeners: rustls with the ring provider, TLS 1.2 and 1.3.
//!
//! The certificate and key come from PEM files (`[server.tls]`); without them a self-signed ECDSA
//! P-256 certificate for the host name is generated at start (rcgen), with a warning, so the
//! quickstart offers TLS out of the box. Clients must then not verify the certificate.

use crate::config::engine::TlsConfig;
use crate::policy::TlsInfo;
use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor shared by all listeners.
pub fn acceptor(config: &TlsConfig, hostname: &str) -> anyhow::Result<TlsAcceptor> {
    let (certs, key) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("{}: cannot read PEM certificates", cert.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "{}: no certificate found",
                cert.display()
            );
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("{}: cannot read PEM private key", key.display()))?;
            (certs, key)
        }
        _ => {
            tracing::warn!(
                hostname,
                "no [server.tls] cert/key configured: using a generated self-signed certificate"
            );
            self_signed(hostname)?
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// A fresh self-signed ECDSA certificate for `hostname` (and localhost).
pub fn self_signed(
    hostname: &str,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((vec![cert], key.into()))
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
