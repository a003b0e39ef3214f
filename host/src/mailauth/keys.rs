//! DKIM private keys: read from PEM (the algorithm comes from the key itself), generated for
//! `mailwit dkim generate` and for quickstart selectors without a key file, and the DNS TXT
//! record that publishes the public half.

use crate::config::mailauth::KeyAlgorithm;
use anyhow::{Context, bail};
use base64::Engine;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A loaded key: what signs, and the public key for the TXT record.
pub struct LoadedKey {
    pub key: DkimKey,
    pub algorithm: KeyAlgorithm,
    /// The p= value: base64 of the SubjectPublicKeyInfo (RSA) or of the 32 raw octets (Ed25519).
    pub public_b64: String,
}

/// Reads a PEM private key: PKCS#1 RSA, PKCS#8 RSA or PKCS#8 Ed25519.
pub fn load(path: &Path) -> anyhow::Result<LoadedKey> {
    let pem = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse_pem(&pem).with_context(|| format!("{}", path.display()))
}

pub fn parse_pem(pem: &[u8]) -> anyhow::Result<LoadedKey> {
    let der = PrivateKeyDer::from_pem_slice(pem).context("no PEM private key found")?;
    match der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            // Ed25519 first: OpenSSL and dkimpy write v1 PKCS#8 (no public key inside).
            if let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                let public_b64 = b64(&key.public_key());
                return Ok(LoadedKey {
                    key: DkimKey::Ed25519(key),
                    algorithm: KeyAlgorithm::Ed25519,
                    public_b64,
                });
            }
            rsa(PrivateKeyDer::Pkcs8(pkcs8))
        }
        PrivateKeyDer::Pkcs1(pkcs1) => rsa(PrivateKeyDer::Pkcs1(pkcs1)),
        _ => bail!("unsupported key type (want an RSA or Ed25519 private key)"),
    }
}

fn rsa(der: PrivateKeyDer<'_>) -> anyhow::Result<LoadedKey> {
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| anyhow::anyhow!("RSA key: {e}"))?;
    let public_b64 = b64(&rsa_spki(&key.public_key()));
    Ok(LoadedKey {
        key: DkimKey::Rsa(key),
        algorithm: KeyAlgorithm::Rsa,
        public_b64,
    })
}

/// A new key as PEM: RSA 2048 (PKCS#1) or Ed25519 (PKCS#8).
pub fn generate(algorithm: KeyAlgorithm) -> anyhow::Result<String> {
    use mail_auth::dkim::generate::DkimKeyPair;
    let (label, der) = match algorithm {
        KeyAlgorithm::Rsa => {
            let pair = DkimKeyPair::generate_rsa(2048).map_err(|e| anyhow::anyhow!("{e}"))?;
            ("RSA PRIVATE KEY", pair.private_key().to_vec())
        }
        KeyAlgorithm::Ed25519 => {
            let pair = DkimKeyPair::generate_ed25519().map_err(|e| anyhow::anyhow!("{e}"))?;
            ("PRIVATE KEY", pair.private_key().to_vec())
        }
    };
    Ok(pem(label, &der))
}

/// Writes a key file readable by its owner only (mode 0600), creating the directory; refuses
/// to overwrite an existing file.
pub fn write_new(path: &Path, pem: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Loads the key at `path`, generating it first when it does not exist yet.
pub fn load_or_generate(path: &Path, algorithm: KeyAlgorithm) -> anyhow::Result<LoadedKey> {
    if !path.exists() {
        let pem = generate(algorithm)?;
        match write_new(path, &pem) {
            Ok(()) => {
                tracing::info!(key = %path.display(), algorithm = algorithm.name(), "generated a DKIM key")
            }
            // Another process generated it first: use theirs.
            Err(_) if path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    load(path)
}

/// The TXT record that publishes a key: `<selector>._domainkey.<domain>. IN TXT "v=DKIM1; ..."`,
/// split into 255-octet strings.
pub fn txt_record(domain: &str, selector: &str, key: &LoadedKey) -> String {
    let value = txt_value(key);
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT {}",
        strings.join(" ")
    )
}

/// The record's value alone: `v=DKIM1; k=rsa; p=...`.
pub fn txt_value(key: &LoadedKey) -> String {
    format!("v=DKIM1; k={}; p={}", key.algorithm.name(), key.public_b64)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo, the form DKIM records carry and every
/// verifier reads (RFC 6376 section 3.6.1 names the key "ASN.1 DER", and practice is SPKI).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = ALGORITHM.to_vec();
    inner.extend(der_tlv(0x03, &bit_string));
    der_tlv(0x30, &inner)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back_with_their_algorithm() {
        for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa] {
            let pem = generate(algorithm).unwrap();
            let key = parse_pem(pem.as_bytes()).unwrap();
            assert_eq!(key.algorithm, algorithm);
            let record = txt_record("example.test", "s1", &key);
            assert!(record.starts_with("s1._domainkey.example.test. IN TXT \"v=DKIM1; k="));
        }
    }

    #[test]
    fn rsa_public_key_is_spki() {
        let key = parse_pem(generate(KeyAlgorithm::Rsa).unwrap().as_bytes()).unwrap();
        // SPKI of a 2048-bit RSA key always starts like this (openssl rsa -pubout).
        assert!(
            key.public_b64
                .starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
        );
    }
}
