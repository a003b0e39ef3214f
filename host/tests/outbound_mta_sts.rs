//! MTA-STS (RFC 8461) through the real binary: BIND serves the `_mta-sts` TXT, MX and address
//! records, an in-test HTTPS server (certificate from a test CA, given to mailwit as
//! `[mta_sts] ca_file`) serves the policy, and SMTP peers present good or wrong-name certificates.
//!
//! | row | policy | peer certificate | expected |
//! |---|---|---|---|
//! | enforce ok | enforce, mx matches | valid for the MX name | delivered over TLS |
//! | name mismatch | enforce | for another name | deferred 4.7.5, no MAIL |
//! | MX not in policy | enforce, mx lists another host | valid | deferred 4.7.5, host not contacted |
//! | policy fetch failure | HTTP 404, nothing cached | wrong name | delivered (as without policy) |
//! | testing | testing | wrong name | delivered, refusal logged |
//! | cached while the HTTPS server is down | enforce, cached on disk | valid | delivered, no fetch |
//! | background refresh | enforce, max_age 4 s, refresh_interval 1 s | valid | refetched with no mail sent; cache expiry moves on |
//! | new policy id | enforce listing the MX, then a new id in the TXT record with a policy listing another host | valid | the refresh fetches it with no mail sent; the next mail is deferred 4.7.5 without a fetch or a session |

use crate::support;

use std::time::Duration;

use support::peer::{PeerOptions, ScriptedPeer as Peer, TestCa};
use support::tls::{HttpsServer, Leaf, Pki, SignedZone, Validity, Zones};
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

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// `sts.test`: MX mx.sts.test, the policy host mta-sts.sts.test, both on 127.0.0.1.
fn zone() -> SignedZone {
    SignedZone::start(Zones {
        signed: vec![
            "sts IN MX 10 mx.sts".into(),
            "mx.sts IN A 127.0.0.1".into(),
            "mta-sts.sts IN A 127.0.0.1".into(),
            "_mta-sts.sts IN TXT \"v=STSv1; id=20261201T000000;\"".into(),
        ],
        unsigned: vec![],
        corrupt_tlsa: vec![],
    })
}

struct Setup {
    pki: Pki,
    dir: tempfile::TempDir,
    zone: SignedZone,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            pki: Pki::new("STS test CA"),
            dir: tempfile::tempdir().unwrap(),
            zone: zone(),
        }
    }

    async fn policy_host(&self, status: &str, body: &str) -> HttpsServer {
        let leaf = self.pki.leaf(&["mta-sts.sts.test"], Validity::Current);
        HttpsServer::start(&leaf, status, body).await
    }

    fn mailwit(&self, https: &HttpsServer, peer: &Peer) -> TestServer {
        self.mailwit_with(https, peer, "")
    }

    /// `sts_extra`: more `[mta_sts]` keys.
    fn mailwit_with(&self, https: &HttpsServer, peer: &Peer, sts_extra: &str) -> TestServer {
        let ca = self.pki.ca_file(self.dir.path());
        TestServer::with_config(&support::config(
            "",
            &format!(
                "{dns}\n[mta_sts]\nca_file = \"{ca}\"\nhttps_port = {https}\ntimeout = \"10s\"\n\
                 {sts_extra}\n[queue]\nmx_port = {port}\nretry_first = \"1s\"\nretry_max = \"2s\"\n\
                 client_timeout = \"30s\"\n",
                dns = self.zone.dns_config(),
                ca = ca.display(),
                https = https.addr.port(),
                port = peer.addr.port(),
            ),
        ))
    }
}

fn submit(server: &TestServer) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(
        ALICE,
        &["bob@sts.test"],
        &support::message("sts", "Hi.\r\n"),
    );
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

