//! A small HTTP/1.1 service on loopback for the plugin HTTP tests: a thread per connection, the
//! test's handler answers each request, and every accepted connection is counted (a request the
//! host refused must never arrive).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// One request as the service read it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler answers.
pub enum HttpReply {
    /// Status, content type, body.
    Send(u16, &'static str, Vec<u8>),
    /// Read the request and never answer (the connection stays open for 30 s).
    Hang,
}

type Handler = dyn Fn(&HttpRequest) -> HttpReply + Send + Sync;

pub struct HttpService {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests read so far.
    pub requests: Arc<std::sync::Mutex<Vec<HttpRequest>>>,
    stop: Arc<AtomicBool>,
}

impl HttpService {
    pub fn start(handler: impl Fn(&HttpRequest) -> HttpReply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (count, seen, stopped) = (connections.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let (handler, seen) = (handler.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, &*handler, &seen));
            }
        });
        HttpService {
            addr,
            connections,
            requests,
            stop,
        }
    }

    /// A service answering every request with `status` and `body` (text/plain).
    pub fn fixed(status: u16, body: &str) -> Self {
        let body = body.as_bytes().to_vec();
        Self::start(move |_| HttpReply::Send(status, "text/plain", body.clone()))
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &std::sync::Mutex<Vec<HttpRequest>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_string(), path.to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut request = HttpRequest {
            method,
            path,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = request
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            request.body = vec![0; len];
            if reader.read_exact(&mut request.body).is_err() {
                return;
            }
        } else if request
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                    return;
                };
                let mut chunk = vec![0; n + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                request.body.extend_from_slice(&chunk[..n]);
            }
        }
        seen.lock().unwrap().push(request.clone());
        match handler(&request) {
            HttpReply::Hang => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            HttpReply::Send(status, content_type, body) => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
                    return;
                }
            }
        }
    }
}
