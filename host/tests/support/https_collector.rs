//! An HTTPS server on 127.0.0.1 that takes POSTed bodies (a TLS-RPT `https:` report endpoint):
//! it reads each request's head and `Content-Length` body, keeps both, and answers 202.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::tls::Leaf;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Request line and header lines.
    pub head: String,
    pub body: Vec<u8>,
}

pub struct HttpsCollector {
    pub addr: SocketAddr,
    pub posted: Arc<Mutex<Vec<Posted>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsCollector {
    pub async fn start(leaf: &Leaf) -> HttpsCollector {
        HttpsCollector::start_on(leaf, 0).await
    }

    /// On 127.0.0.1:`port` (0: a free one), e.g. a port a report URI named while nothing
    /// listened on it.
    pub async fn start_on(leaf: &Leaf, port: u16) -> HttpsCollector {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
        let posted = Arc::new(Mutex::new(Vec::new()));
        let store = posted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, store) = (acceptor.clone(), store.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = data[head_end + 4..].to_vec();
                    while body.len() < length {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => body.extend_from_slice(&buf[..n]),
                        }
                    }
                    store.lock().unwrap().push(Posted { head, body });
                    let _ = tls
                        .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsCollector { addr, posted, task }
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }
}

impl Drop for HttpsCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
