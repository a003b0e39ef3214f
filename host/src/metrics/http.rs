//! The operator HTTP listener (`[admin] http`): `GET /metrics` (Prometheus text), `/healthz`
//! (the process answers) and `/readyz` (listeners bound and not shutting down).
//!
//! Three read-only GET endpoints need no HTTP framework: the request head is parsed with
//! `httparse` (hyper's own parser) under a size and time limit, one response is written and the
//! connection closes. This keeps hyper, http and hyper-util out of the build for ~100 lines.

use super::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request head larger than this is refused with 431.
const MAX_HEAD: usize = 8 * 1024;
/// A client gets this long to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The running HTTP listener; dropping it stops accepting.
pub struct HttpServer {
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    /// Binds `address` (port 0: a free port, see [`HttpServer::address`]) and serves.
    pub async fn start(
        address: SocketAddr,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
    ) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "admin HTTP listening (/metrics, /healthz, /readyz)");
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let metrics = metrics.clone();
                        let ready = ready.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, &metrics, &ready).await {
                                tracing::debug!(error = %e, "admin HTTP connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(HttpServer { address, task })
    }
}

async fn serve(
    mut stream: TcpStream,
    metrics: &Metrics,
    ready: &AtomicBool,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let path = loop {
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                if request.method != Some("GET") && request.method != Some("HEAD") {
                    return respond(&mut stream, 405, "text/plain", "GET only\n", false).await;
                }
                let head_only = request.method == Some("HEAD");
                break (request.path.unwrap_or("/").to_string(), head_only);
            }
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return respond(&mut stream, 431, "text/plain", "head too large\n", false).await;
            }
            Err(_) => return respond(&mut stream, 400, "text/plain", "bad request\n", false).await,
        }
    };
    let (path, head_only) = path;
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let body = metrics.encode();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head_only,
            )
            .await
        }
        "/healthz" => respond(&mut stream, 200, "text/plain", "ok\n", head_only).await,
        "/readyz" if ready.load(Ordering::Relaxed) => {
            respond(&mut stream, 200, "text/plain", "ready\n", head_only).await
        }
        "/readyz" => respond(&mut stream, 503, "text/plain", "not ready\n", head_only).await,
        _ => respond(&mut stream, 404, "text/plain", "not found\n", head_only).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    tokio::time::timeout(READ_TIMEOUT, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response"))?
}
