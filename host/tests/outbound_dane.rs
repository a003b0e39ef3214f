//! DANE for SMTP (RFC 7672) through the real binary: BIND serves a zone this test signs with its
//! own key, mailwit validates it with that key as `[dns] trust_anchors`, looks up the MX host's
//! TLSA records and authenticates the peer's certificate with them inside the TLS handshake.
//!
//! | row | zone | TLSA | expected |
//! |---|---|---|---|
//! | DANE-EE match | signed | 3 1 1 of the peer's key | delivered over TLS |
//! | DANE-TA match | signed | 2 0 1 of the peer's CA | delivered over TLS |
//! | mismatch | signed | 3 1 1 of another key | deferred 4.7.5, no MAIL |
//! | bogus signature | signed, TLSA RRSIG corrupted | | deferred 4.7.5, host not contacted |
//! | insecure zone | unsigned child zone | mismatching | delivered (opportunistic TLS) |
//! | TLSA unusable | signed | only PKIX-EE (1 1 1) | delivered (opportunistic TLS) |
//! | dane = required, insecure | unsigned child zone | | deferred 4.7.5 |
//! | relay, dane = required, match | signed `relay.rly.test` | 3 1 1 at `_PORT._tcp.relay.rly.test` | delivered over TLS |
//! | relay, dane = required, mismatch | signed | 3 1 1 of another key | deferred 4.7.5, no MAIL |
//! | relay, TLSA via CNAME | signed | `_PORT._tcp.relay` CNAME to a TLSA RRset elsewhere | delivered over TLS |

use crate::support;

use std::time::Duration;

use support::peer::{PeerOptions, ScriptedPeer as Peer, TestCa};
use support::tls::{Leaf, Pki, SignedZone, Validity, Zones, hex, self_signed, sha256};
use support::{ALICE, Client, TestServer};

async fn peer(leaf: &Leaf) -> Peer {
    Peer::start(PeerOptions {
        extensions: vec!["PIPELINING".into()],
        tls: Some(TestCa {
            ca_der: leaf.der.clone(),
            server: leaf.server_config(),
        }),
        ..PeerOptions::default()
    })
    .await
}

/// mailwit delivering non-local mail by MX through `zone`, to MX hosts on the peer's port.
fn mailwit(zone: &SignedZone, peer: &Peer, routes: &str) -> TestServer {
    TestServer::with_config(&support::config(
        "",
        &format!(
            "{dns}\n[queue]\nmx_port = {port}\nretry_first = \"1s\"\nretry_max = \"2s\"\n\
             client_timeout = \"30s\"\n[routes]\n{routes}\n",
            dns = zone.dns_config(),
            port = peer.addr.port(),
        ),
    ))
}

