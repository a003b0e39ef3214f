//! One connection: drives an `smtp::Session` over a TCP (or TLS) socket.
//!
//! The loop is: let the session run until it needs the engine (answer its events with hooks and
//! core policy), write every reply it queued (so a pipelined batch gets its replies in order and
//! nothing waits on a reply still in our buffer), then block on one read into a small fixed
//! buffer under the RFC 5321 timeout that applies. A slow client costs a socket, this buffer and
//! a parked task, never a thread.

use super::limits::Refusal;
use super::shared::{Shared, stopped};
use super::stages::SessionPolicy;
use crate::config::server::ListenerConfig;
use crate::policy::{Reply, SessionInfo, TlsInfo, Verdict};
use crate::smtp::{Event, Session, SessionConfig, Timeout};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tracing::Instrument;

/// Bytes read per system call; also the most a slow client makes us hold besides the session.
const READ_BUFFER: usize = 8 * 1024;

/// Plain TCP until STARTTLS (or from the start on implicit-TLS listeners), then TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Only while the TCP stream is inside the TLS acceptor.
    Upgrading,
}

fn upgrading() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "stream is being upgraded to TLS",
    )
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
            Stream::Upgrading => Poll::Ready(Err(upgrading())),
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
            Stream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

/// Runs one accepted connection to its end.
pub async fn handle(
    shared: Arc<Shared>,
    listener_index: usize,
    mut tcp: TcpStream,
    mut peer: SocketAddr,
) {
    let config = shared.config.clone();
    let listener = &config.listeners[listener_index];
    let mut local = tcp.local_addr().unwrap_or(peer);
    let metrics = shared.metrics.clone();
    let refused = |reason: &'static str| {
        metrics
            .connections_refused
            .get_or_create(&crate::metrics::ReasonLabels {
                listener: listener.name.clone(),
                reason,
            })
            .inc();
    };
    if listener.proxy_protocol {
        // Behind a balancer: the PROXY header names the real client, who then counts for the
        // limits, hooks, Received and logs. Only the balancers may send one.
        if !super::proxy::trusted(peer.ip(), &listener.proxy_trusted) {
            tracing::warn!(source = %peer, listener = %listener.name, "PROXY header from an untrusted source: closed");
            refused("proxy_untrusted");
            return;
        }
        let limit = Duration::from_secs(config.server.timeouts.greeting);
        match tokio::time::timeout(limit, super::proxy::read_header(&mut tcp)).await {
            Ok(Ok(header)) => {
                if let Some(source) = header.source {
                    tracing::debug!(balancer = %peer, client = %source, "PROXY header");
                    peer = source;
                }
                if let Some(destination) = header.destination {
                    local = destination;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(source = %peer, listener = %listener.name, error = %e, "PROXY header refused: closed");
                refused("proxy_malformed");
                return;
            }
            Err(_) => {
                tracing::warn!(source = %peer, listener = %listener.name, "no PROXY header in time: closed");
                refused("proxy_malformed");
                return;
            }
        }
    }
    let slot = match shared.limits.acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            let text = match refusal {
                Refusal::Total => "Too many connections, try again later",
                Refusal::PerIp => "Too many connections from your address, try again later",
            };
            refused(match refusal {
                Refusal::Total => "limit_total",
                Refusal::PerIp => "limit_per_ip",
            });
            tracing::info!(client = %peer, listener = %listener.name, ?refusal, "connection refused");
            metrics.reply(421);
            refuse_raw(
                tcp,
                &Reply::new(
                    421,
                    "4.7.0",
                    format!("{} {text}", shared.config.server.hostname),
                ),
            )
            .await;
            return;
        }
    };
    metrics
        .connections
        .get_or_create(&crate::metrics::ListenerLabels {
            listener: listener.name.clone(),
        })
        .inc();
    metrics.connections_active.inc();
    let id = shared.session_id();
    let span = tracing::info_span!(
        "session",
        id = %id,
        client = %peer,
        listener = %listener.name,
        tls = tracing::field::Empty,
        auth = tracing::field::Empty,
    );
    async move {
        let outcome = run(shared.clone(), listener, tcp, peer, local, id).await;
        match outcome {
            Ok(()) => tracing::debug!("session closed"),
            Err(e) => tracing::info!(error = %e, "session ended"),
        }
        metrics.connections_active.dec();
        drop(slot);
    }
    .instrument(span)
    .await
}

