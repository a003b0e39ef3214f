//! The shared test harness: everything the integration tests start and talk to.
//!
//! - [`mailwit`]: the real `mailwit serve` process on a temp state dir, and a raw SMTP client.
//! - [`sink`]: Postfix's smtp-sink as a real SMTP/LMTP peer; [`peer`]: a scripted SMTP peer for
//!   what smtp-sink cannot do; [`dns`]: an in-test DNS server.
//! - [`helper_dir`]: the one place that makes directories for helpers running as another user.
//! - [`ops`]: /metrics over HTTP; redis-server and haproxy for the operations tests.
//! - [`outbound`]: fixtures for the delivery tests (client config, envelopes, messages).
//! - [`tls`]: test CAs and certificates (good, expired, wrong-name, self-signed), a DNSSEC-signed
//!   zone served by BIND, an HTTPS server (MTA-STS policy host); [`https_collector`]: an HTTPS
//!   server keeping POSTed bodies (TLS-RPT report endpoint).
#![allow(dead_code)]

pub mod dns;
pub mod helper_dir;
pub mod https_collector;
pub mod mailwit;
pub mod ops;
pub mod outbound;
pub mod peer;
pub mod sink;
pub mod tls;

#[allow(unused_imports)]
pub use mailwit::*;

/// A port free on `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}
