//! Client TLS for STARTTLS.
//!
//! The modes, chosen per target (every one checks the handshake signatures with the presented
//! certificate's key, `checked_config` for the custom ones):
//! - [`TlsVerify::AcceptAny`] (MX hosts, opportunistic TLS): any certificate is accepted, since
//!   without DANE/MTA-STS there is no trustworthy name to check against (RFC 7435 opportunistic
//!   security). Handshake signatures are still verified, so the session key is bound to the
//!   certificate the peer presented; this protects against passive eavesdropping only.
//! - [`TlsVerify::Verify`] (a configured smarthost): the chain must lead to a trusted root and
//!   name the host we connected to, as for HTTPS.
//! - [`TlsVerify::Dane`] (an MX host with secure TLSA records): see `delivery::dane`.
//! - [`TlsVerify::Testing`] (an MX host under an MTA-STS `testing` policy): verified as
//!   `enforce` would, a refusal only logged; see `delivery::mta_sts`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

#[derive(Clone)]
pub enum TlsVerify {
    AcceptAny,
    Verify(Arc<rustls::ClientConfig>),
    /// Authenticated by DNSSEC-signed TLSA records (see `delivery::dane`).
    Dane(Arc<rustls::ClientConfig>),
    /// An MTA-STS `testing` policy: checked and logged, not enforced (see `delivery::mta_sts`).
    Testing(Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for TlsVerify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVerify::AcceptAny => "AcceptAny",
            TlsVerify::Verify(_) => "Verify",
            TlsVerify::Dane(_) => "Dane",
            TlsVerify::Testing(_) => "Testing",
        })
    }
}

impl TlsVerify {
    /// From configuration: `verify = false` accepts any certificate; otherwise the system roots
    /// plus the CA certificates in the PEM file `ca_file`, if given.
    pub fn from_settings(verify: bool, ca_file: Option<&Path>) -> Result<TlsVerify, String> {
        if !verify {
            return Ok(TlsVerify::AcceptAny);
        }
        TlsVerify::with_roots(system_roots(ca_file)?).map_err(|e| e.to_string())
    }

    /// Verify against exactly these roots.
    pub fn with_roots(roots: RootCertStore) -> Result<TlsVerify, rustls::Error> {
        verifying_config(roots).map(TlsVerify::Verify)
    }

    /// Whether a handshake with this configuration authenticates the peer.
    pub fn authenticates(&self) -> bool {
        matches!(self, TlsVerify::Verify(_) | TlsVerify::Dane(_))
    }

    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        match self {
            TlsVerify::Verify(config) | TlsVerify::Dane(config) | TlsVerify::Testing(config) => {
                config.clone()
            }
            TlsVerify::AcceptAny => accept_any_config(),
        }
    }
}

/// The operating system's trust store, plus the CA certificates in the PEM file `ca_file` if
/// given (e.g. a private CA).
pub fn system_roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let extra = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        roots.add_parsable_certificates(extra);
    }
    Ok(roots)
}

/// A client configuration that verifies the server against `roots`: the chain must lead to one
/// of them and name the host, as for HTTPS.
pub fn verifying_config(
    roots: impl Into<Arc<RootCertStore>>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The ring provider every client configuration uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn accept_any_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let config = checked_config(AcceptAnyCertificate, provider())
                .expect("ring supports the default protocol versions");
            Arc::new(config)
        })
        .clone()
}

/// How a client configuration judges the server's certificate chain. Whatever it decides, the
/// handshake signatures made with the certificate are verified ([`checked_config`]), so a peer
/// that presents a certificate without its private key fails.
pub(crate) trait CertificateCheck: std::fmt::Debug + Send + Sync + 'static {
    fn check(&self, chain: Presented<'_>) -> Result<ServerCertVerified, rustls::Error>;
}

/// What the server presented, as rustls hands it to a [`ServerCertVerifier`].
#[derive(Clone, Copy)]
pub(crate) struct Presented<'a> {
    pub end_entity: &'a CertificateDer<'a>,
    pub intermediates: &'a [CertificateDer<'a>],
    pub server_name: &'a ServerName<'a>,
    pub ocsp_response: &'a [u8],
    pub now: UnixTime,
}

impl Presented<'_> {
    /// The verdict of another verifier (e.g. rustls' WebPKI one) on this chain.
    pub fn verify_with(
        self,
        verifier: &dyn ServerCertVerifier,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verifier.verify_server_cert(
            self.end_entity,
            self.intermediates,
            self.server_name,
            self.ocsp_response,
            self.now,
        )
    }
}

/// A client configuration that judges certificates by `check` and verifies handshake
/// signatures with `provider`'s algorithms.
pub(crate) fn checked_config(
    check: impl CertificateCheck,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let verifier = CheckedSignatures {
        check,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[derive(Debug)]
struct CheckedSignatures<C> {
    check: C,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<C: CertificateCheck> ServerCertVerifier for CheckedSignatures<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check.check(Presented {
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Accepts any certificate (its handshake signatures are still checked).
#[derive(Debug)]
struct AcceptAnyCertificate;

impl CertificateCheck for AcceptAnyCertificate {
    fn check(&self, _: Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

/// Why a TLS handshake failed, in RFC 8460 §4.3 terms (the TLS-RPT result types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The peer's certificate is outside its validity period.
    CertificateExpired,
    /// The certificate does not name the host.
    CertificateHostMismatch,
    /// The chain does not lead to a trusted root (self-signed, unknown CA).
    CertificateNotTrusted,
    /// The certificate matched no usable TLSA record (DANE).
    TlsaMismatch,
    /// Anything else (protocol error, no common cipher, timeout, bad signature).
    ValidationFailure,
}

impl HandshakeFailure {
    /// From the I/O error tokio-rustls returns for a failed handshake.
    pub fn of(error: &std::io::Error) -> HandshakeFailure {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(tls) => HandshakeFailure::of_tls(tls),
            None => HandshakeFailure::ValidationFailure,
        }
    }

    /// From the error a certificate verifier returned.
    pub fn of_tls(tls: &rustls::Error) -> HandshakeFailure {
        use rustls::CertificateError as C;
        match tls {
            rustls::Error::InvalidCertificate(cert) => match cert {
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => HandshakeFailure::CertificateExpired,
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    HandshakeFailure::CertificateHostMismatch
                }
                C::UnknownIssuer | C::BadSignature | C::Revoked => {
                    HandshakeFailure::CertificateNotTrusted
                }
                C::ApplicationVerificationFailure => HandshakeFailure::TlsaMismatch,
                _ => HandshakeFailure::CertificateNotTrusted,
            },
            _ => HandshakeFailure::ValidationFailure,
        }
    }

    /// The RFC 8460 result type.
    pub fn result_type(self) -> &'static str {
        match self {
            HandshakeFailure::CertificateExpired => "certificate-expired",
            HandshakeFailure::CertificateHostMismatch => "certificate-host-mismatch",
            HandshakeFailure::CertificateNotTrusted => "certificate-not-trusted",
            HandshakeFailure::TlsaMismatch => "tlsa-invalid",
            HandshakeFailure::ValidationFailure => "validation-failure",
        }
    }

    /// Whether the peer's certificate was refused (as opposed to the handshake breaking down).
    pub fn is_certificate(self) -> bool {
        self != HandshakeFailure::ValidationFailure
    }
}
