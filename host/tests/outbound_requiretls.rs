//! REQUIRETLS (RFC 8689) through the real binary: offered only after STARTTLS, stored with the
//! message, and honoured on the way out — delivered only over DANE-authenticated TLS to a peer
//! that offers REQUIRETLS, otherwise bounced with 5.7.30 (the bounce carries the header only);
//! `TLS-Required: No` lets a message through a failing DANE check.
//!
//! | row | next hop | expected |
//! |---|---|---|
//! | delivered | DANE match, peer offers REQUIRETLS | delivered, MAIL … REQUIRETLS |
//! | peer without REQUIRETLS | DANE match | bounced 5.7.30, body not in the bounce |
//! | no authenticated TLS | insecure zone, peer offers REQUIRETLS | bounced 5.7.30 |
//! | TLS-Required: No | DANE mismatch | delivered |

use crate::support;

use std::time::Duration;

use support::peer::{PeerOptions, ScriptedPeer as Peer};
use support::tls::{Leaf, SignedZone, Zones, hex, self_signed, sha256};
use support::tls_peer::{first_delivered, starttls_peer};
use support::{ALICE, Client, TestServer};

async fn peer(leaf: &Leaf, requiretls: bool) -> Peer {
    let extensions = match requiretls {
        true => vec!["REQUIRETLS".to_string()],
        false => Vec::new(),
    };
    let options = PeerOptions {
        extensions,
        ..PeerOptions::default()
    };
    starttls_peer(leaf, options).await
}

fn mailwit(zone: &SignedZone, peer: &Peer) -> TestServer {
    TestServer::with_config(&support::config(
        "",
        &format!(
            "{dns}\n[queue]\nmx_port = {port}\nretry_first = \"1s\"\nretry_max = \"2s\"\n\
             client_timeout = \"30s\"\n",
            dns = zone.dns_config(),
            port = peer.addr.port(),
        ),
    ))
}

/// A signed zone where `dane.test`'s MX host publishes TLSA for `key_of` (SPKI SHA-256), and an
/// unsigned child zone `insecure.test`.
fn zone(port: u16, key_of: &Leaf) -> SignedZone {
    let rdata = format!("3 1 1 {}", hex(&sha256(&key_of.spki)));
    SignedZone::start(Zones {
        signed: vec![
            "dane IN MX 10 mx.dane".into(),
            "mx.dane IN A 127.0.0.1".into(),
            format!("_{port}._tcp.mx.dane IN TLSA {rdata}"),
        ],
        unsigned: vec![(
            "insecure".into(),
            vec!["@ IN MX 10 mx".into(), "mx IN A 127.0.0.1".into()],
        )],
        corrupt_tlsa: vec![],
    })
}

/// Submits as alice over implicit TLS with `MAIL FROM:<alice> REQUIRETLS` when `requiretls`.
fn submit(server: &TestServer, to: &str, requiretls: bool, extra_header: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.text().contains("REQUIRETLS"), "{ehlo:?}");
    c.login_alice();
    let param = if requiretls { " REQUIRETLS" } else { "" };
    c.expect(&format!("MAIL FROM:<{ALICE}>{param}"), 250);
    c.expect(&format!("RCPT TO:<{to}>"), 250);
    c.expect("DATA", 354);
    c.send(format!(
        "{extra_header}Subject: secret\r\nFrom: {ALICE}\r\nTo: {to}\r\n\r\nThe secret body.\r\n.\r\n"
    ));
    assert_eq!(c.reply().code, 250);
    c.expect("QUIT", 221);
}

fn bounce(server: &TestServer) -> String {
    let files = server.wait_maildir(ALICE, 1);
    std::fs::read_to_string(&files[0]).unwrap()
}

macro_rules! need_bind {
    () => {
        if !support::tls::have_bind() {
            eprintln!("skipped: BIND (Debian bind9, bind9-utils) is not installed");
            return;
        }
    };
}

#[test]
fn requiretls_is_offered_only_after_starttls() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.text().contains("REQUIRETLS"), "{ehlo:?}");
    let reply = c.cmd("MAIL FROM:<someone@remote.test> REQUIRETLS");
    assert_eq!((reply.code, reply.enhanced()), (555, "5.5.4".to_string()));
    c.expect("STARTTLS", 220);
    c.upgrade();
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.text().contains("REQUIRETLS"), "{ehlo:?}");
    c.expect("MAIL FROM:<someone@remote.test> REQUIRETLS", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    c.send("Subject: x\r\n\r\nbody\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    // Stored with the message: the spool file's envelope says so until delivery.
    let deadline = std::time::Instant::now() + support::PATIENCE;
    while server.maildir("bob@example.test").is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requiretls_delivered_over_dane_to_a_requiretls_peer() {
    need_bind!();
    let leaf = self_signed(&["mx.dane.test"]);
    let peer = peer(&leaf, true).await;
    let zone = zone(peer.addr.port(), &leaf);
    let server = mailwit(&zone, &peer);
    submit(&server, "bob@dane.test", true, "");
    let m = first_delivered(&peer, &server);
    assert!(m.tls);
    assert!(m.mail.ends_with(" REQUIRETLS"), "{}", m.mail);
}

#[tokio::test(flavor = "multi_thread")]
async fn requiretls_bounces_5_7_30_when_the_peer_lacks_requiretls() {
    need_bind!();
    let leaf = self_signed(&["mx.dane.test"]);
    let peer = peer(&leaf, false).await;
    let zone = zone(peer.addr.port(), &leaf);
    let server = mailwit(&zone, &peer);
    submit(&server, "bob@dane.test", true, "");
    let report = bounce(&server);
    assert!(report.contains("Status: 5.7.30"), "{report}");
    assert!(report.contains("Subject: secret"), "{report}");
    assert!(
        !report.contains("The secret body."),
        "the content must not come back: {report}"
    );
    assert!(peer.transcript().messages.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn requiretls_bounces_5_7_30_without_authenticated_tls() {
    need_bind!();
    let leaf = self_signed(&["mx.insecure.test"]);
    let peer = peer(&leaf, true).await;
    let zone = zone(peer.addr.port(), &leaf);
    let server = mailwit(&zone, &peer);
    submit(&server, "bob@insecure.test", true, "");
    let report = bounce(&server);
    assert!(report.contains("Status: 5.7.30"), "{report}");
    assert!(peer.transcript().messages.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_required_no_ignores_a_failing_dane_check() {
    need_bind!();
    let leaf = self_signed(&["mx.dane.test"]);
    let other = self_signed(&["mx.dane.test"]);
    let peer = peer(&leaf, false).await;
    // TLSA for another key: DANE would refuse this peer.
    let zone = zone(peer.addr.port(), &other);
    let server = mailwit(&zone, &peer);
    submit(&server, "bob@dane.test", false, "TLS-Required: No\r\n");
    let m = first_delivered(&peer, &server);
    assert!(m.tls, "still encrypted, opportunistically");
}
