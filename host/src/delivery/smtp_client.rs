//! The SMTP client used for relays (smarthosts) and MX hosts; LMTP reuses it (see `lmtp`).
//!
//! A [`Connection`] is one session with one peer: greeting, EHLO (HELO fallback), STARTTLS per
//! [`TlsPolicy`], AUTH to a smarthost, then any number of transactions ([`Connection::send`]),
//! then QUIT. Every transaction answers with one [`RecipientOutcome`] per recipient, in order.
//!
//! Choices worth knowing:
//! - 8-bit body to a peer without 8BITMIME: downgraded to quoted-printable (`downgrade`, RFC 6152
//!   §3); only what has no 7-bit form (8-bit headers, 8-bit message/* parts, binary) bounces with
//!   5.6.3. The rewrite breaks DKIM signatures made earlier, so peers with 8BITMIME always get
//!   the bytes untouched. A message merely *declared* 8BITMIME whose bytes are all 7-bit is sent
//!   as is.
//! - SMTPUTF8 needed (a non-ASCII address, or the flag plus non-ASCII header bytes) and not offered:
//!   5.6.7 per RFC 6531 §3.2.
//! - SIZE: a message over the peer's announced limit fails with 5.3.4 before MAIL is sent.
//! - Errors of the connection (refused, timeout, lost, garbled reply) defer every undecided
//!   recipient (4.4.1 no answer, 4.4.2 bad connection); a 421 defers the rest and ends the session.
//!
//! Files: this one holds the configuration and the [`Connection`] type; `session` opens and
//! closes sessions, `transaction` runs MAIL/RCPT/DATA|BDAT, `wire` reads and writes under
//! timeouts, `reply` parses replies, `capabilities` reads EHLO, `encode` has dot-stuffing and
//! NOTIFY, `tls` the certificate policies (xtext is `crate::mail::xtext`).

pub mod capabilities;
pub mod encode;
pub mod reply;
mod session;
pub mod tls;
mod transaction;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use capabilities::Capabilities;
pub use encode::{dot_stuff, has_8bit, needs_smtputf8, notify_param};
pub use reply::{ReplyError, ServerReply, parse_reply};
pub use session::ConnectFailure;
pub use tls::TlsVerify;
pub use transaction::outcome_of;

use super::{Attempt, Outbound, RecipientOutcome};
use crate::policy::{RelayTarget, Reply, TlsPolicy};

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
#[derive(Clone)]
pub struct RelayCredentials {
    pub username: String,
    pub password: String,
    pub mechanism: Option<AuthMechanism>,
}

impl std::fmt::Debug for RelayCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCredentials")
            .field("username", &self.username)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
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
    pub dane: super::dane::DaneMode,
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
            dane: super::dane::DaneMode::Off,
            allow_plaintext_auth: false,
            chunking: true,
            chunk_size: 1 << 20,
            max_recipients: 100,
        }
    }
}

/// A failure that ends an attempt before or outside a transaction: the outcome of every
/// recipient still undecided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Transient(Reply),
    Permanent(Reply),
}

impl Failure {
    pub fn outcome(&self) -> RecipientOutcome {
        match self {
            Failure::Transient(r) => RecipientOutcome::Deferred(r.clone()),
            Failure::Permanent(r) => RecipientOutcome::Failed(r.clone()),
        }
    }

    pub fn reply(&self) -> &Reply {
        match self {
            Failure::Transient(r) | Failure::Permanent(r) => r,
        }
    }

    fn from_reply(reply: Reply) -> Failure {
        if reply.code >= 500 {
            Failure::Permanent(reply)
        } else {
            Failure::Transient(reply)
        }
    }
}

/// SMTP, or LMTP (RFC 2033: LHLO, and one reply per accepted recipient after the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Lmtp,
}

