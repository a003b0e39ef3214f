//! A minimal SMTP client connection for load generation: reads multi-line replies, sends
//! batched commands, upgrades to TLS with STARTTLS (accepting any certificate: the targets
//! use throw-away self-signed certificates and we measure speed, not trust).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Longest we wait for any single server reply before calling the connection broken.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A plain or TLS-wrapped TCP stream behind one type, so the client code is written once.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One complete (possibly multi-line) SMTP reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// The text of every line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// True when a multi-line EHLO reply lists this extension keyword.
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }
}

/// What the server offered after EHLO.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
}

pub struct Connection {
    io: BufReader<Stream>,
    line: String,
    pub caps: Capabilities,
    pub tls: bool,
}

impl Connection {
    /// Connects, reads the greeting and says EHLO (upgrading with STARTTLS when asked).
    pub async fn open(addr: std::net::SocketAddr, starttls: bool) -> Result<Connection> {
        let tcp = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr} timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let mut conn = Connection {
            io: BufReader::with_capacity(16 * 1024, Stream::Plain(tcp)),
            line: String::new(),
            caps: Capabilities::default(),
            tls: false,
        };
        let greeting = conn.read_reply().await?;
        if greeting.code != 220 {
            bail!("greeting refused: {greeting}");
        }
        conn.ehlo().await?;
        if starttls {
            conn = conn.starttls().await?;
        }
        Ok(conn)
    }

    async fn ehlo(&mut self) -> Result<()> {
        self.send(b"EHLO loadgen.bench.test\r\n").await?;
        let reply = self.read_reply().await?;
        if reply.code != 250 {
            bail!("EHLO refused: {reply}");
        }
        self.caps = Capabilities {
            pipelining: reply.has_extension("PIPELINING"),
            starttls: reply.has_extension("STARTTLS"),
        };
        Ok(())
    }

    /// Consumes the plaintext connection and returns the TLS one (after a fresh EHLO).
    async fn starttls(mut self) -> Result<Connection> {
        if !self.caps.starttls {
            bail!("server does not offer STARTTLS");
        }
        self.send(b"STARTTLS\r\n").await?;
        let reply = self.read_reply().await?;
        if reply.code != 220 {
            bail!("STARTTLS refused: {reply}");
        }
        if !self.io.buffer().is_empty() {
            bail!("server sent bytes after its STARTTLS reply");
        }
        let Stream::Plain(tcp) = self.io.into_inner() else {
            bail!("STARTTLS inside TLS");
        };
        let name = rustls_pki_types::ServerName::try_from("bench.test")?.to_owned();
        let tls = tokio::time::timeout(REPLY_TIMEOUT, tls_connector().connect(name, tcp))
            .await
            .map_err(|_| anyhow!("TLS handshake timed out"))??;
        let mut conn = Connection {
            io: BufReader::with_capacity(16 * 1024, Stream::Tls(Box::new(tls))),
            line: String::new(),
            caps: Capabilities::default(),
            tls: true,
        };
        conn.ehlo().await?;
        Ok(conn)
    }

    /// Writes bytes and flushes (one batch = one write where the kernel allows).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let io = self.io.get_mut();
        tokio::time::timeout(REPLY_TIMEOUT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .map_err(|_| anyhow!("write timed out"))?
        .context("write")
    }

    pub async fn read_reply(&mut self) -> Result<Reply> {
        tokio::time::timeout(REPLY_TIMEOUT, self.read_reply_inner())
            .await
            .map_err(|_| anyhow!("no reply within {REPLY_TIMEOUT:?}"))?
    }

    async fn read_reply_inner(&mut self) -> Result<Reply> {
        // Acknowledge at once instead of delaying the ACK: a server that writes each reply
        // of a pipelined batch separately with Nagle on (Haraka does) would otherwise wait
        // for our delayed ACK (~40 ms) before sending the second reply. Linux clears
        // quick-ack mode by itself, so it is set again before each reply.
        let tcp = match self.io.get_ref() {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        };
        let _ = tcp.set_quickack(true);
        let mut lines = Vec::new();
        loop {
            self.line.clear();
            let n = self
                .io
                .read_line(&mut self.line)
                .await
                .context("read reply")?;
            if n == 0 {
                bail!("connection closed by server");
            }
            let text = self.line.trim_end_matches(['\r', '\n']);
            if text.len() < 3 || !text.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                bail!("malformed reply line {text:?}");
            }
            let code: u16 = text[..3].parse()?;
            let last = text.as_bytes().get(3) != Some(&b'-');
            lines.push(text.get(4..).unwrap_or("").to_string());
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Polite close; errors are irrelevant at this point.
    pub async fn quit(mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply().await;
        }
        let _ = self.io.get_mut().shutdown().await;
    }
}

fn tls_connector() -> TlsConnector {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Arc::new(config)
    });
    TlsConnector::from(config.clone())
}

/// Benchmarks talk to servers with throw-away self-signed certificates: trust everything,
/// but still verify handshake signatures so the crypto work is the real work.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
