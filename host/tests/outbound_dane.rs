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

use support::TestServer;
use support::peer::{PeerOptions, ScriptedPeer as Peer};
use support::tls::{Leaf, Pki, SignedZone, Validity, Zones, hex, self_signed, sha256};
use support::tls_peer::{assert_refused_after_starttls, first_delivered, starttls_peer};

async fn peer(leaf: &Leaf) -> Peer {
    starttls_peer(leaf, PeerOptions::default()).await
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
    support::tls_peer::submit(server, to, "dane", "Hi.\r\n");
}

/// Asserts that the message reached the peer over TLS that DANE authenticated.
fn assert_delivered_with_dane(peer: &Peer, server: &TestServer) {
    let m = first_delivered(peer, server);
    assert!(m.tls);
    assert!(
        server
            .log()
            .contains("DANE: TLS authenticated by TLSA records")
    );
}

/// MX and address records of `domain` (relative to `test.`) pointing at 127.0.0.1.
fn mx_records(domain: &str) -> Vec<String> {
    vec![
        format!("{domain} IN MX 10 mx.{domain}"),
        format!("mx.{domain} IN A 127.0.0.1"),
    ]
}

/// DANE-EE(3), SPKI(1), SHA2-256(1) of `leaf`'s key: TLSA record data.
fn ee_rdata(leaf: &Leaf) -> String {
    format!("3 1 1 {}", hex(&sha256(&leaf.spki)))
}

fn tlsa(domain: &str, port: u16, rdata: &str) -> String {
    format!("_{port}._tcp.mx.{domain} IN TLSA {rdata}")
}

