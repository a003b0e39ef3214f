//! SMTP TLS reporting (RFC 8460) through the real binary. BIND serves a signed zone with the
//! destination's MX, TLSA and `_smtp._tls` TXT records; mailwit records each MX session's TLS
//! result in `<state>/tls-rpt` and, when the (test-short) period ends, sends the aggregate report.
//!
//! | row | sessions | rua | expected |
//! |---|---|---|---|
//! | mail report | 2 × (mx1: TLSA mismatch, then mx2: DANE ok) | mailto: a local mailbox | multipart/report mail with RFC headers; JSON: tlsa-invalid × 2 for mx1, 2 successes for mx2 |
//! | https report | 1 DANE ok | https: an in-test HTTPS server | POST application/tlsrpt+gzip; JSON with every RFC field |
//! | restart | 1 DANE ok, then kill -9 before the period ends (restart with a shorter period) | mailto: | the report after the restart still counts it |
//! | STS testing | 1 session, MTA-STS `testing`, certificate for another name | mailto: | delivered; reported as 1 failure, certificate-host-mismatch, 0 successes |
//! | STS testing, MX not listed | 1 session, `testing` policy listing another host, good certificate | mailto: | delivered; 1 failure, validation-failure |
//! | upload retry | 1 session | https: endpoint down, then up | report kept in the outbox, posted once when up |
//! | kill with the report queued | 1 session | mailto: via a relay that is down, kill -9, restart, relay up | exactly one report arrives |

use crate::support;

use std::io::Read;

use mail_parser::MimeHeaders;

use support::https_collector::HttpsCollector;
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

macro_rules! need_bind {
    () => {
        if !support::tls::have_bind() {
            eprintln!("skipped: BIND (Debian bind9, bind9-utils) is not installed");
            return;
        }
    };
}

fn mailwit(zone: &SignedZone, peer: &Peer, tls_rpt: &str) -> TestServer {
    TestServer::with_config(&support::config(
        "",
        &format!(
            "{dns}\n[queue]\nmx_port = {port}\nretry_first = \"1s\"\nretry_max = \"2s\"\n\
             client_timeout = \"30s\"\n[tls_rpt]\nenabled = true\norganization = \"Test Org\"\n\
             contact = \"tls-reports@example.test\"\n{tls_rpt}\n",
            dns = zone.dns_config(),
            port = peer.addr.port(),
        ),
    ))
}