fn submit(server: &TestServer, to: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(ALICE, &[to], &support::message("dane", "Hi.\r\n"));
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

fn wait_log(server: &TestServer, text: &str) -> String {
    let deadline = std::time::Instant::now() + support::PATIENCE;
    loop {
        let log = server.log();
        if log.contains(text) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_delivered(peer: &Peer, server: &TestServer) -> support::peer::Received {
    let deadline = std::time::Instant::now() + support::PATIENCE;
    loop {
        if let Some(m) = peer.transcript().messages.first() {
            return m.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing delivered:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// MX and address records of `domain` (relative to `test.`) pointing at 127.0.0.1.
fn mx_records(domain: &str) -> Vec<String> {
    vec![
        format!("{domain} IN MX 10 mx.{domain}"),
        format!("mx.{domain} IN A 127.0.0.1"),
    ]
}

fn tlsa(domain: &str, port: u16, rdata: &str) -> String {
    format!("_{port}._tcp.mx.{domain} IN TLSA {rdata}")
}

macro_rules! need_bind {
    () => {
        if !support::tls::have_bind() {
            eprintln!("skipped: BIND (Debian bind9, bind9-utils) is not installed");
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_ee_match_delivers_over_authenticated_tls() {
    need_bind!();
    let leaf = self_signed(&["mx.dane.test"]);
    let peer = peer(&leaf).await;
    let mut signed = mx_records("dane");
    let rdata = format!("3 1 1 {}", hex(&sha256(&leaf.spki)));
    signed.push(tlsa("dane", peer.addr.port(), &rdata));
    let zone = SignedZone::start(Zones {
        signed,
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@dane.test");
    let m = wait_delivered(&peer, &server);
    assert!(m.tls);
    assert!(
        server
            .log()
            .contains("DANE: TLS authenticated by TLSA records")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_ta_match_delivers_over_authenticated_tls() {
    need_bind!();
    let pki = Pki::new("DANE TA");
    let leaf = pki.leaf(&["mx.ta.test"], Validity::Current);
    let peer = peer(&leaf).await;
    let mut signed = mx_records("ta");
    let rdata = format!("2 0 1 {}", hex(&sha256(&pki.ca_der)));
    signed.push(tlsa("ta", peer.addr.port(), &rdata));
    let zone = SignedZone::start(Zones {
        signed,
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@ta.test");
    let m = wait_delivered(&peer, &server);
    assert!(m.tls);
    assert!(
        server
            .log()
            .contains("DANE: TLS authenticated by TLSA records")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_mismatch_defers_without_sending() {
    need_bind!();
    let leaf = self_signed(&["mx.dane.test"]);
    let other = self_signed(&["mx.dane.test"]);
    let peer = peer(&leaf).await;
    let mut signed = mx_records("dane");
    let rdata = format!("3 1 1 {}", hex(&sha256(&other.spki)));
    signed.push(tlsa("dane", peer.addr.port(), &rdata));
    let zone = SignedZone::start(Zones {
        signed,
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@dane.test");
    let log = wait_log(&server, "enhanced=4.7.5");
    assert!(log.contains("tlsa-invalid"), "{log}");
    let t = peer.transcript();
    assert!(t.commands.iter().any(|c| c == "STARTTLS"), "{t:?}");
    assert!(!t.commands.iter().any(|c| c.starts_with("MAIL")), "{t:?}");
    assert_eq!(server.spooled().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_bogus_signature_defers_without_contacting_the_host() {
    need_bind!();
    let leaf = self_signed(&["mx.bogus.test"]);
    let peer = peer(&leaf).await;
    let mut signed = mx_records("bogus");
    let rdata = format!("3 1 1 {}", hex(&sha256(&leaf.spki)));
    signed.push(tlsa("bogus", peer.addr.port(), &rdata));
    let owner = format!("_{}._tcp.mx.bogus", peer.addr.port());
    let zone = SignedZone::start(Zones {
        signed,
        unsigned: vec![],
        corrupt_tlsa: vec![owner],
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@bogus.test");
    let log = wait_log(&server, "enhanced=4.7.5");
    assert!(log.contains("DNSSEC"), "{log}");
    assert_eq!(peer.transcript().sessions, 0);
    assert_eq!(server.spooled().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_insecure_zone_falls_back_to_opportunistic_tls() {
    need_bind!();
    let leaf = self_signed(&["mx.insecure.test"]);
    let other = self_signed(&["mx.insecure.test"]);
    let peer = peer(&leaf).await;
    // An unsigned child zone, delegated without DS: provably insecure; its (mismatching) TLSA
    // records must be ignored.
    let rdata = format!("3 1 1 {}", hex(&sha256(&other.spki)));
    let child = vec![
        "@ IN MX 10 mx".to_string(),
        "mx IN A 127.0.0.1".to_string(),
        format!("_{}._tcp.mx IN TLSA {rdata}", peer.addr.port()),
    ];
    let zone = SignedZone::start(Zones {
        signed: vec![],
        unsigned: vec![("insecure".into(), child)],
        corrupt_tlsa: vec![],
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@insecure.test");
    let m = wait_delivered(&peer, &server);
    assert!(m.tls, "opportunistic TLS is still used");
    assert!(!server.log().contains("DANE: TLS authenticated"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_unusable_tlsa_falls_back_to_opportunistic_tls() {
    need_bind!();
    let leaf = self_signed(&["mx.pkix.test"]);
    let peer = peer(&leaf).await;
    let mut signed = mx_records("pkix");
    // PKIX-EE(1): not usable for SMTP (RFC 7672 §3.1.3).
    let rdata = format!("1 1 1 {}", hex(&sha256(&leaf.spki)));
    signed.push(tlsa("pkix", peer.addr.port(), &rdata));
    let zone = SignedZone::start(Zones {
        signed,
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@pkix.test");
    let m = wait_delivered(&peer, &server);
    assert!(m.tls);
    assert!(!server.log().contains("DANE: TLS authenticated"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_required_defers_an_insecure_destination() {
    need_bind!();
    let leaf = self_signed(&["mx.insecure.test"]);
    let peer = peer(&leaf).await;
    let child = vec!["@ IN MX 10 mx".to_string(), "mx IN A 127.0.0.1".to_string()];
    let zone = SignedZone::start(Zones {
        signed: vec![],
        unsigned: vec![("insecure".into(), child)],
        corrupt_tlsa: vec![],
    });
    let server = mailwit(
        &zone,
        &peer,
        "[routes.domains.\"insecure.test\"]\nmx = true\ndane = \"required\"",
    );
    submit(&server, "bob@insecure.test");
    let log = wait_log(&server, "enhanced=4.7.5");
    assert!(log.contains("DANE is required"), "{log}");
    assert_eq!(peer.transcript().sessions, 0);
}

/// A smarthost `relay.<domain>.test` on the peer's port with `dane = "required"`; `tlsa` are the
/// zone lines for its TLSA records.
fn relay_zone(domain: &str, tlsa: Vec<String>) -> SignedZone {
    let mut signed = vec![format!("relay.{domain} IN A 127.0.0.1")];
    signed.extend(tlsa);
    SignedZone::start(Zones {
        signed,
        unsigned: vec![],
        corrupt_tlsa: vec![],
    })
}

fn relay_routes(domain: &str, peer: &Peer) -> String {
    format!(
        "smarthost = {{ host = \"relay.{domain}.test\", port = {}, tls = \"required\", dane = \"required\" }}",
        peer.addr.port()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_relay_match_delivers_over_authenticated_tls() {
    need_bind!();
    let leaf = self_signed(&["relay.rly.test"]);
    let peer = peer(&leaf).await;
    let rdata = format!("3 1 1 {}", hex(&sha256(&leaf.spki)));
    let zone = relay_zone(
        "rly",
        vec![format!(
            "_{}._tcp.relay.rly IN TLSA {rdata}",
            peer.addr.port()
        )],
    );
    let server = mailwit(&zone, &peer, &relay_routes("rly", &peer));
    submit(&server, "carol@elsewhere.example");
    let m = wait_delivered(&peer, &server);
    assert!(m.tls);
    assert!(
        server
            .log()
            .contains("DANE: TLS authenticated by TLSA records")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_relay_mismatch_defers_without_sending() {
    need_bind!();
    let leaf = self_signed(&["relay.rly.test"]);
    let other = self_signed(&["relay.rly.test"]);
    let peer = peer(&leaf).await;
    let rdata = format!("3 1 1 {}", hex(&sha256(&other.spki)));
    let zone = relay_zone(
        "rly",
        vec![format!(
            "_{}._tcp.relay.rly IN TLSA {rdata}",
            peer.addr.port()
        )],
    );
    let server = mailwit(&zone, &peer, &relay_routes("rly", &peer));
    submit(&server, "carol@elsewhere.example");
    let log = wait_log(&server, "enhanced=4.7.5");
    assert!(log.contains("tlsa-invalid"), "{log}");
    let t = peer.transcript();
    assert!(t.commands.iter().any(|c| c == "STARTTLS"), "{t:?}");
    assert!(!t.commands.iter().any(|c| c.starts_with("MAIL")), "{t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_relay_tlsa_through_a_cname_is_followed() {
    need_bind!();
    let leaf = self_signed(&["relay.cn.test"]);
    let peer = peer(&leaf).await;
    let port = peer.addr.port();
    let rdata = format!("3 1 1 {}", hex(&sha256(&leaf.spki)));
    // The relay's TLSA owner is an alias of a TLSA RRset kept elsewhere (RFC 7671 §7).
    let zone = relay_zone(
        "cn",
        vec![
            format!("_{port}._tcp.relay.cn IN CNAME _{port}._tcp.keys.cn"),
            format!("_{port}._tcp.keys.cn IN TLSA {rdata}"),
        ],
    );
    let server = mailwit(&zone, &peer, &relay_routes("cn", &peer));
    submit(&server, "carol@elsewhere.example");
    let m = wait_delivered(&peer, &server);
    assert!(m.tls);
    assert!(
        server
            .log()
            .contains("DANE: TLS authenticated by TLSA records")
    );
}
