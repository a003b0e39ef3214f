//! DKIM signing (RFC 6376, RSA-SHA256 and Ed25519-SHA256 per RFC 8463), relaxed/relaxed, with
//! every configured selector of the From domain at once (key rotation) and over-signing.
//!
//! The keys are loaded here, in the host, and never leave it: plugins see the signed message at
//! most, never a key.

use super::keys::{self, LoadedKey};
use crate::config::Config;
use crate::config::mailauth::DkimSignConfig;
use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use std::path::PathBuf;
use std::sync::Arc;

/// Signed when present (RFC 6376 section 5.4.1's list and the fields a reader sees). The first
/// seven are also oversigned ([`DEFAULT_OVERSIGN`]).
pub const DEFAULT_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Message-ID",
    "Sender",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Signed once more than they occur, so that no further instance can be added without breaking
/// the signature (a second From or Subject shown to the reader): the first seven of
/// [`DEFAULT_HEADERS`], From to Message-ID.
pub const DEFAULT_OVERSIGN: &[&str] = DEFAULT_HEADERS.split_at(7).0;

/// The queue's DSNs are signed with the key of their From domain (MAILER-DAEMON@hostname: a key of
/// the hostname's domain or a parent covers it).
impl crate::queue::MessageSigner for LiveSigners {
    fn signatures(&self, message: &[u8]) -> Vec<u8> {
        self.sign(message)
    }
}

/// One configured (domain, selector) with its key.
pub struct SigningKey {
    pub domain: String,
    pub selector: String,
    pub key_path: PathBuf,
    /// The TXT record to publish.
    pub record: String,
    signer: DkimSigner<DkimKey, Done>,
}

/// All signing keys of the configuration.
#[derive(Default)]
pub struct Signers {
    keys: Vec<SigningKey>,
}

/// The signers in use, replaced whole by a reload (`mailwit reload`, SIGHUP): rotated key files
/// are read again, and everything that signs (sessions, the queue's DSNs) sees the new keys.
#[derive(Default)]
pub struct LiveSigners(arc_swap::ArcSwap<Signers>);

impl LiveSigners {
    pub fn new(signers: Signers) -> LiveSigners {
        LiveSigners(arc_swap::ArcSwap::from_pointee(signers))
    }

    /// The signers now.
    pub fn current(&self) -> Arc<Signers> {
        self.0.load_full()
    }

    /// Signs with the signers now (see [`Signers::sign`]).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.load().sign(message)
    }

    pub fn replace(&self, signers: Signers) {
        self.0.store(Arc::new(signers));
    }
}

impl Signers {
    /// Loads every `[[dkim.sign]]` key; a selector without a `key` gets one generated under
    /// `<state_dir>/dkim/` on first use.
    pub fn from_config(config: &Config) -> anyhow::Result<Signers> {
        let mut keys = Vec::new();
        for entry in &config.dkim.sign {
            let path = key_path(config, entry);
            let loaded = match &entry.key {
                Some(_) => keys::load(&path)?,
                None => keys::load_or_generate(&path, entry.algorithm)?,
            };
            keys.push(SigningKey::new(entry, path, loaded));
        }
        Ok(Signers { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// One line per key, for logs and reload reports: `example.test/s1 (key file, record)`.
    pub fn describe(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{}/{} ({})", k.domain, k.selector, k.key_path.display()))
            .collect()
    }

    /// Whether `other` has the same selectors with the same public keys.
    pub fn same_keys(&self, other: &Signers) -> bool {
        let id = |s: &Signers| -> Vec<(String, String, String)> {
            s.keys
                .iter()
                .map(|k| (k.domain.clone(), k.selector.clone(), k.record.clone()))
                .collect()
        };
        id(self) == id(other)
    }

    /// The DKIM-Signature fields for `message` (complete, CRLF line ends), one per selector of
    /// the From domain (or a parent domain of it), to be put on top of the message. Empty when no
    /// key matches or the message has no From.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        if self.keys.is_empty() {
            return Vec::new();
        }
        let Some(from_domain) = from_domain(message) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for key in &self.keys {
            if !covers(&key.domain, &from_domain) {
                continue;
            }
            match key.signer.sign(message) {
                Ok(signature) => out.extend_from_slice(signature.to_header().as_bytes()),
                Err(e) => {
                    tracing::warn!(domain = %key.domain, selector = %key.selector, error = %e, "DKIM signing failed")
                }
            }
        }
        out
    }
}

impl SigningKey {
    fn new(entry: &DkimSignConfig, key_path: PathBuf, loaded: LoadedKey) -> SigningKey {
        let record = keys::txt_record(&entry.domain, &entry.selector, &loaded);
        let mut names: Vec<String> = match &entry.headers {
            Some(list) => list.clone(),
            None => DEFAULT_HEADERS.iter().map(|s| s.to_string()).collect(),
        };
        // mail-auth signs every present instance of a listed name once, and adds a listed name
        // that matched nothing as an empty (absent) instance: listing a name twice therefore
        // signs one instance more than present.
        let oversign: Vec<String> = match &entry.oversign {
            Some(list) => list.clone(),
            None => DEFAULT_OVERSIGN.iter().map(|s| s.to_string()).collect(),
        };
        for name in oversign {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                names.push(name.clone());
            }
            names.push(name);
        }
        let mut signer = DkimSigner::from_key(loaded.key)
            .domain(entry.domain.to_ascii_lowercase())
            .selector(entry.selector.clone())
            .headers(names)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        if let Some(expiry) = entry.expiry {
            signer = signer.expiration(expiry.as_secs());
        }
        SigningKey {
            domain: entry.domain.to_ascii_lowercase(),
            selector: entry.selector.clone(),
            key_path,
            record,
            signer,
        }
    }
}

/// Where a selector's key lives: the configured file, or `<state_dir>/dkim/<domain>.<selector>.pem`.
pub fn key_path(config: &Config, entry: &DkimSignConfig) -> PathBuf {
    match &entry.key {
        Some(path) => path.clone(),
        None => config.server.state_dir.join("dkim").join(format!(
            "{}.{}.pem",
            entry.domain.to_ascii_lowercase(),
            entry.selector
        )),
    }
}

/// Whether a key of `domain` may sign for a From in `from_domain` (the same domain or a
/// subdomain: what DMARC's relaxed alignment accepts).
fn covers(domain: &str, from_domain: &str) -> bool {
    from_domain == domain
        || from_domain
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The domain of the (first) From address, lowercased.
fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_auth::AuthenticatedMessage::parse(message)?;
    let from = parsed.from.first()?;
    let (_, domain) = from.rsplit_once('@')?;
    Some(domain.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_covered_lookalikes_not() {
        assert!(covers("example.test", "example.test"));
        assert!(covers("example.test", "lists.example.test"));
        assert!(!covers("example.test", "badexample.test"));
        assert!(!covers("example.test", "test"));
    }
}
