//! Fixtures for the delivery-side tests: an SMTP client configuration, envelopes, messages.

use std::time::Duration;

use mailwit::delivery::smtp_client::{ClientConfig, Timeouts};
use mailwit::policy::{Envelope, Notify, Recipient, ReversePath, TlsPolicy};

/// A client configuration with short timeouts, no TLS unless a test says so.
pub fn client() -> ClientConfig {
    let mut c = ClientConfig::new("client.mailwit.test");
    c.timeouts = Timeouts::all(Duration::from_secs(10));
    c.tls = TlsPolicy::None;
    c
}

pub fn sender(address: &str) -> ReversePath {
    ReversePath {
        address: address.into(),
        ..ReversePath::default()
    }
}

pub fn rcpt(address: &str) -> Recipient {
    Recipient {
        address: address.into(),
        notify: None,
        orcpt: None,
    }
}

/// The envelope of a message from `from` to each of `to` (no DSN parameters).
pub fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        reverse_path: sender(from),
        recipients: to.iter().map(|a| rcpt(a)).collect(),
    }
}

pub fn rcpt_dsn(address: &str, notify: Notify) -> Recipient {
    Recipient {
        address: address.into(),
        notify: Some(notify),
        orcpt: Some(format!("rfc822;{address}")),
    }
}

pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: alice@origin.test\r\nTo: bob@dest.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@origin.test>\r\n\r\n{body}"
    )
    .into_bytes()
}
