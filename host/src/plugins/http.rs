//! The "http" grant: outgoing HTTP from plugins through `wasi:http/outgoing-handler`.
//!
//! wasmtime-wasi-http implements the interface; every request the guest sends ends up in
//! [`HttpHooks::send_request`], which is ours: a request to an authority outside the plugin's
//! `http.allow` fails there with `HTTP-request-denied` before any socket is opened. Allowed
//! requests go over the host's TLS verification (system roots plus `http.ca_file`), under one
//! timeout for the whole exchange (`http.timeout_ms`, shortened to what is left of the hook call's
//! `limits.time_ms`) and a cap on the response body (`http.max_response_bytes`). Each request is
//! logged at debug level with the plugin's name.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::plugins::HttpGrantConfig;

/// One entry of `http.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedAuthority {
    /// `None`: http and https.
    pub scheme: Option<Scheme>,
    /// Lower case; an IPv6 address without brackets.
    pub host: String,
    /// `None`: the scheme's default port (80 or 443).
    pub port: Option<u16>,
}

impl AllowedAuthority {
    /// "127.0.0.1:11333", "https://accounts.example.test", "http://[::1]:8080", ...
    pub fn parse(entry: &str) -> Result<AllowedAuthority> {
        let (scheme, rest) = match entry.split_once("://") {
            Some(("http", rest)) => (Some(Scheme::HTTP), rest),
            Some(("https", rest)) => (Some(Scheme::HTTPS), rest),
            Some((other, _)) => bail!("{entry:?}: scheme {other:?} is not http or https"),
            None => (None, entry),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            bail!("{entry:?}: give an authority (host, host:port or scheme://host:port), no path");
        }
        let authority: http::uri::Authority = rest.parse().with_context(|| format!("{entry:?}"))?;
        if scheme.is_none() && authority.port_u16().is_none() {
            bail!("{entry:?}: give a port, or a scheme (https://host means port 443)");
        }
        Ok(AllowedAuthority {
            scheme,
            host: bare_host(authority.host()),
            port: authority.port_u16(),
        })
    }

    fn allows(&self, scheme: &Scheme, host: &str, port: u16) -> bool {
        self.scheme.as_ref().is_none_or(|s| s == scheme)
            && self.host == host
            && self.port.unwrap_or_else(|| default_port(scheme)) == port
    }
}

fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

fn default_port(scheme: &Scheme) -> u16 {
    if *scheme == Scheme::HTTPS { 443 } else { 80 }
}

/// What one plugin's HTTP may do; built with the generation from `[plugins.NAME] http`.
pub struct HttpPolicy {
    pub plugin: Arc<str>,
    pub allow: Vec<AllowedAuthority>,
    pub timeout: Duration,
    pub max_response_bytes: u64,
    tls: tokio_rustls::TlsConnector,
}

impl HttpPolicy {
    pub fn from_config(plugin: &str, config: &HttpGrantConfig) -> Result<HttpPolicy> {
        if config.allow.is_empty() {
            bail!("http.allow is empty: list the authorities the plugin may reach");
        }
        if config.timeout_ms == 0 {
            bail!("http.timeout_ms must be at least 1");
        }
        let allow = config
            .allow
            .iter()
            .map(|entry| AllowedAuthority::parse(entry).context("in http.allow"))
            .collect::<Result<Vec<_>>>()?;
        let tls = crate::delivery::smtp_client::tls::TlsVerify::from_settings(
            true,
            config.ca_file.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("http.ca_file: {e}"))?
        .client_config();
        Ok(HttpPolicy {
            plugin: Arc::from(plugin),
            allow,
            timeout: Duration::from_millis(config.timeout_ms),
            max_response_bytes: config.max_response_bytes,
            tls: tokio_rustls::TlsConnector::from(tls),
        })
    }

    /// Whether a request to `scheme://host:port` may leave.
    pub fn allows(&self, scheme: &Scheme, host: &str, port: u16) -> bool {
        let host = bare_host(host);
        self.allow.iter().any(|a| a.allows(scheme, &host, port))
    }
}

