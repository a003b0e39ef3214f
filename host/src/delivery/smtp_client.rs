//! The SMTP client used for relays (smarthosts) and MX hosts; LMTP reuses it (see `lmtp`).
//!
//! A [`Connection`] is one session with one peer: greeting, EHLO (HELO fallback), STARTTLS per
//! [`TlsPolicy`], AUTH to a smarthost, then any number of transactions ([`Connection::send`]),
//! then QUIT. Every transaction answers with one [`RecipientOutcome`] per recipient, in order.
//!
//! Choices worth knowing:
//! - 8-bit body to a peer without 8BITMIME: we bounce (5.6.3), we do not downgrade. RFC 6152 §3
//!   allows either; a downgrade rewrites MIME parts (breaking DKIM signatures) and 8BITMIME is
//!   near universal. A message merely *declared* 8BITMIME whose bytes are all 7-bit is sent as is.
//! - SMTPUTF8 needed (a non-ASCII address, or the flag plus non-ASCII header bytes) and not offered:
//!   5.6.7 per RFC 6531 §3.2.
//! - SIZE: a message over the peer's announced limit fails with 5.3.4 before MAIL is sent.
//! - Errors of the connection (refused, timeout, lost, garbled reply) defer every undecided
//!   recipient (4.4.1 no answer, 4.4.2 bad connection); a 421 defers the rest and ends the session.

pub mod capabilities;
pub mod reply;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use capabilities::Capabilities;
pub use reply::{ReplyError, ServerReply, parse_reply};
pub use tls::TlsVerify;

use super::{Attempt, Outbound, RecipientOutcome};
use crate::policy::{BodyType, DsnRet, Notify, Recipient, RelayTarget, Reply, TlsPolicy};

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
    /// AUTH over a connection without TLS. Off by default: credentials never travel in clear.
    pub allow_plaintext_auth: bool,
    /// Use BDAT (RFC 3030) when the peer offers CHUNKING.
    pub chunking: bool,
    /// Largest BDAT chunk.
    pub chunk_size: usize,
}

impl ClientConfig {
    pub fn new(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.into(),
            timeouts: Timeouts::default(),
            tls: TlsPolicy::Opportunistic,
            tls_verify: TlsVerify::AcceptAny,
            credentials: None,
            allow_plaintext_auth: false,
            chunking: true,
            chunk_size: 1 << 20,
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

/// Why a session broke; becomes a 4.4.x deferral.
#[derive(Debug)]
enum SessionError {
    Io(std::io::Error),
    Timeout,
    Closed,
    Garbled(ReplyError),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "{e}"),
            SessionError::Timeout => f.write_str("timed out"),
            SessionError::Closed => f.write_str("connection closed by peer"),
            SessionError::Garbled(e) => write!(f, "garbled reply: {e}"),
        }
    }
}