fn wait_delivered(peer: &Peer, server: &TestServer, count: usize) -> support::peer::Received {
    let deadline = std::time::Instant::now() + support::PATIENCE;
    loop {
        let messages = peer.transcript().messages;
        if messages.len() >= count {
            return messages[count - 1].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing delivered:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
async fn sts_enforce_delivers_to_a_verified_listed_host() {
    need_bind!();
    let s = Setup::new();
    let https = s
        .policy_host("200 OK", &policy("enforce", "mx.sts.test"))
        .await;
    let peer = peer(&s.pki.leaf(&["mx.sts.test"], Validity::Current)).await;
    let server = s.mailwit(&https, &peer);
    submit(&server);
    let m = wait_delivered(&peer, &server, 1);
    assert!(m.tls);
    assert_eq!(https.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Cached on disk, keyed by the policy id.
    let cached = std::fs::read_to_string(server.state_dir().join("mta-sts/sts.test.json")).unwrap();
    assert!(cached.contains("20261201T000000"), "{cached}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_enforce_refuses_a_certificate_for_another_name() {
    need_bind!();
    let s = Setup::new();
    let https = s
        .policy_host("200 OK", &policy("enforce", "mx.sts.test"))
        .await;
    let peer = peer(&s.pki.leaf(&["other.test"], Validity::Current)).await;
    let server = s.mailwit(&https, &peer);
    submit(&server);
    let log = wait_log(&server, "enhanced=4.7.5");
    assert!(log.contains("certificate-host-mismatch"), "{log}");
    let t = peer.transcript();
    assert!(!t.commands.iter().any(|c| c.starts_with("MAIL")), "{t:?}");
    assert_eq!(server.spooled().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_enforce_skips_mx_hosts_the_policy_does_not_list() {
    need_bind!();
    let s = Setup::new();
    let https = s
        .policy_host("200 OK", &policy("enforce", "*.elsewhere.test"))
        .await;
    let peer = peer(&s.pki.leaf(&["mx.sts.test"], Validity::Current)).await;
    let server = s.mailwit(&https, &peer);
    submit(&server);
    let log = wait_log(&server, "enhanced=4.7.5");
    assert!(log.contains("matches its MTA-STS policy"), "{log}");
    assert_eq!(peer.transcript().sessions, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_policy_fetch_failure_delivers_as_without_a_policy() {
    need_bind!();
    let s = Setup::new();
    let https = s.policy_host("404 Not Found", "no policy here").await;
    let peer = peer(&s.pki.leaf(&["other.test"], Validity::Current)).await;
    let server = s.mailwit(&https, &peer);
    submit(&server);
    let m = wait_delivered(&peer, &server, 1);
    assert!(m.tls, "opportunistic TLS");
    let log = server.log();
    assert!(log.contains("sts-policy-fetch-error"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_testing_mode_delivers_and_logs_the_refusal() {
    need_bind!();
    let s = Setup::new();
    let https = s
        .policy_host("200 OK", &policy("testing", "mx.sts.test"))
        .await;
    let peer = peer(&s.pki.leaf(&["other.test"], Validity::Current)).await;
    let server = s.mailwit(&https, &peer);
    submit(&server);
    let m = wait_delivered(&peer, &server, 1);
    assert!(m.tls);
    let log = server.log();
    assert!(log.contains("MTA-STS testing"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_cached_policy_applies_while_the_policy_host_is_down() {
    need_bind!();
    let s = Setup::new();
    let https = s
        .policy_host("200 OK", &policy("enforce", "mx.sts.test"))
        .await;
    let peer = peer(&s.pki.leaf(&["mx.sts.test"], Validity::Current)).await;
    let mut server = s.mailwit(&https, &peer);
    submit(&server);
    wait_delivered(&peer, &server, 1);
    // The policy host goes away; mailwit restarts with only its disk cache.
    https.stop();
    server.terminate();
    server.spawn();
    submit(&server);
    let m = wait_delivered(&peer, &server, 2);
    assert!(m.tls);
    let log = server.log();
    assert!(log.contains("MTA-STS: policy from cache"), "{log}");
    assert!(!log.contains("policy fetch failed"), "{log}");
    assert_eq!(https.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_policy_is_refreshed_in_the_background_before_max_age_runs_out() {
    need_bind!();
    let setup = Setup::new();
    let https = setup
        .policy_host(
            "200 OK",
            "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 4\r\n",
        )
        .await;
    let leaf = setup.pki.leaf(&["mx.sts.test"], Validity::Current);
    let peer = peer(&leaf).await;
    let server = setup.mailwit_with(&https, &peer, "refresh_interval = \"1s\"");
    submit(&server);
    wait_delivered(&peer, &server, 1);
    let cache = server.state_dir().join("mta-sts").join("sts.test.json");
    let expiry = |path: &std::path::Path| -> u64 {
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["expires_ms"].as_u64().unwrap()
    };
    let first = expiry(&cache);
    let fetches = https.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(fetches >= 1, "the delivery fetched the policy");
    // No more mail: only the background refresh fetches, each time the policy has used up half
    // its max_age; every fetch moves the cached expiry on.
    let log = wait_log(&server, "MTA-STS: policy refreshed in the background");
    assert!(log.contains("id=20261201T000000"), "{log}");
    let deadline = std::time::Instant::now() + support::PATIENCE;
    while https.requests.load(std::sync::atomic::Ordering::SeqCst) < fetches + 2 {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(expiry(&cache) > first);
    assert_eq!(peer.transcript().messages.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_new_policy_id_is_fetched_in_the_background_and_governs_the_next_delivery() {
    need_bind!();
    // The TXT record changes mid-test: a 1 s TTL so no resolver cache keeps the old id.
    let records = |id: &str| -> Vec<String> {
        vec![
            "sts IN MX 10 mx.sts".into(),
            "mx.sts IN A 127.0.0.1".into(),
            "mta-sts.sts IN A 127.0.0.1".into(),
            format!("_mta-sts.sts 1 IN TXT \"v=STSv1; id={id};\""),
        ]
    };
    let s = Setup {
        pki: Pki::new("STS test CA"),
        dir: tempfile::tempdir().unwrap(),
        zone: SignedZone::start(Zones {
            signed: records("policy1"),
            unsigned: vec![],
            corrupt_tlsa: vec![],
        }),
    };
    let https = s
        .policy_host("200 OK", &policy("enforce", "mx.sts.test"))
        .await;
    let peer = peer(&s.pki.leaf(&["mx.sts.test"], Validity::Current)).await;
    let server = s.mailwit_with(&https, &peer, "refresh_interval = \"1s\"");
    submit(&server);
    assert!(wait_delivered(&peer, &server, 1).tls);

    // The domain publishes a new policy, which no longer lists mx.sts.test.
    https.set_response("200 OK", &policy("enforce", "*.elsewhere.test"));
    s.zone.update(&records("policy2"));
    let log = wait_log(&server, "previous=policy1");
    assert!(
        log.contains("MTA-STS: policy refreshed in the background") && log.contains("id=policy2"),
        "{log}"
    );
    let fetches = https.requests.load(std::sync::atomic::Ordering::SeqCst);
    let cached = std::fs::read_to_string(server.state_dir().join("mta-sts/sts.test.json")).unwrap();
    assert!(
        cached.contains("policy2") && cached.contains("elsewhere"),
        "{cached}"
    );

    // The next mail is governed by the new policy, taken from the cache.
    submit(&server);
    let log = wait_log(&server, "matches its MTA-STS policy");
    assert!(log.contains("enhanced=4.7.5"), "{log}");
    assert_eq!(
        peer.transcript().sessions,
        1,
        "mx.sts.test not contacted again"
    );
    assert_eq!(peer.transcript().messages.len(), 1);
    assert_eq!(
        https.requests.load(std::sync::atomic::Ordering::SeqCst),
        fetches,
        "no fetch at delivery: the refresh had it"
    );
}
