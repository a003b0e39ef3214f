//! Configuration of mail authentication: DKIM signing keys (`[[dkim.sign]]`) and inbound
//! verification (`[authentication]`: SPF, DKIM, DMARC, ARC, the Authentication-Results header).
//!
//! ```toml
//! [[dkim.sign]]
//! domain = "example.test"
//! selector = "s1"
//! key = "dkim/s1.pem"            # relative to the configuration file; the algorithm is read from it
//! # absent: <state_dir>/dkim/<domain>.<selector>.pem, generated on first start with `algorithm`
//! # algorithm = "rsa"            # rsa (2048 bits) | ed25519, for that generation only
//! # headers = ["From", "To", "Subject", ...]   # signed when present (default: a common list)
//! # oversign = ["From", "Subject", ...]        # signed once more than present: none can be added
//! # expiry = "7d"                # x= tag (default: none)
//!
//! [authentication]
//! authserv_id = "mx.example.test"  # default: [server] hostname
//! verify = true                    # on mx listeners (default true)
//! max_signatures = 5               # DKIM signatures verified per message, the rest ignored
//!
//! [arc]
//! seal = { domain = "example.test", selector = "arc", key = "arc.pem" }  # ARC sealer (RFC 8617)
//! ```

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[dkim]`: the keys outgoing mail is signed with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimConfig {
    /// `[[dkim.sign]]`: one entry per (domain, selector); several selectors of a domain all sign
    /// (key rotation publishes the new selector, signs with both, then drops the old one).
    #[serde(default)]
    pub sign: Vec<DkimSignConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// RSA-SHA256 with a 2048-bit key: what every verifier checks.
    #[default]
    Rsa,
    /// Ed25519-SHA256 (RFC 8463): short keys, not yet verified everywhere; pair it with an RSA
    /// selector.
    Ed25519,
}

impl KeyAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSignConfig {
    /// The d= domain. Mail whose From domain is this domain or one of its subdomains is signed.
    pub domain: String,
    /// The s= selector: the key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PEM private key (PKCS#1 RSA, PKCS#8 RSA or Ed25519), relative to the configuration file.
    /// Absent: `<state_dir>/dkim/<domain>.<selector>.pem`, generated on first start.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The algorithm of a generated key (a configured key's own algorithm is used as it is).
    #[serde(default)]
    pub algorithm: KeyAlgorithm,
    /// Header fields signed when present.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// Header fields signed once more than they occur, so none can be added after signing.
    #[serde(default)]
    pub oversign: Option<Vec<String>>,
    /// Signature lifetime (x= tag); absent: signatures do not expire.
    #[serde(default, deserialize_with = "optional_duration")]
    pub expiry: Option<Duration>,
}

/// `[arc]`: ARC sealing (RFC 8617) of verified inbound mail that mailwit forwards off-site.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcConfig {
    /// The sealer's identity and key; absent: nothing is sealed.
    #[serde(default)]
    pub seal: Option<ArcSealConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcSealConfig {
    /// The d= of ARC-Seal and ARC-Message-Signature.
    pub domain: String,
    /// The s= selector: the public key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PEM private key (RSA or Ed25519, as `mailwit dkim generate` writes), relative to the
    /// configuration file.
    pub key: PathBuf,
    /// Header fields the ARC-Message-Signature covers when present (default: DKIM's list).
    #[serde(default)]
    pub headers: Option<Vec<String>>,
}

/// `[dmarc_reports]`: DMARC aggregate reports (RFC 7489 section 7.2) about the mail verified here,
/// sent to the `rua=` addresses of the domains' records. Off by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DmarcReportsConfig {
    pub enabled: bool,
    /// The report's sender (MAIL FROM and From) and `<email>` in its metadata; required when
    /// enabled.
    pub email: String,
    /// `<org_name>`; default: `[server] hostname`.
    pub org_name: Option<String>,
    /// The reporting period: evaluations are collected this long, then one report per domain
    /// goes out (RFC 7489: at most daily by default).
    #[serde(deserialize_with = "super::queue::duration")]
    pub interval: Duration,
}

impl Default for DmarcReportsConfig {
    fn default() -> Self {
        DmarcReportsConfig {
            enabled: false,
            email: String::new(),
            org_name: None,
            interval: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[authentication]`: verification of inbound mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthenticationConfig {
    /// The authserv-id of the Authentication-Results header; default: `[server] hostname`.
    /// Inbound headers that claim it are removed (RFC 8601 section 5).
    pub authserv_id: Option<String>,
    /// Verify SPF, DKIM, DMARC and ARC on mx listeners and add Authentication-Results.
    pub verify: bool,
    /// DKIM signatures verified per message (each costs DNS lookups); the others are ignored.
    pub max_signatures: usize,
}

impl Default for AuthenticationConfig {
    fn default() -> Self {
        AuthenticationConfig {
            authserv_id: None,
            verify: true,
            max_signatures: 5,
        }
    }
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    super::queue::duration(d).map(Some)
}
