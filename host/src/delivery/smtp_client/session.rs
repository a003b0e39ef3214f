//! Opening and closing a session: connect, greeting, EHLO (HELO fallback) or LHLO, STARTTLS per
//! policy, AUTH to a smarthost; the RSET liveness probe before reuse; QUIT.

use std::net::SocketAddr;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::capabilities::Capabilities;
use super::config::{AuthMechanism, ClientConfig};
use super::connection::{Connection, Failure, Protocol, Stream};
use super::reply::ServerReply;
use super::tls::HandshakeFailure;
use crate::policy::{Reply, TlsPolicy};

impl Connection {
    /// Connects to `addr` over TCP and runs the session setup (greeting, EHLO, STARTTLS, AUTH).
    /// `server_name` is the peer's host name: used for SNI, certificate checks and reports.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Connection, Failure> {
        Connection::connect_reporting(addr, server_name, config)
            .await
            .map_err(|e| e.failure)
    }

    /// [`Connection::connect`], telling why TLS failed in RFC 8460 terms (for TLS-RPT).
    pub async fn connect_reporting(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Connection, ConnectFailure> {
        let remote = format!("{server_name} [{}]:{}", addr.ip(), addr.port());
        let result = Connection::connect_once(addr, server_name, &remote, config, true).await;
        match result {
            // A failed opportunistic handshake leaves the connection unusable; like Postfix,
            // try once more in plain text.
            Err(Retry::WithoutTls(why)) => {
                match Connection::connect_once(addr, server_name, &remote, config, false).await {
                    Ok(mut conn) => {
                        conn.tls_failure = Some(why);
                        Ok(conn)
                    }
                    Err(retry) => Err(retry.into_connect_failure()),
                }
            }
            other => other.map_err(Retry::into_connect_failure),
        }
    }

    async fn connect_once(
        addr: SocketAddr,
        server_name: &str,
        remote: &str,
        config: &ClientConfig,
        try_tls: bool,
    ) -> Result<Connection, Retry> {
        let stream =
            match tokio::time::timeout(config.timeouts.connect, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(Retry::No(Failure::Transient(Reply::new(
                        421,
                        "4.4.1",
                        format!("connect to {remote}: {e}"),
                    ))));
                }
                Err(_) => {
                    return Err(Retry::No(Failure::Transient(Reply::new(
                        421,
                        "4.4.1",
                        format!("connect to {remote}: timed out"),
                    ))));
                }
            };
        let _ = stream.set_nodelay(true);
        let mut conn = Connection::over(Box::new(stream), remote, config, Protocol::Smtp);
        conn.setup(server_name, try_tls).await?;
        Ok(conn)
    }

    /// A session over an already connected stream (LMTP over unix sockets, tests). Call
    /// [`Connection::open`] next.
    pub fn over(
        stream: Box<dyn Stream>,
        remote: &str,
        config: &ClientConfig,
        protocol: Protocol,
    ) -> Connection {
        Connection {
            stream,
            buffer: Vec::with_capacity(4096),
            capabilities: Capabilities::default(),
            config: config.clone(),
            protocol,
            remote: remote.to_string(),
            tls: false,
            tls_authenticated: false,
            tls_failure: None,
            usable: true,
            needs_reset: false,
            failed_before_transaction: false,
            messages: 0,
        }
    }

    /// Greeting, EHLO/LHLO, and (TCP only) STARTTLS and AUTH as configured.
    pub async fn open(&mut self, server_name: &str) -> Result<(), Failure> {
        self.setup(server_name, true)
            .await
            .map_err(Retry::into_failure)
    }

    async fn setup(&mut self, server_name: &str, try_tls: bool) -> Result<(), Retry> {
        let t = self.config.timeouts.clone();
        let greeting = self.read(t.greeting, "greeting").await.map_err(Retry::No)?;
        if greeting.code != 220 {
            self.usable = false;
            let _ = self.command("QUIT", t.quit, "QUIT").await;
            return Err(Retry::No(Failure::from_reply(self.remote_said(&greeting))));
        }
        self.hello().await.map_err(Retry::No)?;

        let policy = if self.protocol == Protocol::Lmtp {
            TlsPolicy::None
        } else {
            self.config.tls
        };
        match policy {
            TlsPolicy::None => {}
            TlsPolicy::Opportunistic if !self.capabilities.starttls || !try_tls => {}
            TlsPolicy::Required if !self.capabilities.starttls => {
                return Err(self.tls_required("does not offer STARTTLS"));
            }
            TlsPolicy::Opportunistic | TlsPolicy::Required => {
                let reply = self
                    .command("STARTTLS", t.command, "STARTTLS")
                    .await
                    .map_err(Retry::No)?;
                if reply.code != 220 {
                    if policy == TlsPolicy::Required {
                        return Err(self.tls_required(&format!(
                            "refused STARTTLS: {}",
                            self.remote_said(&reply).text
                        )));
                    }
                } else {
                    match self.start_tls(server_name).await {
                        Ok(()) => self.hello().await.map_err(Retry::No)?,
                        Err((failure, why)) if policy == TlsPolicy::Required => {
                            return Err(self.tls_failed(failure, &why));
                        }
                        Err((failure, why)) => {
                            tracing::info!(remote = %self.remote, %why, "STARTTLS failed, retrying without TLS");
                            let result = failure.map_or("validation-failure", |f| f.result_type());
                            return Err(Retry::WithoutTls(result));
                        }
                    }
                }
            }
        }

        if self.config.credentials.is_some() {
            self.authenticate().await.map_err(Retry::No)?;
        }
        Ok(())
    }

    fn tls_required(&mut self, why: &str) -> Retry {
        self.usable = false;
        Retry::Tls(
            Failure::Transient(Reply::new(
                421,
                "4.7.10",
                format!("TLS is required, but {} {why}", self.remote),
            )),
            "starttls-not-supported",
        )
    }

    /// A required TLS session could not be set up: a refused certificate is a cryptographic
    /// failure (4.7.5, RFC 3463); any other handshake failure means no encryption (4.7.10).
    fn tls_failed(&mut self, failure: Option<HandshakeFailure>, why: &str) -> Retry {
        self.usable = false;
        let (code, text) = match failure {
            Some(f) if f.is_certificate() => (
                "4.7.5",
                format!(
                    "certificate of {} refused ({}): {why}",
                    self.remote,
                    f.result_type()
                ),
            ),
            _ => (
                "4.7.10",
                format!(
                    "TLS is required, but {} TLS handshake failed: {why}",
                    self.remote
                ),
            ),
        };
        let result = failure.map_or("validation-failure", |f| f.result_type());
        Retry::Tls(Failure::Transient(Reply::new(421, code, text)), result)
    }

    /// EHLO with HELO fallback, or LHLO. Sets the capabilities.
    async fn hello(&mut self) -> Result<(), Failure> {
        let t = self.config.timeouts.command;
        let name = self.config.helo_name.clone();
        if self.protocol == Protocol::Lmtp {
            let reply = self.command(&format!("LHLO {name}"), t, "LHLO").await?;
            return self.hello_result(reply);
        }
        let reply = self.command(&format!("EHLO {name}"), t, "EHLO").await?;
        if reply.code == 421 || reply.class() == 2 {
            return self.hello_result(reply);
        }
        // 5xx (command unknown) or 4xx: an old server; try the RFC 821 greeting.
        let reply = self.command(&format!("HELO {name}"), t, "HELO").await?;
        self.hello_result(reply)?;
        self.capabilities = Capabilities::default();
        Ok(())
    }

    fn hello_result(&mut self, reply: ServerReply) -> Result<(), Failure> {
        if reply.class() != 2 {
            self.usable = false;
            return Err(Failure::from_reply(self.remote_said(&reply)));
        }
        self.capabilities = Capabilities::from_ehlo(&reply);
        Ok(())
    }

    async fn start_tls(
        &mut self,
        server_name: &str,
    ) -> Result<(), (Option<HandshakeFailure>, String)> {
        // Bytes after the 220 would be a plaintext injection (CVE-2011-0411 class): refuse.
        if !self.buffer.is_empty() {
            return Err((None, "data pipelined after the STARTTLS reply".into()));
        }
        let name = ServerNameOrIp::parse(server_name);
        let connector = tokio_rustls::TlsConnector::from(self.config.tls_verify.client_config());
        let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::duplex(1).0));
        match tokio::time::timeout(
            self.config.timeouts.command,
            connector.connect(name.0, plain),
        )
        .await
        {
            Ok(Ok(tls)) => {
                self.stream = Box::new(tls);
                self.tls = true;
                self.tls_authenticated = self.config.tls_verify.authenticates();
                Ok(())
            }
            Ok(Err(e)) => {
                self.usable = false;
                Err((Some(HandshakeFailure::of(&e)), e.to_string()))
            }
            Err(_) => {
                self.usable = false;
                Err((None, "timed out".into()))
            }
        }
    }

    async fn authenticate(&mut self) -> Result<(), Failure> {
        let Some(creds) = self.config.credentials.clone() else {
            return Ok(());
        };
        let t = self.config.timeouts.command;
        let fail = |this: &mut Connection, text: String| {
            this.usable = false;
            Failure::Transient(Reply::new(454, "4.7.8", text))
        };
        if !self.tls && !self.config.allow_plaintext_auth {
            return Err(fail(
                self,
                format!("not sending credentials to {} without TLS", self.remote),
            ));
        }
        let offered = |m: &str| self.capabilities.auth.iter().any(|a| a == m);
        let mechanism = match creds.mechanism {
            Some(m) => m,
            None if offered("PLAIN") => AuthMechanism::Plain,
            None if offered("LOGIN") => AuthMechanism::Login,
            None => {
                let text = format!("{} offers no AUTH mechanism we support", self.remote);
                return Err(fail(self, text));
            }
        };
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let reply = match mechanism {
            AuthMechanism::Plain => {
                let token =
                    b64(format!("\0{}\0{}", creds.username, creds.password.expose()).as_bytes());
                self.command(&format!("AUTH PLAIN {token}"), t, "AUTH")
                    .await?
            }
            AuthMechanism::Login => {
                let mut reply = self.command("AUTH LOGIN", t, "AUTH").await?;
                for secret in [creds.username.as_str(), creds.password.expose()] {
                    if reply.code != 334 {
                        break;
                    }
                    reply = self.command(&b64(secret.as_bytes()), t, "AUTH").await?;
                }
                reply
            }
        };
        if reply.code == 235 {
            return Ok(());
        }
        // A refused login is a configuration problem at our end: defer, never bounce.
        let said = self.remote_said(&reply);
        let text = format!("authentication failed: {}", said.text);
        Err(fail(self, text))
    }

    /// Checks that an idle session still answers (RSET) before it is reused; a session the peer
    /// dropped meanwhile reports false and should be discarded.
    pub async fn probe(&mut self) -> bool {
        if !self.usable {
            return false;
        }
        let t = self.config.timeouts.command;
        match self.command("RSET", t, "RSET").await {
            Ok(reply) if reply.class() == 2 => {
                self.needs_reset = false;
                true
            }
            Ok(_) | Err(_) => {
                self.usable = false;
                false
            }
        }
    }

    /// Ends the session politely. Errors do not matter any more.
    pub async fn quit(mut self) {
        if self.usable {
            let t = self.config.timeouts.quit;
            let _ = self.command("QUIT", t, "QUIT").await;
        }
        let _ = tokio::time::timeout(self.config.timeouts.quit, self.stream.shutdown()).await;
    }
}

