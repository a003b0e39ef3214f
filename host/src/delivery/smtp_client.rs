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
//! Files: this one connects to relays and re-exports the rest; `config` holds the configuration
//! ([`ClientConfig`], [`Timeouts`], [`RelayCredentials`]), `connection` the [`Connection`] type
//! and its [`Failure`]s; `session` opens and closes sessions, `transaction` runs
//! MAIL/RCPT/DATA|BDAT, `wire` reads and writes under timeouts, `reply` parses replies,
//! `capabilities` reads EHLO, `encode` has dot-stuffing and NOTIFY, `tls` the certificate
//! policies (xtext is `crate::mail::xtext`).

pub mod capabilities;
mod config;
mod connection;
pub mod encode;
pub mod reply;
mod session;
pub mod tls;
mod transaction;
mod wire;

use std::net::SocketAddr;

pub use capabilities::Capabilities;
pub(crate) use config::seconds;
pub use config::{AuthMechanism, ClientConfig, RelayCredentials, Timeouts};
pub use connection::{Connection, Failure, Protocol, Stream};
pub use encode::{dot_stuff, has_8bit, needs_smtputf8, notify_param};
pub use reply::{ReplyError, ServerReply, parse_reply};
pub use session::ConnectFailure;
pub use tls::TlsVerify;
pub use transaction::outcome_of;

use super::contract::{Attempt, Outbound};
use crate::policy::{RelayTarget, Reply};

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
    use std::time::Duration;

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