/// A session with one peer that can carry many transactions.
pub struct Connection {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    capabilities: Capabilities,
    config: ClientConfig,
    protocol: Protocol,
    remote: String,
    tls: bool,
    /// False after 421, a lost connection or a garbled reply.
    usable: bool,
    /// The last transaction ended mid-way: RSET before the next MAIL.
    needs_reset: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .field("protocol", &self.protocol)
            .field("tls", &self.tls)
            .field("usable", &self.usable)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` over TCP and runs the session setup (greeting, EHLO, STARTTLS, AUTH).
    /// `server_name` is the peer's host name: used for SNI, certificate checks and reports.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Connection, Failure> {
        let remote = format!("{server_name} [{}]:{}", addr.ip(), addr.port());
        let result = Connection::connect_once(addr, server_name, &remote, config, true).await;
        match result {
            // A failed opportunistic handshake leaves the connection unusable; like Postfix,
            // try once more in plain text.
            Err(Retry::WithoutTls) => {
                Connection::connect_once(addr, server_name, &remote, config, false)
                    .await
                    .map_err(Retry::into_failure)
            }
            other => other.map_err(Retry::into_failure),
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
            usable: true,
            needs_reset: false,
        }
    }

    /// Greeting, EHLO/LHLO, and (TCP only) STARTTLS and AUTH as configured.
    pub async fn open(&mut self, server_name: &str) -> Result<(), Failure> {
        self.setup(server_name, true)
            .await
            .map_err(Retry::into_failure)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether another transaction may be sent.
    pub fn is_usable(&self) -> bool {
        self.usable
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
                        Err(why) if policy == TlsPolicy::Required => {
                            return Err(self.tls_required(&format!("TLS handshake failed: {why}")));
                        }
                        Err(why) => {
                            tracing::info!(remote = %self.remote, %why, "STARTTLS failed, retrying without TLS");
                            return Err(Retry::WithoutTls);
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
        Retry::No(Failure::Transient(Reply::new(
            421,
            "4.7.10",
            format!("TLS is required, but {} {why}", self.remote),
        )))
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

    async fn start_tls(&mut self, server_name: &str) -> Result<(), String> {
        // Bytes after the 220 would be a plaintext injection (CVE-2011-0411 class): refuse.
        if !self.buffer.is_empty() {
            return Err("data pipelined after the STARTTLS reply".into());
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
                Ok(())
            }
            Ok(Err(e)) => {
                self.usable = false;
                Err(e.to_string())
            }
            Err(_) => {
                self.usable = false;
                Err("timed out".into())
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
                let token = b64(format!("\0{}\0{}", creds.username, creds.password).as_bytes());
                self.command(&format!("AUTH PLAIN {token}"), t, "AUTH")
                    .await?
            }
            AuthMechanism::Login => {
                let mut reply = self.command("AUTH LOGIN", t, "AUTH").await?;
                for secret in [&creds.username, &creds.password] {
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

    /// Runs one mail transaction. Never fails as a whole: problems become per-recipient outcomes.
    pub async fn send(&mut self, out: &Outbound<'_>) -> Attempt {
        let mut report = Attempt {
            outcomes: Vec::with_capacity(out.recipients.len()),
            remote_mta: Some(self.remote.clone()),
            dsn_passed_on: false,
        };
        if out.recipients.is_empty() {
            return report;
        }
        if !self.usable {
            let reply = Reply::new(
                421,
                "4.4.2",
                format!("connection to {} is closed", self.remote),
            );
            report.outcomes = vec![RecipientOutcome::Deferred(reply); out.recipients.len()];
            return report;
        }
        if let Err(failure) = self.check_fit(out) {
            report.outcomes = vec![failure.outcome(); out.recipients.len()];
            return report;
        }
        report.dsn_passed_on = self.capabilities.dsn;
        let mut outcomes: Vec<Option<RecipientOutcome>> = vec![None; out.recipients.len()];
        let result = self.transaction(out, &mut outcomes).await;
        if let Err(failure) = result {
            for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                *o = Some(failure.outcome());
            }
        }
        report.outcomes = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    RecipientOutcome::Deferred(Reply::new(451, "4.3.0", "no reply for recipient"))
                })
            })
            .collect();
        report
    }

    /// What can be decided before talking: size, 8-bit and UTF-8 needs against the peer's offer.
    fn check_fit(&self, out: &Outbound<'_>) -> Result<(), Failure> {
        let caps = &self.capabilities;
        let remote = &self.remote;
        if needs_smtputf8(out) && !caps.smtputf8 {
            return Err(Failure::Permanent(Reply::new(
                553,
                "5.6.7",
                format!("{remote} does not support SMTPUTF8, which this message needs"),
            )));
        }
        if out.reverse_path.body == Some(BodyType::BinaryMime)
            && !(caps.binary_mime && caps.chunking && self.config.chunking)
        {
            return Err(Failure::Permanent(Reply::new(
                554,
                "5.6.3",
                format!("{remote} does not support BINARYMIME; conversion is not supported"),
            )));
        }
        if has_8bit(out.message) && !caps.eight_bit_mime {
            return Err(Failure::Permanent(Reply::new(
                554,
                "5.6.3",
                format!("{remote} does not support 8BITMIME; 8-bit message not downgraded"),
            )));
        }
        if let Some(limit) = caps.max_size()
            && out.message.len() as u64 > limit
        {
            return Err(Failure::Permanent(Reply::new(
                552,
                "5.3.4",
                format!(
                    "message size {} exceeds the limit of {limit} of {remote}",
                    out.message.len()
                ),
            )));
        }
        Ok(())
    }

    async fn transaction(
        &mut self,
        out: &Outbound<'_>,
        outcomes: &mut [Option<RecipientOutcome>],
    ) -> Result<(), Failure> {
        let t = self.config.timeouts.clone();
        if self.needs_reset {
            let reply = self.command("RSET", t.command, "RSET").await?;
            if reply.class() != 2 {
                return Err(self.broken_by(&reply));
            }
            self.needs_reset = false;
        }
        let bdat = self.capabilities.chunking && self.config.chunking;
        let pipelining = self.capabilities.pipelining;
        let mail = self.mail_command(out);
        let rcpts: Vec<String> = out
            .recipients
            .iter()
            .map(|r| self.rcpt_command(r))
            .collect();

        // Envelope: MAIL, RCPT… and (without BDAT) DATA, in one write when PIPELINING is offered.
        let mut batch = format!("{mail}\r\n");
        if pipelining {
            for r in &rcpts {
                batch.push_str(r);
                batch.push_str("\r\n");
            }
            if !bdat {
                batch.push_str("DATA\r\n");
            }
        }
        self.needs_reset = true;
        self.write(batch.as_bytes(), t.mail).await?;
        let mail_reply = self.read(t.mail, "MAIL").await?;
        let mail_ok = mail_reply.class() == 2;
        if !mail_ok && !pipelining {
            return Err(self.broken_by(&mail_reply));
        }
        let mut accepted = Vec::new();
        for (i, rcpt) in rcpts.iter().enumerate() {
            if !pipelining {
                self.write(format!("{rcpt}\r\n").as_bytes(), t.rcpt).await?;
            }
            let reply = self.read(t.rcpt, "RCPT").await?;
            if reply.code == 421 {
                return Err(self.broken_by(&reply));
            }
            if !mail_ok {
                continue; // the MAIL reply decides; this one is a 503 follow-up
            }
            if reply.class() == 2 {
                accepted.push(i);
            } else {
                outcomes[i] = Some(outcome_of(&self.remote_said(&reply)));
            }
        }
        let data_reply = if pipelining && !bdat {
            Some(self.read(t.data_init, "DATA").await?)
        } else {
            None
        };
        if !mail_ok {
            return Err(self.broken_by(&mail_reply));
        }
        if accepted.is_empty() {
            if data_reply.as_ref().is_some_and(|r| r.code == 354) {
                // The peer wants a message nobody takes: send an empty one and forget it.
                self.write(b".\r\n", t.data_block).await?;
                self.read(t.data_end, "end of data").await?;
            }
            return Ok(());
        }

        let final_replies = if bdat {
            self.send_bdat(out.message, accepted.len()).await?
        } else {
            let data_reply = match data_reply {
                Some(r) => r,
                None => self.command("DATA", t.data_init, "DATA").await?,
            };
            if data_reply.code != 354 {
                return Err(self.broken_by(&data_reply));
            }
            self.write_blocks(&dot_stuff(out.message)).await?;
            self.read_final(accepted.len()).await?
        };
        for (&i, reply) in accepted.iter().zip(final_replies) {
            outcomes[i] = Some(outcome_of(&reply));
        }
        self.needs_reset = false;
        Ok(())
    }

    /// Sends the message in BDAT chunks and returns the final reply per accepted recipient.
    async fn send_bdat(&mut self, message: &[u8], accepted: usize) -> Result<Vec<Reply>, Failure> {
        let t = self.config.timeouts.clone();
        let size = self.config.chunk_size.max(1);
        let mut chunks = message.chunks(size).peekable();
        if message.is_empty() {
            self.write(b"BDAT 0 LAST\r\n", t.data_block).await?;
            return self.read_final(accepted).await;
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let head = format!(
                "BDAT {}{}\r\n",
                chunk.len(),
                if last { " LAST" } else { "" }
            );
            self.write(head.as_bytes(), t.data_block).await?;
            self.write_blocks(chunk).await?;
            if last {
                return self.read_final(accepted).await;
            }
            let reply = self.read(t.data_block, "BDAT").await?;
            if reply.class() != 2 {
                return Err(self.broken_by(&reply));
            }
        }
        unreachable!("a non-empty message has a last chunk")
    }

    /// The reply to the end of data: one for SMTP (it counts for every accepted recipient), one per
    /// accepted recipient for LMTP.
    async fn read_final(&mut self, accepted: usize) -> Result<Vec<Reply>, Failure> {
        let timeout = self.config.timeouts.data_end;
        if self.protocol == Protocol::Smtp {
            let reply = self.read(timeout, "end of data").await?;
            if reply.code == 421 {
                self.usable = false;
            }
            return Ok(vec![self.remote_said(&reply); accepted]);
        }
        let mut replies = Vec::with_capacity(accepted);
        for _ in 0..accepted {
            let reply = self.read(timeout, "end of data").await?;
            replies.push(self.remote_said(&reply));
        }
        Ok(replies)
    }

    fn mail_command(&self, out: &Outbound<'_>) -> String {
        let caps = &self.capabilities;
        let rp = out.reverse_path;
        let mut cmd = format!("MAIL FROM:<{}>", rp.address);
        if caps.size.is_some() {
            cmd.push_str(&format!(" SIZE={}", out.message.len()));
        }
        if rp.body == Some(BodyType::BinaryMime) {
            cmd.push_str(" BODY=BINARYMIME");
        } else if caps.eight_bit_mime && has_8bit(out.message) {
            cmd.push_str(" BODY=8BITMIME");
        }
        if caps.smtputf8 && needs_smtputf8(out) {
            cmd.push_str(" SMTPUTF8");
        }
        if caps.dsn {
            match rp.ret {
                Some(DsnRet::Full) => cmd.push_str(" RET=FULL"),
                Some(DsnRet::Hdrs) => cmd.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = &rp.envid {
                cmd.push_str(" ENVID=");
                cmd.push_str(&xtext(envid));
            }
        }
        cmd
    }

    fn rcpt_command(&self, rcpt: &Recipient) -> String {
        let mut cmd = format!("RCPT TO:<{}>", rcpt.address);
        if self.capabilities.dsn {
            if let Some(notify) = rcpt.notify {
                cmd.push_str(" NOTIFY=");
                cmd.push_str(&notify_param(notify));
            }
            if let Some(orcpt) = &rcpt.orcpt {
                cmd.push_str(" ORCPT=");
                cmd.push_str(orcpt);
            }
        }
        cmd
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

    /// A reply that ends the transaction. A 421 also ends the session.
    fn broken_by(&mut self, reply: &ServerReply) -> Failure {
        if reply.code == 421 {
            self.usable = false;
        }
        let said = self.remote_said(reply);
        match said.code / 100 {
            5 => Failure::Permanent(said),
            4 => Failure::Transient(said),
            _ => {
                self.usable = false;
                Failure::Transient(Reply::new(
                    451,
                    "4.5.0",
                    format!("unexpected reply: {} {}", said.code, said.text),
                ))
            }
        }
    }

    /// The peer's reply as a [`Reply`], its text prefixed with who said it (for bounces and logs).
    fn remote_said(&self, reply: &ServerReply) -> Reply {
        let mut r = reply.to_reply();
        r.text = format!("{} said: {}", self.remote, r.text);
        r
    }

    async fn command(
        &mut self,
        line: &str,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<ServerReply, Failure> {
        self.write(format!("{line}\r\n").as_bytes(), timeout)
            .await?;
        self.read(timeout, stage).await
    }

    async fn write(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), Failure> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(SessionError::Io(e), "sending")),
            Err(_) => Err(self.lost(SessionError::Timeout, "sending")),
        }
    }

    /// Writes message data in blocks, each under the data-block timeout.
    async fn write_blocks(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        for block in bytes.chunks(64 * 1024) {
            self.write(block, self.config.timeouts.data_block).await?;
        }
        Ok(())
    }

    /// Reads one complete reply. Replies already buffered (pipelining) are used first.
    async fn read(
        &mut self,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<ServerReply, Failure> {
        let io = async {
            loop {
                match parse_reply(&self.buffer) {
                    Ok((reply, used)) => {
                        self.buffer.drain(..used);
                        return Ok(reply);
                    }
                    Err(ReplyError::Incomplete) => {}
                    Err(e) => return Err(SessionError::Garbled(e)),
                }
                let mut chunk = [0u8; 4096];
                let n = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(SessionError::Io)?;
                if n == 0 {
                    return Err(SessionError::Closed);
                }
                self.buffer.extend_from_slice(&chunk[..n]);
            }
        };
        match tokio::time::timeout(timeout, io).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.lost(e, stage)),
            Err(_) => Err(self.lost(SessionError::Timeout, stage)),
        }
    }

    fn lost(&mut self, error: SessionError, stage: &str) -> Failure {
        self.usable = false;
        Failure::Transient(Reply::new(
            421,
            "4.4.2",
            format!(
                "lost connection with {} while {stage}: {error}",
                self.remote
            ),
        ))
    }
}

/// Setup outcome: fail, or (a failed opportunistic TLS handshake) reconnect without TLS.
enum Retry {
    No(Failure),
    WithoutTls,
}

impl Retry {
    fn into_failure(self) -> Failure {
        match self {
            Retry::No(f) => f,
            Retry::WithoutTls => {
                Failure::Transient(Reply::new(421, "4.7.5", "TLS handshake failed".to_string()))
            }
        }
    }
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

/// 2xx delivered, 4xx deferred, 5xx failed (anything else: deferred, it is a protocol error).
pub fn outcome_of(reply: &Reply) -> RecipientOutcome {
    match reply.code / 100 {
        2 => RecipientOutcome::Delivered(reply.clone()),
        5 => RecipientOutcome::Failed(reply.clone()),
        _ => RecipientOutcome::Deferred(reply.clone()),
    }
}

/// Whether any byte has the high bit set.
pub fn has_8bit(message: &[u8]) -> bool {
    !message.is_ascii()
}

/// SMTPUTF8 is needed when an address is non-ASCII, or when the client declared it and the header
/// carries UTF-8 (RFC 6532).
pub fn needs_smtputf8(out: &Outbound<'_>) -> bool {
    let addresses = !out.reverse_path.address.is_ascii()
        || out.recipients.iter().any(|r| !r.address.is_ascii());
    addresses || (out.reverse_path.smtputf8 && !header_of(out.message).is_ascii())
}

/// The header section of a message (up to the first empty line).
pub fn header_of(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &[];
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &message[..i + 2],
        None => message,
    }
}

/// RFC 3461 NOTIFY value.
pub fn notify_param(n: Notify) -> String {
    let mut words = Vec::new();
    if n.success {
        words.push("SUCCESS");
    }
    if n.failure {
        words.push("FAILURE");
    }
    if n.delay {
        words.push("DELAY");
    }
    if words.is_empty() {
        "NEVER".into()
    } else {
        words.join(",")
    }
}

/// RFC 3461 §4 xtext: "+" and characters outside "!".."~" and "=" become "+XX".
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Message data for DATA: dot-stuffed, bare LF made CRLF, ending in CRLF "." CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut previous = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        previous = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
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
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\nb\n"), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    #[test]
    fn xtext_and_notify() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(notify_param(Notify::default()), "NEVER");
        let n = Notify {
            success: true,
            failure: true,
            delay: false,
        };
        assert_eq!(notify_param(n), "SUCCESS,FAILURE");
    }

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

    #[test]
    fn header_split() {
        assert_eq!(header_of(b"A: b\r\n\r\nbody"), b"A: b\r\n");
        assert_eq!(header_of(b"\r\nbody"), b"");
    }
}
