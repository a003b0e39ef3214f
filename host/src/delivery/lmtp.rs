//! LMTP (RFC 2033) delivery to a local mail store over TCP ("host:port") or a unix socket
//! (a path). It is the SMTP client with LHLO instead of EHLO and, after the data, one reply per
//! accepted recipient, so one mailbox can be over quota while the others are delivered.
//! No STARTTLS or AUTH: LMTP peers are local by definition.

use std::path::PathBuf;

use super::contract::{Attempt, Outbound};
use super::smtp_client::{ClientConfig, Connection, Failure, Protocol};
use crate::policy::Reply;

/// Where an LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpTarget {
    /// "host:port"
    Tcp(String),
    Unix(PathBuf),
}

impl LmtpTarget {
    /// "unix:/path" or "/path" is a unix socket; anything else is "host:port".
    pub fn parse(target: &str) -> LmtpTarget {
        if let Some(path) = target.strip_prefix("unix:") {
            LmtpTarget::Unix(PathBuf::from(path))
        } else if target.starts_with('/') {
            LmtpTarget::Unix(PathBuf::from(target))
        } else {
            LmtpTarget::Tcp(target.to_string())
        }
    }
}

/// Opens an LMTP session: connect, greeting, LHLO.
pub async fn connect(target: &LmtpTarget, config: &ClientConfig) -> Result<Connection, Failure> {
    let timeout = config.timeouts.connect;
    let connect_failed = |what: &str, e: &dyn std::fmt::Display| {
        Failure::Transient(Reply::new(
            421,
            "4.4.1",
            format!("connect to LMTP {what}: {e}"),
        ))
    };
    let (mut conn, name) = match target {
        LmtpTarget::Tcp(addr) => {
            let connect = tokio::net::TcpStream::connect(addr.as_str());
            let stream = match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(connect_failed(addr, &e)),
                Err(_) => return Err(connect_failed(addr, &"timed out")),
            };
            let _ = stream.set_nodelay(true);
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            let conn = Connection::over(Box::new(stream), addr, config, Protocol::Lmtp);
            (conn, host.to_string())
        }
        LmtpTarget::Unix(path) => {
            let shown = path.display().to_string();
            let connect = tokio::net::UnixStream::connect(path);
            let stream = match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(connect_failed(&shown, &e)),
                Err(_) => return Err(connect_failed(&shown, &"timed out")),
            };
            let conn = Connection::over(Box::new(stream), &shown, config, Protocol::Lmtp);
            (conn, "localhost".to_string())
        }
    };
    conn.open(&name).await?;
    Ok(conn)
}

/// Delivers one message over a fresh LMTP session.
pub async fn deliver(target: &LmtpTarget, config: &ClientConfig, out: &Outbound<'_>) -> Attempt {
    match connect(target, config).await {
        Ok(conn) => super::smtp_client::send_and_quit(conn, out).await,
        Err(failure) => Attempt::all(out, failure.outcome()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            LmtpTarget::parse("127.0.0.1:24"),
            LmtpTarget::Tcp("127.0.0.1:24".into())
        );
        assert_eq!(
            LmtpTarget::parse("/run/dovecot/lmtp"),
            LmtpTarget::Unix("/run/dovecot/lmtp".into())
        );
        assert_eq!(LmtpTarget::parse("unix:/x"), LmtpTarget::Unix("/x".into()));
    }
}
