//! The shared test harness: everything the integration tests start and talk to.
//!
//! - [`mailwit`]: the real `mailwit serve` process on a temp state dir, and a raw SMTP client.
//! - [`sink`]: Postfix's smtp-sink as a real SMTP/LMTP peer; [`peer`]: a scripted SMTP peer for
//!   what smtp-sink cannot do; [`dns`]: an in-test DNS server.
//! - [`helper_dir`]: the one place that makes directories for helpers running as another user.
//! - [`http_service`]: a small HTTP service that counts connections (plugin HTTP tests).
//! - [`rspamd`]: Debian's rspamd on loopback ports with a test configuration.
//! - [`ops`]: /metrics over HTTP; redis-server and haproxy for the operations tests.
//! - [`wait`]: bounded waiting ([`until`], [`until_async`], [`until_blocking`]).
//! - [`local`]: `[local]` routing for queue tests (the real `LocalConfig`).
//! - [`outbound`]: fixtures for the delivery tests (client config, envelopes, messages).
//! - [`tls`]: test CAs and certificates (good, expired, wrong-name, self-signed), a DNSSEC-signed
//!   zone served by BIND, an HTTPS server (MTA-STS policy host); [`https_collector`]: an HTTPS
//!   server keeping POSTed bodies (TLS-RPT report endpoint); [`tls_peer`]: a STARTTLS peer with a
//!   given certificate and the checks of the outbound TLS tests (DANE, verified relays).
#![allow(dead_code)]

pub mod dns;
pub mod helper_dir;
pub mod http_service;
pub mod https_collector;
pub mod local;
pub mod mailwit;
pub mod ops;
pub mod outbound;
pub mod peer;
pub mod policy;
pub mod rspamd;
pub mod sink;
pub mod tls;
pub mod tls_peer;
pub mod wait;

#[allow(unused_imports)]
pub use mailwit::*;
#[allow(unused_imports)]
pub use wait::{until, until_async, until_blocking, until_some};

/// What a finished command printed: its stdout, then its stderr.
pub fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port free on `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// A port on 127.0.0.1 that refuses connections for as long as the socket lives: bound but not
/// listening, so no test running in parallel can take it (as it could a `free_port`).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}
