//! The provider's side of an ATRN session after the turn (RFC 2645 §4): the customer now speaks
//! first with its 220, and we run the ordinary SMTP client (`delivery::smtp_client`) over the
//! same connection for every message the session collected, then QUIT.
//!
//! The turned session carries no STARTTLS of its own (TLS, if the customer started it before
//! AUTH, is already around the stream) and no AUTH: the customer authenticated to us.

use crate::delivery::smtp_client::{ClientConfig, Connection, Protocol, Timeouts};
use crate::policy::TlsPolicy;
use crate::queue::Collection;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Delivers `collection` over `stream`. `leftover` is what the customer sent after the ATRN
/// line before we read its 220 (the session had it buffered).
pub async fn deliver<S>(
    stream: S,
    leftover: Vec<u8>,
    collection: &mut Collection,
    customer: &str,
    hostname: &str,
    client_timeout: Option<std::time::Duration>,
) -> usize
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut config = ClientConfig::new(hostname);
    config.tls = TlsPolicy::None;
    if let Some(t) = client_timeout {
        config.timeouts = Timeouts::all(t);
    }
    let stream = Prefixed {
        prefix: leftover,
        at: 0,
        inner: stream,
    };
    let mut conn = Connection::over(Box::new(stream), customer, &config, Protocol::Smtp);
    if let Err(failure) = conn.open(customer).await {
        // Nothing was sent: the messages stay queued as they were (the collection's drop
        // hands them back).
        tracing::info!(reply = ?failure.reply(), "ATRN: the customer's SMTP session did not open");
        return 0;
    }
    let sent = collection.deliver(&mut conn).await;
    conn.quit().await;
    sent
}

/// A stream that first replays bytes already read from it.
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