/// The `WasiHttpHooks` of one store: the plugin's policy (none: every request is refused) and
/// the current hook call's deadline, refreshed each time the guest reaches wasi:http.
pub struct HttpHooks {
    pub policy: Option<Arc<HttpPolicy>>,
    pub deadline: Instant,
    pub session: Arc<str>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let session = self.session.clone();
        let Some(policy) = self.policy.clone() else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let uri = request.uri().clone();
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let Some(host) = uri.host().map(str::to_string) else {
            return Box::new(async { Err(Error::HttpRequestUriInvalid) });
        };
        let port = uri.port_u16().unwrap_or_else(|| default_port(&scheme));
        if !policy.allows(&scheme, &host, port) {
            tracing::info!(
                plugin = %policy.plugin,
                session = %session,
                "HTTP request to {scheme}://{host}:{port} refused: not in the plugin's http.allow"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        // The whole exchange must end by the request timeout and by the hook call's deadline.
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = policy.timeout.min(left);
        let ends = tokio::time::Instant::now() + timeout;
        let method = request.method().clone();
        Box::new(async move {
            let started = Instant::now();
            let sent = tokio::time::timeout_at(
                ends,
                exchange(&policy, request, &scheme, &host, port, ends),
            )
            .await
            .unwrap_or(Err(Error::ConnectionTimeout));
            match &sent {
                Ok((response, _)) => tracing::debug!(
                    plugin = %policy.plugin,
                    session = %session,
                    "HTTP {method} {uri} -> {} in {} ms",
                    response.status().as_u16(),
                    started.elapsed().as_millis()
                ),
                Err(e) => tracing::debug!(
                    plugin = %policy.plugin,
                    session = %session,
                    "HTTP {method} {uri} failed after {} ms: {e}",
                    started.elapsed().as_millis()
                ),
            }
            sent
        })
    }
}

/// Connects, sends and reads the response head; the body is read later by the guest, under the
/// same deadline and the size cap.
async fn exchange(
    policy: &HttpPolicy,
    mut request: http::Request<WasiBody>,
    scheme: &Scheme,
    host: &str,
    port: u16,
    ends: tokio::time::Instant,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let tcp = TcpStream::connect((bare_host(host).as_str(), port))
        .await
        .map_err(Error::Connect)?;
    let _ = tcp.set_nodelay(true);
    // Only the path goes on the request line (the authority is in Host).
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = if *scheme == Scheme::HTTPS {
        let name = rustls_pki_types::ServerName::try_from(bare_host(host))
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let tls = policy.tls.connect(name, tcp).await.map_err(Error::Tls)?;
        send(tls, request, ends).await?
    } else {
        send(tcp, request, ends).await?
    };
    let max = policy.max_response_bytes;
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > max
    {
        return Err(Error::HttpResponseBodySize(Some(length)));
    }
    let response = response.map(|incoming| {
        CappedBody {
            inner: incoming,
            left: max,
            max,
            deadline: Box::pin(tokio::time::sleep_until(ends)),
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

async fn send<S>(
    stream: S,
    request: http::Request<WasiBody>,
    ends: tokio::time::Instant,
) -> Result<http::Response<hyper::body::Incoming>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, WasiBody>(
        wasmtime_wasi_http::io::TokioIo::new(stream),
    )
    .await?;
    // The connection is driven by its own task, which ends with the exchange or at the deadline.
    tokio::spawn(async move {
        let _ = tokio::time::timeout_at(ends, connection).await;
    });
    Ok(sender.send_request(request).await?)
}

/// A response body that fails once it passes `max` bytes or the request's deadline.
struct CappedBody {
    inner: hyper::body::Incoming,
    left: u64,
    max: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.left {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.max)))));
                    }
                    self.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> HttpPolicy {
        HttpPolicy::from_config(
            "p",
            &HttpGrantConfig {
                allow: allow.iter().map(|s| s.to_string()).collect(),
                timeout_ms: 1000,
                max_response_bytes: 10,
                ca_file: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn allow_list_matches_scheme_host_and_port() {
        let p = policy(&[
            "127.0.0.1:11333",
            "https://Accounts.Example.test",
            "http://[::1]:8080",
        ]);
        assert!(p.allows(&Scheme::HTTP, "127.0.0.1", 11333));
        assert!(p.allows(&Scheme::HTTPS, "127.0.0.1", 11333));
        assert!(!p.allows(&Scheme::HTTP, "127.0.0.1", 11334));
        assert!(!p.allows(&Scheme::HTTP, "127.0.0.2", 11333));
        assert!(p.allows(&Scheme::HTTPS, "accounts.example.TEST", 443));
        assert!(!p.allows(&Scheme::HTTP, "accounts.example.test", 443));
        assert!(!p.allows(&Scheme::HTTPS, "accounts.example.test", 8443));
        assert!(!p.allows(&Scheme::HTTPS, "evil.accounts.example.test", 443));
        assert!(p.allows(&Scheme::HTTP, "[::1]", 8080));
        assert!(!p.allows(&Scheme::HTTPS, "::1", 8080));
    }

    #[test]
    fn allow_entries_that_are_not_authorities_are_refused() {
        for bad in [
            "",
            "example.test",
            "ftp://example.test",
            "https://example.test/path",
            "http://user@example.test:80",
            "https://",
        ] {
            assert!(AllowedAuthority::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            AllowedAuthority::parse("https://example.test/").unwrap(),
            AllowedAuthority {
                scheme: Some(Scheme::HTTPS),
                host: "example.test".into(),
                port: None
            }
        );
    }
}