/// Setup outcome: fail (because of TLS: with its RFC 8460 result type), or (a failed
/// opportunistic TLS handshake) reconnect without TLS.
enum Retry {
    No(Failure),
    Tls(Failure, &'static str),
    WithoutTls(&'static str),
}

impl Retry {
    fn into_failure(self) -> Failure {
        self.into_connect_failure().failure
    }

    fn into_connect_failure(self) -> ConnectFailure {
        match self {
            Retry::No(failure) => ConnectFailure {
                failure,
                tls_result: None,
            },
            Retry::Tls(failure, result) => ConnectFailure {
                failure,
                tls_result: Some(result),
            },
            Retry::WithoutTls(result) => ConnectFailure {
                failure: Failure::Transient(Reply::new(
                    421,
                    "4.7.5",
                    "TLS handshake failed".to_string(),
                )),
                tls_result: Some(result),
            },
        }
    }
}

/// Why a session could not be set up; `tls_result` is the RFC 8460 result type when TLS was
/// the reason (e.g. "starttls-not-supported", "certificate-expired", "tlsa-invalid").
#[derive(Debug, Clone)]
pub struct ConnectFailure {
    pub failure: Failure,
    pub tls_result: Option<&'static str>,
}

struct ServerNameOrIp(rustls_pki_types::ServerName<'static>);

impl ServerNameOrIp {
    /// A DNS name, or the IP address when the name is not a valid DNS name (e.g. "[192.0.2.1]").
    fn parse(name: &str) -> ServerNameOrIp {
        let trimmed = name.trim_start_matches('[').trim_end_matches(']');
        let parsed =
            rustls_pki_types::ServerName::try_from(trimmed.to_string()).unwrap_or_else(|_| {
                rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
            });
        ServerNameOrIp(parsed)
    }
}