/// `<label>.test`, signed: one MX on 127.0.0.1 (`extra` adds records such as its TLSA) and a
/// `_smtp._tls` record whose rua is `https://reports.<label>.test:<port_and_path>`; mailwit is
/// started on it, reporting every 2 s and trusting `pki` for the upload. The zone and the CA
/// file's directory must live as long as the server.
fn https_reporting_domain(
    label: &str,
    port_and_path: &str,
    extra: Vec<String>,
    peer: &Peer,
    pki: &Pki,
) -> (SignedZone, TestServer, tempfile::TempDir) {
    let mut signed = vec![
        format!("{label} IN MX 10 mx.{label}"),
        format!("mx.{label} IN A 127.0.0.1"),
        format!("reports.{label} IN A 127.0.0.1"),
        format!(
            "_smtp._tls.{label} IN TXT \"v=TLSRPTv1; rua=https://reports.{label}.test:{port_and_path}\""
        ),
    ];
    signed.extend(extra);
    let zone = SignedZone::start(Zones {
        signed,
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file(dir.path());
    let server = mailwit(
        &zone,
        peer,
        &format!("interval = \"2s\"\nca_file = \"{}\"", ca.display()),
    );
    (zone, server, dir)
}

fn submit(server: &TestServer, to: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(ALICE, &[to], &support::message("tls-rpt", "Hi.\r\n"));
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

fn wait_delivered(peer: &Peer, server: &TestServer, count: usize) {
    support::until_blocking(
        &format!("{count} messages at the peer"),
        || server.log(),
        || peer.transcript().messages.len() >= count,
    );
}

fn gunzip(bytes: &[u8]) -> serde_json::Value {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .expect("gzip");
    serde_json::from_slice(&json).expect("report JSON")
}

/// The report mails in `address`'s Maildir: (raw message, decompressed JSON).
fn report_mails(
    server: &TestServer,
    address: &str,
) -> Vec<(mail_parser::Message<'static>, serde_json::Value)> {
    let mut out = Vec::new();
    for path in server.maildir(address) {
        let raw = std::fs::read(&path).unwrap();
        let message = mail_parser::MessageParser::default()
            .parse(&raw)
            .unwrap()
            .into_owned();
        let Some(part) = message.attachment(0) else {
            continue;
        };
        let ctype = part.content_type().unwrap();
        assert_eq!(
            (ctype.ctype(), ctype.subtype()),
            ("application", Some("tlsrpt+gzip"))
        );
        let json = gunzip(part.contents());
        out.push((message, json));
    }
    out
}

/// Sums over reports: (successes, failures by result type) of the policies naming `mx`.
/// The JSON of the report mails in bob's Maildir (the reports' rua in these tests).
fn report_json(server: &TestServer) -> Vec<serde_json::Value> {
    report_mails(server, "bob@example.test")
        .into_iter()
        .map(|(_, j)| j)
        .collect()
}

/// A failed wait's context: the reports so far, then the server's log.
fn reports_so_far(server: &TestServer) -> String {
    format!(
        "reports so far: {:#?}\n{}",
        report_json(server),
        server.log()
    )
}

fn counts(reports: &[serde_json::Value], mx: &str) -> (u64, Vec<(String, u64)>) {
    let (mut ok, mut failed) = (0, Vec::new());
    for report in reports {
        for p in report["policies"].as_array().unwrap() {
            let hosts = p["policy"]["mx-host"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !hosts.iter().any(|h| h == mx) {
                continue;
            }
            ok += p["summary"]["total-successful-session-count"]
                .as_u64()
                .unwrap();
            for d in p["failure-details"].as_array().cloned().unwrap_or_default() {
                failed.push((
                    d["result-type"].as_str().unwrap().to_string(),
                    d["failed-session-count"].as_u64().unwrap(),
                ));
            }
        }
    }
    (ok, failed)
}

/// Every field RFC 8460 §4 requires of a report, with the types it gives.
fn check_report_fields(report: &serde_json::Value) {
    assert_eq!(report["organization-name"], "Test Org");
    assert_eq!(report["contact-info"], "tls-reports@example.test");
    assert!(!report["report-id"].as_str().unwrap().is_empty());
    for field in ["start-datetime", "end-datetime"] {
        let text = report["date-range"][field].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339 date-time");
        assert!(text.ends_with('Z'), "{text}");
    }
    for p in report["policies"].as_array().unwrap() {
        let kind = p["policy"]["policy-type"].as_str().unwrap();
        assert!(["tlsa", "sts", "no-policy-found"].contains(&kind), "{kind}");
        assert!(p["policy"]["policy-domain"].is_string());
        assert!(p["summary"]["total-successful-session-count"].is_u64());
        assert!(p["summary"]["total-failure-session-count"].is_u64());
        let failed: u64 = p["failure-details"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|f| f["failed-session-count"].as_u64().unwrap())
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(
            failed,
            p["summary"]["total-failure-session-count"]
                .as_u64()
                .unwrap()
        );
        for d in p["failure-details"].as_array().cloned().unwrap_or_default() {
            assert!(d["result-type"].is_string());
            assert!(d["receiving-mx-hostname"].is_string());
            d["sending-mta-ip"]
                .as_str()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .unwrap();
            d["receiving-ip"]
                .as_str()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failures_and_successes_are_reported_by_mail() {
    need_bind!();
    let leaf = self_signed(&["mx2.rpt.test"]);
    let other = self_signed(&["mx1.rpt.test"]);
    let peer = peer(&leaf).await;
    let port = peer.addr.port();
    let good = format!("3 1 1 {}", hex(&sha256(&leaf.spki)));
    let bad = format!("3 1 1 {}", hex(&sha256(&other.spki)));
    let zone = SignedZone::start(Zones {
        signed: vec![
            "rpt IN MX 10 mx1.rpt".into(),
            "rpt IN MX 20 mx2.rpt".into(),
            "mx1.rpt IN A 127.0.0.1".into(),
            "mx2.rpt IN A 127.0.0.1".into(),
            format!("_{port}._tcp.mx1.rpt IN TLSA {bad}"),
            format!("_{port}._tcp.mx2.rpt IN TLSA {good}"),
            "_smtp._tls.rpt IN TXT \"v=TLSRPTv1; rua=mailto:bob@example.test\"".into(),
        ],
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    // The report mail is DKIM-signed with the key of its From domain (RFC 8460 §5.3).
    let server = mailwit(
        &zone,
        &peer,
        "interval = \"2s\"\n[[dkim.sign]]\ndomain = \"example.test\"\nselector = \"rpt\"\n\
         algorithm = \"ed25519\"",
    );
    submit(&server, "carol@rpt.test");
    wait_delivered(&peer, &server, 1);
    submit(&server, "dave@rpt.test");
    wait_delivered(&peer, &server, 2);

    // Sessions may straddle two periods: sum the reports until every session is counted.
    let mails = support::until_some(
        "reports that count all four sessions",
        || reports_so_far(&server),
        || {
            let mails = report_mails(&server, "bob@example.test");
            let json: Vec<_> = mails.iter().map(|(_, j)| j.clone()).collect();
            let (ok1, failed1) = counts(&json, "mx1.rpt.test");
            let (ok2, failed2) = counts(&json, "mx2.rpt.test");
            let tlsa_invalid: u64 = failed1
                .iter()
                .filter(|(t, _)| t == "tlsa-invalid")
                .map(|(_, n)| n)
                .sum();
            if tlsa_invalid < 2 || ok2 < 2 {
                return None;
            }
            assert_eq!((ok1, tlsa_invalid), (0, 2), "{json:#?}");
            assert_eq!((ok2, failed2.len()), (2, 0), "{json:#?}");
            Some(mails)
        },
    );
    for (message, json) in &mails {
        check_report_fields(json);
        let report_id = json["report-id"].as_str().unwrap();
        assert_eq!(
            message.subject().unwrap(),
            format!(
                "Report Domain: rpt.test Submitter: mail.example.test Report-ID: <{report_id}>"
            )
        );
        assert_eq!(
            message.header_raw("TLS-Report-Domain").unwrap().trim(),
            "rpt.test"
        );
        let signature = message.header_raw("DKIM-Signature").unwrap_or_default();
        assert!(
            signature.contains("d=example.test") && signature.contains("s=rpt"),
            "report mail not signed: {signature:?}"
        );
        assert_eq!(
            message.header_raw("TLS-Report-Submitter").unwrap().trim(),
            "mail.example.test"
        );
        let ctype = message.content_type().unwrap();
        assert_eq!(
            (ctype.ctype(), ctype.subtype()),
            ("multipart", Some("report"))
        );
        assert_eq!(ctype.attribute("report-type"), Some("tlsrpt"));
        let name = message.attachment(0).unwrap().attachment_name().unwrap();
        assert!(name.starts_with("mail.example.test!rpt.test!"), "{name}");
        assert!(name.ends_with(".json.gz"), "{name}");
        for p in json["policies"].as_array().unwrap() {
            assert_eq!(p["policy"]["policy-type"], "tlsa");
            assert_eq!(p["policy"]["policy-domain"], "rpt.test");
            let record = p["policy"]["policy-string"][0]
                .as_str()
                .unwrap()
                .to_ascii_lowercase();
            assert!(record == good || record == bad, "{record}");
            for d in p["failure-details"].as_array().cloned().unwrap_or_default() {
                assert_eq!(d["receiving-mx-hostname"], "mx1.rpt.test");
                assert_eq!(d["receiving-ip"], "127.0.0.1");
                assert_eq!(d["sending-mta-ip"], "127.0.0.1");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_are_posted_to_https_rua() {
    need_bind!();
    let leaf = self_signed(&["mx.rpt2.test"]);
    let peer = peer(&leaf).await;
    let port = peer.addr.port();
    let pki = Pki::new("TLS-RPT endpoint CA");
    let collector =
        HttpsCollector::start(&pki.leaf(&["reports.rpt2.test"], Validity::Current)).await;
    let good = format!("3 1 1 {}", hex(&sha256(&leaf.spki)));
    let tlsa = format!("_{port}._tcp.mx.rpt2 IN TLSA {good}");
    let rua = format!("{}/v1/tlsrpt", collector.addr.port());
    let (_zone, server, _ca_dir) = https_reporting_domain("rpt2", &rua, vec![tlsa], &peer, &pki);
    submit(&server, "carol@rpt2.test");
    wait_delivered(&peer, &server, 1);
    let reports = support::until_some(
        "a report posted",
        || server.log(),
        || {
            let posted = collector.posted();
            let reports: Vec<_> = posted.iter().map(|p| gunzip(&p.body)).collect();
            if counts(&reports, "mx.rpt2.test").0 == 0 {
                return None;
            }
            for p in &posted {
                assert!(
                    p.head.starts_with("POST /v1/tlsrpt HTTP/1.1\r\n"),
                    "{}",
                    p.head
                );
                assert!(
                    p.head
                        .to_ascii_lowercase()
                        .contains("\r\ncontent-type: application/tlsrpt+gzip"),
                    "{}",
                    p.head
                );
            }
            Some(reports)
        },
    );
    assert_eq!(counts(&reports, "mx.rpt2.test"), (1, vec![]));
    for report in &reports {
        check_report_fields(report);
        assert_eq!(
            report["policies"][0]["policy"]["policy-domain"],
            "rpt2.test"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_sessions_survive_a_kill() {
    need_bind!();
    let leaf = self_signed(&["mx.rpt3.test"]);
    let peer = peer(&leaf).await;
    let port = peer.addr.port();
    let good = format!("3 1 1 {}", hex(&sha256(&leaf.spki)));
    let zone = SignedZone::start(Zones {
        signed: vec![
            "rpt3 IN MX 10 mx.rpt3".into(),
            "mx.rpt3 IN A 127.0.0.1".into(),
            format!("_{port}._tcp.mx.rpt3 IN TLSA {good}"),
            "_smtp._tls.rpt3 IN TXT \"v=TLSRPTv1; rua=mailto:bob@example.test\"".into(),
        ],
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    // A period that cannot end before the kill; the restart shortens it, so the period logged
    // before the kill has ended by then and is reported from what survived on disk.
    let mut server = mailwit(&zone, &peer, "interval = \"1d\"");
    submit(&server, "carol@rpt3.test");
    wait_delivered(&peer, &server, 1);
    let log_dir = server.state_dir().join("tls-rpt");
    support::until_blocking(
        "a session log",
        || server.log(),
        || std::fs::read_dir(&log_dir).map(|d| d.count()).unwrap_or(0) > 0,
    );
    assert!(report_mails(&server, "bob@example.test").is_empty());
    server.kill();
    let config = std::fs::read_to_string(&server.config_path).unwrap();
    std::fs::write(
        &server.config_path,
        config.replace("interval = \"1d\"", "interval = \"2s\""),
    )
    .unwrap();
    server.spawn();
    let json = support::until_some(
        "a report after the restart",
        || server.log(),
        || {
            let json = report_json(&server);
            (counts(&json, "mx.rpt3.test").0 >= 1).then_some(json)
        },
    );
    assert_eq!(counts(&json, "mx.rpt3.test"), (1, vec![]));
}

/// RFC 8460 §4.3 with RFC 8461 §5: under an MTA-STS `testing` policy the mail goes through, and
/// the session the policy would have refused is still reported as a failure with its result
/// type (that is what testing mode is for), not as a success.
#[tokio::test(flavor = "multi_thread")]
async fn sts_testing_mode_failures_are_reported_as_failures() {
    need_bind!();
    // Trusted CA, wrong name: an enforced policy would refuse it (certificate-host-mismatch).
    sts_testing_report("mx.stsr.test", "other.test", "certificate-host-mismatch").await;
}

/// The same for an MX host the `testing` policy does not list (its certificate is fine):
/// enforce would skip the host; testing delivers and reports `validation-failure`.
#[tokio::test(flavor = "multi_thread")]
async fn sts_testing_mode_reports_an_mx_host_the_policy_does_not_list() {
    need_bind!();
    sts_testing_report("*.elsewhere.test", "mx.stsr.test", "validation-failure").await;
}

/// Delivers one message to stsr.test (MX mx.stsr.test) under the policy `mode: testing`, `mx:
/// policy_mx`, the peer presenting a certificate for `cert_name` from a trusted CA, and checks
/// the report: 0 successes, 1 failure of `result_type`.
async fn sts_testing_report(policy_mx: &str, cert_name: &str, result_type: &str) {
    let pki = Pki::new("STS testing CA");
    let leaf = pki.leaf(&[cert_name], Validity::Current);
    let peer = Peer::start(PeerOptions {
        extensions: vec!["PIPELINING".into()],
        tls: Some(TestCa {
            ca_der: pki.ca_der.clone(),
            server: leaf.server_config(),
        }),
        ..PeerOptions::default()
    })
    .await;
    let policy_host = support::tls::HttpsServer::start(
        &pki.leaf(&["mta-sts.stsr.test"], Validity::Current),
        "200 OK",
        &format!("version: STSv1\r\nmode: testing\r\nmx: {policy_mx}\r\nmax_age: 86400\r\n"),
    )
    .await;
    let zone = SignedZone::start(Zones {
        signed: vec![
            "stsr IN MX 10 mx.stsr".into(),
            "mx.stsr IN A 127.0.0.1".into(),
            "mta-sts.stsr IN A 127.0.0.1".into(),
            "_mta-sts.stsr IN TXT \"v=STSv1; id=20261201T000000;\"".into(),
            "_smtp._tls.stsr IN TXT \"v=TLSRPTv1; rua=mailto:bob@example.test\"".into(),
        ],
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file(dir.path());
    let server = mailwit(
        &zone,
        &peer,
        &format!(
            "interval = \"2s\"\n[mta_sts]\nca_file = \"{}\"\nhttps_port = {}\n",
            ca.display(),
            policy_host.addr.port()
        ),
    );
    submit(&server, "carol@stsr.test");
    wait_delivered(&peer, &server, 1);
    assert!(peer.transcript().messages[0].tls, "delivered over TLS");

    let reports = support::until_some(
        "a report with a failure",
        || reports_so_far(&server),
        || {
            let json = report_json(&server);
            (!counts(&json, policy_mx).1.is_empty()).then_some(json)
        },
    );
    assert_eq!(
        counts(&reports, policy_mx),
        (0, vec![(result_type.to_string(), 1)]),
        "{reports:#?}"
    );
    for report in &reports {
        check_report_fields(report);
        let p = &report["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["policy-domain"], "stsr.test");
        let lines: Vec<&str> = p["policy"]["policy-string"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(lines.contains(&"mode: testing"), "{lines:?}");
        assert_eq!(p["summary"]["total-successful-session-count"], 0);
        assert_eq!(p["summary"]["total-failure-session-count"], 1);
        let d = &p["failure-details"][0];
        assert_eq!(d["result-type"], result_type);
        assert_eq!(d["receiving-mx-hostname"], "mx.stsr.test");
        assert_eq!(d["failed-session-count"], 1);
    }
}

/// A report whose upload fails (nothing listens at the `https:` URI) stays in the outbox and is
/// posted once the endpoint is up, exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn failed_https_upload_is_retried_until_it_succeeds() {
    need_bind!();
    let leaf = self_signed(&["mx.rpt6.test"]);
    let peer = peer(&leaf).await;
    let pki = Pki::new("TLS-RPT endpoint CA");
    let endpoint = support::free_port("127.0.0.1");
    let rua = format!("{endpoint}/up");
    let (_zone, server, _ca_dir) = https_reporting_domain("rpt6", &rua, vec![], &peer, &pki);
    submit(&server, "carol@rpt6.test");
    wait_delivered(&peer, &server, 1);
    let outbox = server.state_dir().join("tls-rpt/outbox");
    let outbox_files = || -> usize {
        std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    // The endpoint is down: the upload fails and the report waits in the outbox.
    support::until_blocking(
        "a failed upload",
        || server.log(),
        || server.log().contains("report not sent; will retry"),
    );
    assert_eq!(outbox_files(), 1, "{}", server.log());
    // The endpoint comes up: the next try posts the report.
    let collector = HttpsCollector::start_on(
        &pki.leaf(&["reports.rpt6.test"], Validity::Current),
        endpoint,
    )
    .await;
    support::until_blocking(
        "the report posted and the outbox empty",
        || server.log(),
        || !collector.posted().is_empty() && outbox_files() == 0,
    );
    let posted = collector.posted();
    assert_eq!(posted.len(), 1, "one report, posted once");
    let report = gunzip(&posted[0].body);
    check_report_fields(&report);
    assert_eq!(
        report["policies"][0]["policy"]["policy-domain"],
        "rpt6.test"
    );
    assert_eq!(
        report["policies"][0]["summary"]["total-successful-session-count"],
        1
    );
}

/// A kill -9 once the report mail is in the queue (its relay is down): after the restart the
/// report is neither made again nor lost; the relay gets exactly one.
#[tokio::test(flavor = "multi_thread")]
async fn report_mail_is_neither_lost_nor_repeated_across_a_kill() {
    need_bind!();
    let leaf = self_signed(&["mx.rpt7.test"]);
    let peer = peer(&leaf).await;
    let zone = SignedZone::start(Zones {
        signed: vec![
            "rpt7 IN MX 10 mx.rpt7".into(),
            "mx.rpt7 IN A 127.0.0.1".into(),
            "_smtp._tls.rpt7 IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@collect.test\"".into(),
        ],
        unsigned: vec![],
        corrupt_tlsa: vec![],
    });
    // Report mail goes to a relay that is not up yet, so it stays queued.
    let relay = support::free_port("127.0.0.1");
    let mut server = mailwit(
        &zone,
        &peer,
        &format!(
            "interval = \"2s\"\n[routes.domains.\"collect.test\"]\n\
             relay = {{ host = \"127.0.0.1\", port = {relay}, tls = \"none\" }}\n"
        ),
    );
    submit(&server, "carol@rpt7.test");
    wait_delivered(&peer, &server, 1);
    let rpt = server.state_dir().join("tls-rpt");
    let count = |dir: &std::path::Path, suffix: &str| -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                    .count()
            })
            .unwrap_or(0)
    };
    let is_report =
        |m: &Vec<u8>| String::from_utf8_lossy(m).contains("TLS-Report-Domain: rpt7.test");
    // Queued, its outbox file gone and its period log too: the report is the queue's now.
    support::until_blocking(
        "the report mail spooled and the outbox and session logs empty",
        || server.log(),
        || {
            server.spooled().iter().any(is_report)
                && count(&rpt.join("outbox"), ".json") == 0
                && count(&rpt, ".jsonl") == 0
        },
    );
    server.kill();
    server.spawn();
    let dumps = support::helper_dir::helper_dir();
    let sink = support::sink::Sink::start_dumping_to(relay, &dumps.path().join("d"), &[]);
    support::until_blocking(
        "the report mail relayed and gone from the spool",
        || server.log(),
        || !sink.messages().is_empty() && !server.spooled().iter().any(is_report),
    );
    assert_eq!(count(&rpt.join("outbox"), ".json"), 0);
    assert_eq!(count(&rpt, ".jsonl"), 0);
    let reports: Vec<String> = sink
        .messages()
        .into_iter()
        .filter(|m| m.contains("TLS-Report-Domain: rpt7.test"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:#?}\n{}", server.log());
}
