//! Verified TLS to relays, through the real binary: `tls = "required"` checks the smarthost's
//! chain (the test CA through `ca_file`) and name; expired, wrong-name and self-signed peers are
//! refused (deferred 4.7.5, nothing sent); `verify = false` turns the check off; credentials go
//! only over a verified connection unless `verify = false` says otherwise.

use crate::support;

use support::TestServer;
use support::peer::{PeerOptions, ScriptedPeer as Peer};
use support::tls::{Leaf, Pki, Validity, self_signed};
use support::tls_peer::{assert_refused_after_starttls, first_delivered, starttls_peer};

/// An SMTP peer on 127.0.0.1 offering STARTTLS with `leaf`, and AUTH when `auth`.
async fn peer(leaf: &Leaf, auth: bool) -> Peer {
    let options = PeerOptions {
        auth: auth.then(|| ("relayuser".to_string(), "relay-secret".to_string())),
        ..PeerOptions::default()
    };
    starttls_peer(leaf, options).await
}

/// mailwit relaying everything non-local to `peer` with the given smarthost keys.
fn mailwit(peer: &Peer, smarthost: &str) -> TestServer {
    let port = peer.addr.port();
    TestServer::with_config(&support::config(
        "",
        &format!(
            "[routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {port}, {smarthost} }}\n\
             credentials.relay = {{ username = \"relayuser\", password = \"relay-secret\" }}\n\
             [queue]\nretry_first = \"1s\"\nretry_max = \"2s\"\nclient_timeout = \"30s\"\n"
        ),
    ))
}

fn submit(server: &TestServer, subject: &str) {
    support::tls_peer::submit(server, "bob@remote.test", subject, "Hi bob.\r\n");
}

/// Asserts that the relay refused the peer's certificate for `why` (an RFC 8460 result type):
/// deferred 4.7.5, no MAIL sent, the message still queued.
fn assert_refused(peer: &Peer, server: &TestServer, why: &str) {
    assert_refused_after_starttls(peer, server, why);
    assert!(peer.transcript().messages.is_empty());
    assert_eq!(server.spooled().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn required_tls_verifies_the_chain_with_the_configured_ca() {
    let pki = Pki::new("relay test CA");
    let peer = peer(
        &pki.leaf(&["relay.test", "127.0.0.1"], Validity::Current),
        false,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file(dir.path());
    let server = mailwit(
        &peer,
        &format!("tls = \"required\", ca_file = \"{}\"", ca.display()),
    );
    submit(&server, "verified");
    let m = first_delivered(&peer, &server);
    assert!(m.tls);
    assert!(String::from_utf8_lossy(&m.data).contains("Subject: verified"));
}

#[tokio::test(flavor = "multi_thread")]
async fn required_tls_refuses_an_expired_certificate() {
    let pki = Pki::new("relay test CA");
    let peer = peer(&pki.leaf(&["127.0.0.1"], Validity::Expired), false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file(dir.path());
    let server = mailwit(
        &peer,
        &format!("tls = \"required\", ca_file = \"{}\"", ca.display()),
    );
    submit(&server, "expired");
    assert_refused(&peer, &server, "certificate-expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn required_tls_refuses_a_certificate_for_another_name() {
    let pki = Pki::new("relay test CA");
    let peer = peer(&pki.leaf(&["other.test"], Validity::Current), false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file(dir.path());
    let server = mailwit(
        &peer,
        &format!("tls = \"required\", ca_file = \"{}\"", ca.display()),
    );
    submit(&server, "wrong name");
    assert_refused(&peer, &server, "certificate-host-mismatch");
}

#[tokio::test(flavor = "multi_thread")]
async fn required_tls_refuses_a_self_signed_certificate() {
    let peer = peer(&self_signed(&["127.0.0.1"]), false).await;
    // System roots only (no ca_file).
    let server = mailwit(&peer, "tls = \"required\"");
    submit(&server, "self-signed");
    assert_refused(&peer, &server, "certificate-not-trusted");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_false_accepts_a_self_signed_certificate_explicitly() {
    let peer = peer(&self_signed(&["127.0.0.1"]), true).await;
    let server = mailwit(
        &peer,
        "tls = \"required\", verify = false, credentials = \"relay\"",
    );
    submit(&server, "unverified by choice");
    let m = first_delivered(&peer, &server);
    // Encrypted, and the operator's explicit `verify = false` lets AUTH go over it.
    assert!(m.tls && m.authenticated, "{m:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_not_sent_over_an_unverified_connection() {
    let peer = peer(&self_signed(&["127.0.0.1"]), true).await;
    // Opportunistic TLS with credentials: the certificate must verify before AUTH is sent;
    // this one does not, so mailwit falls back to plain text and then refuses to log in.
    let server = mailwit(&peer, "tls = \"opportunistic\", credentials = \"relay\"");
    submit(&server, "no login");
    server.wait_log("enhanced=4.7.8");
    let t = peer.transcript();
    assert!(!t.commands.iter().any(|c| c.starts_with("AUTH")), "{t:?}");
    assert!(t.messages.is_empty());
    assert_eq!(server.spooled().len(), 1);
}

#[test]
fn check_config_rejects_ca_file_with_verify_false() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Pki::new("x").ca_file(dir.path());
    let config = dir.path().join("mailwit.toml");
    std::fs::write(
        &config,
        support::config(
            "",
            &format!(
                "[routes]\nsmarthost = {{ host = \"relay.test\", tls = \"required\", verify = false, ca_file = \"{}\" }}\n",
                ca.display()
            ),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ca_file"), "{err}");
}