/// The signed zone with `domain`'s MX host publishing the TLSA record `rdata` for `port`.
fn mx_zone(domain: &str, port: u16, rdata: &str) -> Zones {
    let mut signed = mx_records(domain);
    signed.push(tlsa(domain, port, rdata));
    Zones::signed(signed)
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
    let rdata = ee_rdata(&leaf);
    let zone = SignedZone::start(mx_zone("dane", peer.addr.port(), &rdata));
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@dane.test");
    assert_delivered_with_dane(&peer, &server);
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_ta_match_delivers_over_authenticated_tls() {
    need_bind!();
    let pki = Pki::new("DANE TA");
    let leaf = pki.leaf(&["mx.ta.test"], Validity::Current);
    let peer = peer(&leaf).await;
    let rdata = format!("2 0 1 {}", hex(&sha256(&pki.ca_der)));
    let zone = SignedZone::start(mx_zone("ta", peer.addr.port(), &rdata));
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@ta.test");
    assert_delivered_with_dane(&peer, &server);
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_mismatch_defers_without_sending() {
    need_bind!();
    let leaf = self_signed(&["mx.dane.test"]);
    let other = self_signed(&["mx.dane.test"]);
    let peer = peer(&leaf).await;
    let rdata = ee_rdata(&other);
    let zone = SignedZone::start(mx_zone("dane", peer.addr.port(), &rdata));
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@dane.test");
    assert_refused_after_starttls(&peer, &server, "tlsa-invalid");
    assert_eq!(server.spooled().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_bogus_signature_defers_without_contacting_the_host() {
    need_bind!();
    let leaf = self_signed(&["mx.bogus.test"]);
    let peer = peer(&leaf).await;
    let rdata = ee_rdata(&leaf);
    let owner = format!("_{}._tcp.mx.bogus", peer.addr.port());
    let zone = SignedZone::start(Zones {
        corrupt_tlsa: vec![owner],
        ..mx_zone("bogus", peer.addr.port(), &rdata)
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@bogus.test");
    let log = server.wait_log("enhanced=4.7.5");
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
    let rdata = ee_rdata(&other);
    let child = vec![
        "@ IN MX 10 mx".to_string(),
        "mx IN A 127.0.0.1".to_string(),
        format!("_{}._tcp.mx IN TLSA {rdata}", peer.addr.port()),
    ];
    let zone = SignedZone::start(Zones {
        unsigned: vec![("insecure".into(), child)],
        ..Zones::default()
    });
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@insecure.test");
    let m = first_delivered(&peer, &server);
    assert!(m.tls, "opportunistic TLS is still used");
    assert!(!server.log().contains("DANE: TLS authenticated"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_unusable_tlsa_falls_back_to_opportunistic_tls() {
    need_bind!();
    let leaf = self_signed(&["mx.pkix.test"]);
    let peer = peer(&leaf).await;
    // PKIX-EE(1): not usable for SMTP (RFC 7672 §3.1.3).
    let rdata = format!("1 1 1 {}", hex(&sha256(&leaf.spki)));
    let zone = SignedZone::start(mx_zone("pkix", peer.addr.port(), &rdata));
    let server = mailwit(&zone, &peer, "");
    submit(&server, "bob@pkix.test");
    let m = first_delivered(&peer, &server);
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
        unsigned: vec![("insecure".into(), child)],
        ..Zones::default()
    });
    let server = mailwit(
        &zone,
        &peer,
        "[routes.domains.\"insecure.test\"]\nmx = true\ndane = \"required\"",
    );
    submit(&server, "bob@insecure.test");
    let log = server.wait_log("enhanced=4.7.5");
    assert!(log.contains("DANE is required"), "{log}");
    assert_eq!(peer.transcript().sessions, 0);
}

/// A smarthost `relay.<domain>.test` on the peer's port with `dane = "required"`; `tlsa` are the
/// zone lines for its TLSA records.
fn relay_zone(domain: &str, tlsa: Vec<String>) -> SignedZone {
    let mut signed = vec![format!("relay.{domain} IN A 127.0.0.1")];
    signed.extend(tlsa);
    SignedZone::start(Zones::signed(signed))
}

fn relay_routes(domain: &str, peer: &Peer) -> String {
    format!(
        "smarthost = {{ host = \"relay.{domain}.test\", port = {}, tls = \"required\", dane = \"required\" }}",
        peer.addr.port()
    )
}

/// Alice's message to a remote address through the smarthost `relay.<domain>.test` (`dane =
/// "required"`), a peer presenting `leaf`; `tlsa(port)` are the zone lines of its TLSA records.
async fn relay_through(
    domain: &str,
    leaf: &Leaf,
    tlsa: impl FnOnce(u16) -> Vec<String>,
) -> (Peer, SignedZone, TestServer) {
    let peer = peer(leaf).await;
    let zone = relay_zone(domain, tlsa(peer.addr.port()));
    let server = mailwit(&zone, &peer, &relay_routes(domain, &peer));
    submit(&server, "carol@elsewhere.example");
    (peer, zone, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_relay_match_delivers_over_authenticated_tls() {
    need_bind!();
    let leaf = self_signed(&["relay.rly.test"]);
    let rdata = ee_rdata(&leaf);
    let (peer, _zone, server) = relay_through("rly", &leaf, |port| {
        vec![format!("_{port}._tcp.relay.rly IN TLSA {rdata}")]
    })
    .await;
    assert_delivered_with_dane(&peer, &server);
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_relay_mismatch_defers_without_sending() {
    need_bind!();
    let leaf = self_signed(&["relay.rly.test"]);
    let other = self_signed(&["relay.rly.test"]);
    let rdata = ee_rdata(&other);
    let (peer, _zone, server) = relay_through("rly", &leaf, |port| {
        vec![format!("_{port}._tcp.relay.rly IN TLSA {rdata}")]
    })
    .await;
    assert_refused_after_starttls(&peer, &server, "tlsa-invalid");
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_relay_tlsa_through_a_cname_is_followed() {
    need_bind!();
    let leaf = self_signed(&["relay.cn.test"]);
    let rdata = ee_rdata(&leaf);
    // The relay's TLSA owner is an alias of a TLSA RRset kept elsewhere (RFC 7671 §7).
    let (peer, _zone, server) = relay_through("cn", &leaf, |port| {
        vec![
            format!("_{port}._tcp.relay.cn IN CNAME _{port}._tcp.keys.cn"),
            format!("_{port}._tcp.keys.cn IN TLSA {rdata}"),
        ]
    })
    .await;
    assert_delivered_with_dane(&peer, &server);
}