/// Anything a session can run over: TCP, TLS over TCP, a unix socket.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A session with one peer that can carry many transactions.
pub struct Connection {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    capabilities: Capabilities,
    config: ClientConfig,
    protocol: Protocol,
    remote: String,
    tls: bool,
    /// TLS whose certificate was checked (chain and name, or DANE), not merely encryption.
    tls_authenticated: bool,
    /// Opportunistic TLS failed (RFC 8460 result type) and the session went on in plain text.
    tls_failure: Option<&'static str>,
    /// False after 421, a lost connection or a garbled reply.
    usable: bool,
    /// The last transaction ended mid-way: RSET before the next MAIL.
    needs_reset: bool,
    /// The last `send` failed at the RSET that precedes its MAIL: nothing of it was sent.
    failed_before_transaction: bool,
    /// Messages sent over this session ([`Connection::send`] calls that reached the peer).
    messages: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .field("protocol", &self.protocol)
            .field("tls", &self.tls)
            .field("tls_authenticated", &self.tls_authenticated)
            .field("usable", &self.usable)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// TLS with the peer's certificate authenticated (verified chain and name, or DANE).
    pub fn is_tls_authenticated(&self) -> bool {
        self.tls_authenticated
    }

    /// Why opportunistic TLS failed before this plain-text session (RFC 8460 result type).
    pub fn tls_failure(&self) -> Option<&'static str> {
        self.tls_failure
    }

    /// Whether another transaction may be sent.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// The last [`Connection::send`] found the session dead at the RSET before its MAIL (e.g. a
    /// cached session the peer had closed): its recipients were deferred without anything
    /// reaching the peer, so the caller can send again on a fresh session right away.
    pub fn failed_before_transaction(&self) -> bool {
        self.failed_before_transaction
    }

    /// How many messages this session has carried (a session pool closes it at its cap).
    pub fn messages_sent(&self) -> usize {
        self.messages
    }

    /// Marks a session taken from an idle cache: the next transaction starts with RSET
    /// (pipelined when possible), which doubles as the check that the peer is still there.
    pub fn prepare_reuse(&mut self) {
        self.needs_reset = true;
    }
}

/// Connects to a relay (smarthost) by name and port, trying each address, then sends.
pub async fn deliver_to_relay(
    target: &RelayTarget,
    config: &ClientConfig,
    out: &Outbound<'_>,
) -> Attempt {
    let mut config = config.clone();
    config.tls = target.tls;
    match connect_to_relay(target, &config).await {
        Ok(conn) => send_and_quit(conn, out).await,
        Err(failure) => Attempt::all(out, failure.outcome()),
    }
}

/// Opens a session with a relay: each of its addresses in turn until one answers.
pub async fn connect_to_relay(
    target: &RelayTarget,
    config: &ClientConfig,
) -> Result<Connection, Failure> {
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, target.port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return Err(Failure::Transient(Reply::new(
                451,
                "4.4.3",
                format!("cannot resolve relay {}: {e}", target.host),
            )));
        }
    };
    let mut last = Failure::Transient(Reply::new(
        451,
        "4.4.3",
        format!("relay {} has no address", target.host),
    ));
    for addr in addrs {
        match Connection::connect(addr, host, config).await {
            Ok(conn) => return Ok(conn),
            Err(f @ Failure::Permanent(_)) => return Err(f),
            Err(f) => last = f,
        }
    }
    Err(last)
}

/// One transaction, then QUIT.
pub async fn send_and_quit(mut conn: Connection, out: &Outbound<'_>) -> Attempt {
    let report = conn.send(out).await;
    conn.quit().await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_from_toml_in_seconds() {
        let t: Timeouts = toml::from_str("connect = 2.5\ndata_end = 600").unwrap();
        assert_eq!(t.connect, Duration::from_millis(2500));
        assert_eq!(t.data_end, Duration::from_secs(600));
        assert_eq!(
            t.rcpt,
            Duration::from_secs(300),
            "unset keys keep the RFC default"
        );
        assert!(toml::from_str::<Timeouts>("conect = 1").is_err());
        assert!(toml::from_str::<Timeouts>("connect = -1").is_err());
    }

    #[test]
    fn tls_settings_read_a_ca_file() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        assert!(matches!(
            TlsVerify::from_settings(true, Some(&path)),
            Ok(TlsVerify::Verify(_))
        ));
        assert!(matches!(
            TlsVerify::from_settings(false, None),
            Ok(TlsVerify::AcceptAny)
        ));
        assert!(TlsVerify::from_settings(true, Some(&dir.path().join("none.pem"))).is_err());
    }
}
