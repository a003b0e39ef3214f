//! For the operations tests: an HTTP GET for /metrics, and the real peers they need (Debian's
//! redis-server and haproxy), each started on free loopback ports with its files in a directory
//! the test owns, and stopped on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mailwit::PATIENCE;

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    super::free_port("127.0.0.1")
}

/// `GET path` over HTTP/1.1; (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin HTTP listener");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// The value of an unlabelled sample (or a sample with exactly these labels) in Prometheus text.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} not listening on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A redis-server on a loopback port, no persistence, files in its own directory.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        Self::start_on(dir, free_port())
    }

    pub fn start_on(dir: &Path, port: u16) -> Redis {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian package redis-server)");
        let redis = Redis {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        };
        wait_port(redis.addr(), "redis-server");
        redis
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SIGKILL: a crash, as far as mailwit can tell).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        *self = Redis::start_on(&self.dir.clone(), self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// HAProxy in TCP mode: one frontend per (name, backend address, server options), e.g.
/// `("v1", mx, "send-proxy")`.
pub struct Haproxy {
    child: Child,
    pub frontends: Vec<(String, SocketAddr)>,
}

impl Haproxy {
    pub fn start(dir: &Path, routes: &[(&str, SocketAddr, &str)]) -> Haproxy {
        std::fs::create_dir_all(dir).unwrap();
        let mut config = String::from(
            "global\n  maxconn 256\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n",
        );
        let mut frontends = Vec::new();
        for (name, backend, options) in routes {
            let port = free_port();
            config.push_str(&format!(
                "frontend fe_{name}\n  bind 127.0.0.1:{port}\n  default_backend be_{name}\n\n\
                 backend be_{name}\n  server s1 {backend} {options}\n\n"
            ));
            frontends.push((name.to_string(), SocketAddr::from(([127, 0, 0, 1], port))));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db") // foreground, no daemon
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy (Debian package haproxy)");
        let haproxy = Haproxy { child, frontends };
        for (name, addr) in &haproxy.frontends {
            wait_port(*addr, &format!("haproxy frontend {name}"));
        }
        haproxy
    }

    /// One frontend `name` balancing round-robin over `backends` (each with `options`), as a
    /// load balancer in front of several instances.
    pub fn balanced(dir: &Path, name: &str, backends: &[SocketAddr], options: &str) -> Haproxy {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut config = format!(
            "global\n  maxconn 256\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n\
             frontend fe_{name}\n  bind 127.0.0.1:{port}\n  default_backend be_{name}\n\n\
             backend be_{name}\n  balance roundrobin\n"
        );
        for (i, backend) in backends.iter().enumerate() {
            config.push_str(&format!("  server s{i} {backend} {options}\n"));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy (Debian package haproxy)");
        let haproxy = Haproxy {
            child,
            frontends: vec![(name.to_string(), SocketAddr::from(([127, 0, 0, 1], port)))],
        };
        wait_port(haproxy.frontend(name), &format!("haproxy frontend {name}"));
        haproxy
    }

    pub fn frontend(&self, name: &str) -> SocketAddr {
        self.frontends
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls /metrics until `key` has `value` (things counted just after the effect a test waits
/// for, e.g. a delivery after its Maildir file appears); returns the whole text.
pub fn wait_sample(http: SocketAddr, key: &str, value: f64) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, metrics) = http_get(http, "/metrics");
        if sample(&metrics, key) == Some(value) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never reached {value}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
