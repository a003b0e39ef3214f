//! DANE for SMTP (RFC 7672): authenticating an MX host's certificate with DNSSEC-signed TLSA
//! records instead of a CA.
//!
//! The match happens inside the TLS handshake, in a rustls
//! [`ServerCertVerifier`](rustls::client::danger::ServerCertVerifier): a certificate
//! matching no usable TLSA record aborts the handshake before any mail is sent. The handshake
//! signatures are still verified by rustls' own code with the certificate's key, so a peer that
//! merely replays someone else's (matching) certificate without its private key fails. (Checking
//! TLSA *after* an accept-anything handshake would not catch that.)
//!
//! What is usable (RFC 7672 §3.1): DANE-EE(3) and DANE-TA(2), selectors Cert(0) and SPKI(1),
//! matching Full(0), SHA2-256(1) and SHA2-512(2). PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP.
//! - DANE-EE: the server certificate itself matches; its names and dates are not checked (§3.1.1).
//! - DANE-TA: a certificate of the presented chain matches and is the trust anchor; the chain
//!   below it must verify (dates included) and name the MX host (§3.1.2, §3.2.2).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerified;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256, Sha512};

use super::smtp_client::tls::{CertificateCheck, Presented, checked_config};

pub use crate::config::queue::DaneMode;

/// One TLSA record (RFC 6698 §2.1), as numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    pub fn from_record(r: &hickory_resolver::proto::rr::rdata::TLSA) -> Tlsa {
        Tlsa {
            usage: u8::from(r.cert_usage),
            selector: u8::from(r.selector),
            matching: u8::from(r.matching),
            data: r.cert_data.clone(),
        }
    }

    /// The record's data as in a zone file: "3 1 1 ABCD…" (TLS-RPT's policy-string).
    pub fn presentation(&self) -> String {
        let hex: String = self.data.iter().map(|b| format!("{b:02X}")).collect();
        format!("{} {} {} {hex}", self.usage, self.selector, self.matching)
    }

    /// Usable for SMTP (RFC 7672 §3.1): DANE-TA(2) or DANE-EE(3), a known selector and
    /// matching type, and digest data of the right length.
    pub fn is_usable(&self) -> bool {
        let length_ok = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        matches!(self.usage, 2 | 3) && self.selector <= 1 && length_ok
    }

    /// Whether `cert` matches this record's selector and matching type.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.as_ref().to_vec(),
            1 => match webpki::EndEntityCert::try_from(cert) {
                Ok(parsed) => parsed.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data,
            1 => Sha256::digest(&selected).as_slice() == self.data.as_slice(),
            2 => Sha512::digest(&selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// A client configuration that authenticates the server with `records` (the usable ones only);
/// `None` when none is usable (then TLS is opportunistic, RFC 7672 §2.2).
pub fn client_config(
    records: &[Tlsa],
    provider: Arc<CryptoProvider>,
) -> Option<Arc<rustls::ClientConfig>> {
    let usable: Vec<Tlsa> = records.iter().filter(|r| r.is_usable()).cloned().collect();
    if usable.is_empty() {
        return None;
    }
    let verifier = DaneVerifier {
        records: usable,
        provider: provider.clone(),
    };
    let config = checked_config(verifier, provider).ok()?;
    Some(Arc::new(config))
}

/// Matches the chain against the TLSA records; the handshake signatures are checked around it
/// ([`checked_config`]).
#[derive(Debug)]
struct DaneVerifier {
    records: Vec<Tlsa>,
    provider: Arc<CryptoProvider>,
}

impl CertificateCheck for DaneVerifier {
    fn check(&self, chain: Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let Presented {
            end_entity,
            intermediates,
            ..
        } = chain;
        // DANE-EE: the key (or certificate) itself is what DNS vouches for.
        if self
            .records
            .iter()
            .any(|r| r.usage == 3 && r.matches(end_entity))
        {
            return Ok(ServerCertVerified::assertion());
        }
        // DANE-TA: some certificate of the chain is the trust anchor; verify the chain up to it
        // with rustls' WebPKI verifier (signatures, dates, name = the MX host).
        for (i, candidate) in intermediates.iter().enumerate() {
            let is_anchor = self
                .records
                .iter()
                .any(|r| r.usage == 2 && r.matches(candidate));
            if !is_anchor {
                continue;
            }
            let mut roots = RootCertStore::empty();
            if roots.add(candidate.clone().into_owned()).is_err() {
                continue;
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            let below_anchor = Presented {
                intermediates: &intermediates[..i],
                ..chain
            };
            return below_anchor
                .verify_with(verifier.as_ref())
                .map(|_| ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> (CertificateDer<'static>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mx.dane.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        (cert.der().clone(), spki)
    }

    #[test]
    fn selectors_and_matching_types() {
        let (der, spki) = cert();
        let rec = |selector, matching, data: Vec<u8>| Tlsa {
            usage: 3,
            selector,
            matching,
            data,
        };
        assert!(rec(0, 0, der.to_vec()).matches(&der));
        assert!(rec(0, 1, Sha256::digest(&der).to_vec()).matches(&der));
        assert!(rec(0, 2, Sha512::digest(&der).to_vec()).matches(&der));
        assert!(rec(1, 0, spki.clone()).matches(&der));
        assert!(rec(1, 1, Sha256::digest(&spki).to_vec()).matches(&der));
        assert!(rec(1, 2, Sha512::digest(&spki).to_vec()).matches(&der));
        assert!(!rec(1, 1, vec![0; 32]).matches(&der));
        // PKIX usages and unknown types are unusable for SMTP.
        assert!(
            !Tlsa {
                usage: 1,
                ..rec(1, 1, vec![0; 32])
            }
            .is_usable()
        );
        assert!(!rec(1, 1, vec![0; 31]).is_usable());
        assert!(!rec(2, 1, vec![0; 32]).is_usable());
        assert!(rec(1, 1, vec![0; 32]).is_usable());
    }
}