/// Writes one reply and closes, without a session (connection limits).
async fn refuse_raw(mut tcp: TcpStream, reply: &Reply) {
    let line = format!("{} {} {}\r\n", reply.code, reply.enhanced, reply.text);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        tcp.write_all(line.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

/// Counts an inbound TLS handshake by protocol version (or as failed).
fn count_handshake(
    shared: &Shared,
    result: io::Result<tokio_rustls::server::TlsStream<TcpStream>>,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let version = match &result {
        Ok(stream) => super::tls::info(stream.get_ref().1).version,
        Err(_) => "failed".to_string(),
    };
    shared
        .metrics
        .tls_handshakes
        .get_or_create(&crate::metrics::TlsLabels { version })
        .inc();
    result
}

fn session_config(shared: &Shared, listener: &ListenerConfig, peer: SocketAddr) -> SessionConfig {
    let limits = &shared.config.server.limits;
    SessionConfig {
        hostname: shared.config.server.hostname.clone(),
        max_message_size: limits.max_message_size,
        max_recipients: limits.max_recipients,
        max_command_line: limits.max_command_line,
        max_text_line: limits.max_text_line,
        max_bad_commands: limits.max_bad_commands,
        max_auth_failures: limits.max_auth_failures,
        starttls: listener.starttls(),
        auth: listener.auth(),
        auth_plaintext: listener.auth_plaintext,
        auth_required: listener.auth_required(),
        // ETRN is advertised (and accepted) only for the clients `[queue] etrn_clients` allows.
        etrn: shared.queue.is_some() && shared.config.queue.etrn_allowed(peer.ip()),
        cram_md5: listener.cram_md5(),
        atrn: shared.queue.is_some() && listener.role == crate::policy::ListenerRole::Odmr,
    }
}

async fn run(
    shared: Arc<Shared>,
    listener: &ListenerConfig,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    id: String,
) -> io::Result<()> {
    let timeouts = &shared.config.server.timeouts;
    let mut tls = None;
    let stream = if listener.implicit_tls() {
        let handshake = shared.tls.for_listener(&listener.name).accept(tcp);
        let tls_stream = tokio::time::timeout(Duration::from_secs(timeouts.greeting), handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
            .and_then(|r| r);
        let tls_stream = count_handshake(&shared, tls_stream)?;
        let info = super::tls::info(tls_stream.get_ref().1);
        tracing::Span::current().record("tls", tracing::field::display(&info.version));
        tls = Some(info);
        Stream::Tls(Box::new(tls_stream))
    } else {
        Stream::Plain(tcp)
    };
    let info = SessionInfo {
        id,
        listener: listener.name.clone(),
        role: listener.role,
        client: peer,
        local,
        helo: None,
        tls: tls.clone(),
        authenticated: None,
    };
    let mut session = Session::new(session_config(&shared, listener, peer), tls);
    // CRAM-MD5 challenges: unpredictable and unique (random digits, then the session id).
    session.set_challenge_seed(&format!("{}.{}", rand::random::<u64>(), info.id));
    let mut conn = Connection {
        acceptor: shared.tls.for_listener(&listener.name),
        session,
        stage: SessionPolicy::new(
            shared.clone(),
            shared.hooks.session_hooks(&listener.name),
            info,
        ),
        stream,
        buf: vec![0u8; READ_BUFFER].into_boxed_slice(),
        shared,
    };
    conn.open(listener).await?;
    conn.serve().await
}

struct Connection {
    shared: Arc<Shared>,
    /// This listener's TLS acceptor (its own certificates, or the server's).
    acceptor: tokio_rustls::TlsAcceptor,
    session: Session,
    stage: SessionPolicy,
    stream: Stream,
    buf: Box<[u8]>,
}

impl Connection {
    /// Connect hook, early-talker check, greeting.
    async fn open(&mut self, listener: &ListenerConfig) -> io::Result<()> {
        match self.stage.connect().await {
            Verdict::Reject(reply) | Verdict::Tempfail(reply) | Verdict::Disconnect(reply) => {
                tracing::info!(code = reply.code, "refused by connect hook");
                self.session.refuse(reply);
                return self.flush().await;
            }
            _ => {}
        }
        if self.talked_early(listener.greeting_delay_ms).await? {
            tracing::info!("client talked before the greeting");
            self.session.refuse(Reply::new(
                554,
                "5.5.0",
                format!(
                    "{} Protocol error: talking before the greeting",
                    self.shared.config.server.hostname
                ),
            ));
            return self.flush().await;
        }
        self.session.greet();
        Ok(())
    }

    /// Whether the client sent anything before the greeting: within `delay_ms`, or (with no
    /// delay) already sitting in the socket buffer.
    async fn talked_early(&mut self, delay_ms: u64) -> io::Result<bool> {
        if delay_ms == 0 {
            return Ok(match &self.stream {
                Stream::Plain(tcp) => {
                    let mut probe = [0u8; 1];
                    matches!(tcp.try_read(&mut probe), Ok(n) if n > 0)
                }
                Stream::Tls(_) | Stream::Upgrading => false,
            });
        }
        let delay = tokio::time::sleep(Duration::from_millis(delay_ms));
        tokio::select! {
            _ = delay => Ok(false),
            read = self.stream.read(&mut self.buf) => match read? {
                0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the greeting")),
                _ => Ok(true),
            },
        }
    }

    async fn serve(&mut self) -> io::Result<()> {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            while let Some(event) = self.session.poll() {
                match event {
                    Event::StartTls => self.start_tls().await?,
                    Event::Close => {
                        self.flush().await?;
                        let _ = self.stream.shutdown().await;
                        return Ok(());
                    }
                    Event::Turn { leftover } => return self.turn(leftover).await,
                    event => {
                        let answer = self.stage.answer(&self.session, event).await;
                        self.session.answer(answer);
                    }
                }
            }
            self.flush().await?;
            if self.session.is_closed() {
                let _ = self.stream.shutdown().await;
                return Ok(());
            }
            let idle = self.session.envelope().is_none();
            let deadline = tokio::time::Instant::now() + self.timeout();
            // A session waiting between transactions gives its plugin instances back after a
            // short while, so idle connections cost a socket and a buffer, not a Wasm instance.
            let mut release_at = (idle && self.stage.holds_idle_resources())
                .then(|| tokio::time::Instant::now() + self.idle_release());
            loop {
                let waited = tokio::select! {
                    read = tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)) => match read {
                        Ok(Ok(0)) => return Ok(()),
                        Ok(Ok(n)) => {
                            self.session.receive(&self.buf[..n]);
                            true
                        }
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            tracing::info!(timeout = ?self.session.timeout(), "client timed out");
                            self.session.timed_out();
                            true
                        }
                    },
                    _ = tokio::time::sleep_until(release_at.unwrap_or(deadline)), if release_at.is_some() => {
                        self.stage.release_idle();
                        release_at = None;
                        false
                    }
                    // Shutdown closes idle sessions at once; a transaction in flight finishes
                    // first (this branch is re-armed after its reply, when the session is idle).
                    _ = stopped(&mut shutdown), if idle => {
                        self.session.refuse(Reply::new(
                            421,
                            "4.3.2",
                            format!("{} Service shutting down, try again later", self.shared.config.server.hostname),
                        ));
                        true
                    }
                };
                if waited {
                    break;
                }
            }
        }
    }

    fn idle_release(&self) -> Duration {
        Duration::from_millis(self.shared.config.server.limits.plugin_idle_release_ms)
    }

    fn timeout(&self) -> Duration {
        let t = &self.shared.config.server.timeouts;
        Duration::from_secs(match self.session.timeout() {
            Timeout::Greeting => t.greeting,
            Timeout::Command | Timeout::None => t.command,
            Timeout::DataInit => t.data_init,
            Timeout::DataBlock => t.data_block,
        })
    }

    /// Writes every queued reply. Bounded by the command timeout so a client that never reads
    /// cannot hold the connection forever.
    async fn flush(&mut self) -> io::Result<()> {
        let output = self.session.take_output();
        if output.is_empty() {
            return Ok(());
        }
        self.shared.metrics.replies_in(&output);
        let limit = Duration::from_secs(self.shared.config.server.timeouts.command);
        tokio::time::timeout(limit, async {
            self.stream.write_all(&output).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client does not read"))?
    }

    /// ATRN accepted: write the 250, then deliver the collected mail as the client on this
    /// connection (`odmr`).
    async fn turn(&mut self, leftover: Vec<u8>) -> io::Result<()> {
        self.flush().await?;
        let Some(mut collection) = self.stage.take_collection() else {
            return Ok(());
        };
        let stream = std::mem::replace(&mut self.stream, Stream::Upgrading);
        let customer = self
            .stage
            .info()
            .helo
            .clone()
            .unwrap_or_else(|| self.stage.info().client.ip().to_string());
        let sent = super::odmr::deliver(
            stream,
            leftover,
            &mut collection,
            &customer,
            &self.shared.config.server.hostname,
            self.shared.config.queue.client_timeout,
        )
        .await;
        // Free the domains (and hand back what was not sent) before saying so.
        let left = collection.len();
        drop(collection);
        tracing::info!(sent, left, "ATRN session done");
        Ok(())
    }

    /// STARTTLS: the 220 goes out in clear, then the handshake; the session discards whatever
    /// the client pipelined after the command (CVE-2011-0411) and starts over.
    async fn start_tls(&mut self) -> io::Result<()> {
        self.flush().await?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(io::Error::other("STARTTLS under TLS"));
        };
        let limit = Duration::from_secs(self.shared.config.server.timeouts.command);
        let tls_stream = tokio::time::timeout(limit, self.acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
            .and_then(|r| r);
        let tls_stream = count_handshake(&self.shared, tls_stream)?;
        let info: TlsInfo = super::tls::info(tls_stream.get_ref().1);
        tracing::Span::current().record("tls", tracing::field::display(&info.version));
        tracing::debug!(version = %info.version, cipher = %info.cipher, "STARTTLS done");
        self.stream = Stream::Tls(Box::new(tls_stream));
        self.stage.tls_started(info.clone());
        self.session.tls_started(info);
        Ok(())
    }
}
