//! How the client behaves towards one target: timeouts, TLS, credentials, DANE, BDAT and
//! recipients per transaction.

use std::time::Duration;

use super::tls::TlsVerify;
use crate::policy::TlsPolicy;
use crate::secret::Secret;

/// RFC 5321 §4.5.3.2 client timeouts. The defaults are the RFC's minimums. In configuration
/// files each is a number of seconds (fractions allowed), e.g. `data_end = 600`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    #[serde(with = "seconds")]
    pub connect: Duration,
    /// Initial 220 greeting: 5 minutes.
    #[serde(with = "seconds")]
    pub greeting: Duration,
    /// EHLO, STARTTLS, AUTH, RSET, and the TLS handshake (not fixed by the RFC; 5 minutes).
    #[serde(with = "seconds")]
    pub command: Duration,
    /// MAIL: 5 minutes.
    #[serde(with = "seconds")]
    pub mail: Duration,
    /// RCPT: 5 minutes.
    #[serde(with = "seconds")]
    pub rcpt: Duration,
    /// DATA initiation (354): 2 minutes.
    #[serde(with = "seconds")]
    pub data_init: Duration,
    /// Each block of message data written: 3 minutes.
    #[serde(with = "seconds")]
    pub data_block: Duration,
    /// Reply to the final "." (or BDAT LAST): 10 minutes.
    #[serde(with = "seconds")]
    pub data_end: Duration,
    #[serde(with = "seconds")]
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: min(5),
            command: min(5),
            mail: min(5),
            rcpt: min(5),
            data_init: min(2),
            data_block: min(3),
            data_end: min(10),
            quit: min(1),
        }
    }
}

impl Timeouts {
    /// Every timeout set to `d` (tests).
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            greeting: d,
            command: d,
            mail: d,
            rcpt: d,
            data_init: d,
            data_block: d,
            data_end: d,
            quit: d,
        }
    }
}

/// Durations in configuration files: seconds, integer or fractional.
pub(crate) mod seconds {
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = <f64 as serde::Deserialize>::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// SASL mechanism for AUTH to a smarthost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
}

/// Credentials for AUTH to a smarthost. `mechanism: None` picks PLAIN if offered, else LOGIN.
#[derive(Debug, Clone)]
pub struct RelayCredentials {
    pub username: String,
    pub password: Secret,
    pub mechanism: Option<AuthMechanism>,
}

/// How the client behaves towards one target.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO/LHLO.
    pub helo_name: String,
    pub timeouts: Timeouts,
    pub tls: TlsPolicy,
    pub tls_verify: TlsVerify,
    pub credentials: Option<RelayCredentials>,
    /// DANE towards MX hosts (RFC 7672); relays and LMTP ignore it.
    pub dane: crate::delivery::dane::DaneMode,
    /// AUTH over a connection without TLS. Off by default: credentials never travel in clear.
    pub allow_plaintext_auth: bool,
    /// Use BDAT (RFC 3030) when the peer offers CHUNKING.
    pub chunking: bool,
    /// Largest BDAT chunk.
    pub chunk_size: usize,
    /// Recipients per transaction; more are sent in further transactions on the same session
    /// (RFC 5321 §4.5.3.1.8: servers must take at least 100).
    pub max_recipients: usize,
}

impl ClientConfig {
    pub fn new(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.into(),
            timeouts: Timeouts::default(),
            tls: TlsPolicy::Opportunistic,
            tls_verify: TlsVerify::AcceptAny,
            credentials: None,
            dane: crate::delivery::dane::DaneMode::Off,
            allow_plaintext_auth: false,
            chunking: true,
            chunk_size: 1 << 20,
            max_recipients: 100,
        }
    }
}
