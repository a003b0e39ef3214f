//! The remote delivery agents against real peers on loopback: Postfix's smtp-sink (with its
//! fault injection), a small rustls SMTP server where smtp-sink cannot help (STARTTLS, AUTH,
//! SIZE, SMTPUTF8, CHUNKING), smtp-sink in LMTP mode, and a DNS responder for MX resolution.

use std::time::Duration;

use crate::support::dns::*;
use crate::support::free_port;
use crate::support::outbound::*;
use crate::support::peer::*;
use crate::support::sink::*;
use mailwit::delivery::lmtp::{self, LmtpTarget};
use mailwit::delivery::maildir::Maildir;
use mailwit::delivery::mx::{MxConfig, MxResolver};
use mailwit::delivery::remote::{DeliveryAgents, RemoteSettings};
use mailwit::delivery::smtp_client::{
    self, AuthMechanism, Connection, RelayCredentials, TlsVerify,
};
use mailwit::delivery::{Agents, Attempt, Destination, Outbound, RecipientOutcome};
use mailwit::policy::{BodyType, DsnRet, Notify, Recipient, RelayTarget, ReversePath, TlsPolicy};

fn outbound<'a>(rp: &'a ReversePath, rcpts: &'a [Recipient], msg: &'a [u8]) -> Outbound<'a> {
    Outbound {
        queue_id: "Q1",
        reverse_path: rp,
        recipients: rcpts,
        message: msg,
    }
}

async fn deliver(addr: std::net::SocketAddr, out: &Outbound<'_>) -> Attempt {
    deliver_with(addr, &client(), out).await
}

async fn deliver_with(
    addr: std::net::SocketAddr,
    config: &smtp_client::ClientConfig,
    out: &Outbound<'_>,
) -> Attempt {
    let target = RelayTarget {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: config.tls,
        credentials: None,
    };
    smtp_client::deliver_to_relay(&target, config, out).await
}

/// (code, enhanced code, kind) of each outcome.
fn summary(report: &Attempt) -> Vec<(&'static str, u16, String)> {
    report
        .outcomes
        .iter()
        .map(|o| match o {
            RecipientOutcome::Delivered(r) => ("delivered", r.code, r.enhanced.clone()),
            RecipientOutcome::Deferred(r) => ("deferred", r.code, r.enhanced.clone()),
            RecipientOutcome::Failed(r) => ("failed", r.code, r.enhanced.clone()),
        })
        .collect()
}

fn kinds(report: &Attempt) -> Vec<&'static str> {
    summary(report).into_iter().map(|s| s.0).collect()
}

const ALL_NOTIFY: Notify = Notify {
    success: true,
    failure: true,
    delay: false,
};

// ---------------------------------------------------------------- smtp-sink

#[tokio::test]
async fn delivers_to_smtp_sink_with_dsn_parameters_and_exact_bytes() {
    let sink = Sink::start(&[]);
    let mut rp = sender("alice@origin.test");
    rp.ret = Some(DsnRet::Hdrs);
    rp.envid = Some("env id+1".into());
    let rcpts = [
        rcpt_dsn("bob@dest.test", ALL_NOTIFY),
        rcpt("carol@dest.test"),
    ];
    let msg = message("hello", "line one\r\n.leading dot\r\nlast line\r\n");
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;

    assert_eq!(kinds(&report), ["delivered", "delivered"]);
    assert_eq!(summary(&report)[0].1, 250);
    assert!(report.dsn_passed_on, "smtp-sink announces DSN");
    let dumps = sink.wait_messages(1);
    assert_eq!(dumps.len(), 1);
    let dump = &dumps[0];
    assert!(
        dump.contains("X-Mail-Args: <alice@origin.test> RET=HDRS ENVID=env+20id+2B1"),
        "{dump}"
    );
    assert!(
        dump.contains(
            "X-Rcpt-Args: <bob@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@dest.test"
        ),
        "{dump}"
    );
    assert!(dump.contains("X-Rcpt-Args: <carol@dest.test>\n"), "{dump}");
    // smtp-sink stores lines with LF; the body arrives dot-unstuffed, byte for byte.
    let sent = String::from_utf8(msg.clone())
        .unwrap()
        .replace("\r\n", "\n");
    assert!(dump.contains(&sent), "{dump}");
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let sink = Sink::start(&["-p"]);
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test"), rcpt("carol@dest.test")];
    let msg = message("nopipe", "body\r\n");
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered", "delivered"]);
    assert_eq!(sink.wait_messages(1).len(), 1);
}

#[tokio::test]
async fn rcpt_rejections_map_to_deferred_and_failed() {
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test"), rcpt("carol@dest.test")];
    let msg = message("rcpt", "body\r\n");

    let soft = Sink::start(&["-r", "RCPT"]);
    let report = deliver(soft.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(
        summary(&report),
        [
            ("deferred", 450, "4.3.0".into()),
            ("deferred", 450, "4.3.0".into())
        ]
    );

    let hard = Sink::start(&["-f", "RCPT"]);
    let report = deliver(hard.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(
        summary(&report),
        [
            ("failed", 500, "5.3.0".into()),
            ("failed", 500, "5.3.0".into())
        ]
    );
    // smtp-sink may answer the pipelined DATA with 354 even without recipients; the client then
    // sends an empty message, never the real one.
    for dump in soft.messages().iter().chain(hard.messages().iter()) {
        assert!(!dump.contains("Subject: rcpt"), "{dump}");
    }
}

#[tokio::test]
async fn mail_and_data_rejections_decide_every_recipient() {
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test"), rcpt("carol@dest.test")];
    let msg = message("stages", "body\r\n");
    for (args, expected) in [
        (["-r", "MAIL"], ("deferred", 450)),
        (["-f", "MAIL"], ("failed", 500)),
        (["-r", "DATA"], ("deferred", 450)),
        (["-f", "DATA"], ("failed", 500)),
        (["-r", "."], ("deferred", 450)),
        (["-f", "."], ("failed", 500)),
    ] {
        let sink = Sink::start(&args);
        let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
        let got: Vec<_> = summary(&report).into_iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(got, [expected, expected], "smtp-sink {args:?}");
    }
}

#[tokio::test]
async fn reply_421_defers_the_rest_and_closes_the_connection() {
    let sink = Sink::start(&["-Q", "RCPT"]);
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test"), rcpt("carol@dest.test")];
    let msg = message("421", "body\r\n");
    let mut conn = Connection::connect(sink.addr, "sink.test", &client())
        .await
        .unwrap();
    let report = conn.send(&outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(
        summary(&report)
            .into_iter()
            .map(|s| (s.0, s.1))
            .collect::<Vec<_>>(),
        [("deferred", 421), ("deferred", 421)]
    );
    assert!(!conn.is_usable());
    // A closed connection defers without touching the network.
    let again = conn.send(&outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&again), ["deferred", "deferred"]);
    assert_eq!(summary(&again)[0].2, "4.4.2");
}

#[tokio::test]
async fn disconnects_defer_with_4_4_2() {
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message("drop", "body\r\n");
    for cmd in ["MAIL", "DATA", "."] {
        let sink = Sink::start(&["-q", cmd]);
        let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
        assert_eq!(
            summary(&report),
            [("deferred", 421, "4.4.2".into())],
            "disconnect after {cmd}"
        );
    }
    // Disconnect at connect time, before the greeting.
    let sink = Sink::start(&["-q", "CONNECT"]);
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(summary(&report), [("deferred", 421, "4.4.2".into())]);
}

#[tokio::test]
async fn refused_connection_defers_with_4_4_1() {
    let (_refusing, port) = crate::support::refusing_port();
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test"), rcpt("carol@dest.test")];
    let msg = message("refused", "body\r\n");
    let report = deliver(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &outbound(&rp, &rcpts, &msg),
    )
    .await;
    assert_eq!(
        summary(&report),
        [
            ("deferred", 421, "4.4.1".into()),
            ("deferred", 421, "4.4.1".into())
        ]
    );
}

#[tokio::test]
async fn greeting_rejection_fails_or_defers() {
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message("greet", "body\r\n");
    let sink = Sink::start(&["-f", "CONNECT"]);
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["failed"]);
    let sink = Sink::start(&["-r", "CONNECT"]);
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["deferred"]);
}

#[tokio::test]
async fn helo_fallback_when_ehlo_is_refused() {
    let sink = Sink::start(&["-e"]);
    let mut rp = sender("alice@origin.test");
    rp.ret = Some(DsnRet::Full);
    let rcpts = [rcpt_dsn("bob@dest.test", ALL_NOTIFY)];
    let msg = message("helo", "body\r\n");
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    assert!(!report.dsn_passed_on, "no ESMTP, so no DSN parameters");
    let dump = &sink.wait_messages(1)[0];
    assert!(dump.contains("X-Client-Proto: SMTP"), "{dump}");
    assert!(
        dump.contains("X-Mail-Args: <alice@origin.test>\n"),
        "{dump}"
    );
}

#[tokio::test]
async fn withheld_dsn_means_no_dsn_parameters() {
    let sink = Sink::start(&["-N"]);
    let mut rp = sender("alice@origin.test");
    rp.envid = Some("E1".into());
    let rcpts = [rcpt_dsn("bob@dest.test", ALL_NOTIFY)];
    let msg = message("nodsn", "body\r\n");
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    assert!(!report.dsn_passed_on);
    let dump = &sink.wait_messages(1)[0];
    assert!(dump.contains("X-Rcpt-Args: <bob@dest.test>\n"), "{dump}");
    assert!(!dump.contains("ENVID"), "{dump}");
}

#[tokio::test]
async fn eight_bit_body_needs_8bitmime() {
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let eight = message("8bit", "Grüße\r\n");
    let seven = message("7bit", "plain\r\n");

    // Withheld 8BITMIME: an 8-bit header has no 7-bit form, so that message bounces unsent.
    let sink = Sink::start(&["-8"]);
    let eight_header = message("Grüße", "plain\r\n");
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &eight_header)).await;
    assert_eq!(summary(&report), [("failed", 554, "5.6.3".into())]);
    assert!(sink.messages().is_empty());
    // A message declared 8BITMIME whose bytes are 7-bit still goes, without BODY=.
    let mut declared = rp.clone();
    declared.body = Some(BodyType::EightBitMime);
    let report = deliver(sink.addr, &outbound(&declared, &rcpts, &seven)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    let dumps = sink.wait_messages(1);
    assert_eq!(dumps.len(), 1);
    assert!(dumps[0].contains("X-Mail-Args: <alice@origin.test>\n"));
    // The 8-bit body is downgraded to quoted-printable (RFC 6152 §3) and delivered, no BODY=.
    let report = deliver(sink.addr, &outbound(&declared, &rcpts, &eight)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    let dumps = sink.wait_messages(2);
    let dump = dumps.iter().find(|d| d.contains("Subject: 8bit")).unwrap();
    assert!(
        dump.contains("X-Mail-Args: <alice@origin.test>\n"),
        "{dump}"
    );
    assert!(
        dump.contains(
            "MIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n\nGr=C3=BC=C3=9Fe\n"
        ),
        "{dump}"
    );
    assert!(dump.is_ascii(), "{dump}");

    // With 8BITMIME: sent with BODY=8BITMIME.
    let sink = Sink::start(&[]);
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &eight)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    let dump = &sink.wait_messages(1)[0];
    assert!(dump.contains("BODY=8BITMIME"), "{dump}");
    assert!(dump.contains("Grüße"), "{dump}");
}

#[tokio::test]
async fn smtputf8_needed_and_absent_fails_5_6_7() {
    let sink = Sink::start(&[]);
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("jürgen@dest.test")];
    let msg = message("utf8", "body\r\n");
    let report = deliver(sink.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(summary(&report), [("failed", 553, "5.6.7".into())]);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn client_timeout_defers() {
    // smtp-sink waits 3 s before answering DATA; our timeouts are 1 s.
    let sink = Sink::start(&["-w", "3"]);
    let mut config = client();
    config.timeouts = smtp_client::Timeouts::all(Duration::from_secs(1));
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message("slow", "body\r\n");
    let report = deliver_with(sink.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(summary(&report), [("deferred", 421, "4.4.2".into())]);
    let RecipientOutcome::Deferred(reply) = &report.outcomes[0] else {
        unreachable!()
    };
    assert!(reply.text.contains("timed out"), "{}", reply.text);
}

#[tokio::test]
async fn many_messages_over_one_connection() {
    let sink = Sink::start(&[]);
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let mut conn = Connection::connect(sink.addr, "sink.test", &client())
        .await
        .unwrap();
    for i in 0..5 {
        let msg = message(&format!("m{i}"), "body\r\n");
        let report = conn.send(&outbound(&rp, &rcpts, &msg)).await;
        assert_eq!(kinds(&report), ["delivered"], "message {i}");
    }
    conn.quit().await;
    let dumps = sink.wait_messages(5);
    assert_eq!(dumps.len(), 5);
    for i in 0..5 {
        assert!(
            dumps
                .iter()
                .any(|d| d.contains(&format!("Subject: m{i}\n")))
        );
    }
}

// ---------------------------------------------------------------- LMTP (smtp-sink -L)

#[tokio::test]
async fn lmtp_over_tcp_and_unix_socket() {
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@local.test"), rcpt("carol@local.test")];
    let msg = message("lmtp", "body\r\n");

    let sink = Sink::start(&["-L"]);
    let target = LmtpTarget::parse(&sink.addr.to_string());
    let report = lmtp::deliver(&target, &client(), &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered", "delivered"]);
    let dump = &sink.wait_messages(1)[0];
    assert!(dump.contains("X-Client-Proto: LMTP"), "{dump}");

    // Over a unix socket; and per-recipient replies after DATA with a rejecting "."
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let path = dir.path().join("lmtp.sock");
    let mut child = std::process::Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody", "-L", "-f", "."])
        .arg(format!("unix:{}", path.display()))
        .arg("16")
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let report = lmtp::deliver(
        &LmtpTarget::parse(path.to_str().unwrap()),
        &client(),
        &outbound(&rp, &rcpts, &msg),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        summary(&report)
            .into_iter()
            .map(|s| (s.0, s.1))
            .collect::<Vec<_>>(),
        [("failed", 500), ("failed", 500)]
    );

    // Nothing listening.
    let report = lmtp::deliver(
        &LmtpTarget::parse(dir.path().join("none.sock").to_str().unwrap()),
        &client(),
        &outbound(&rp, &rcpts, &msg),
    )
    .await;
    assert_eq!(summary(&report)[0], ("deferred", 421, "4.4.1".into()));
}

#[tokio::test]
async fn lmtp_replies_per_recipient_after_data() {
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into(), "ENHANCEDSTATUSCODES".into()],
        lmtp: true,
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let rcpts = [
        rcpt("bob@local.test"),
        rcpt("full-box@local.test"),
        rcpt("reject-x@local.test"),
        rcpt("carol@local.test"),
    ];
    let msg = message("lmtp-mixed", "body\r\n");
    let report = lmtp::deliver(
        &LmtpTarget::parse(&server.addr.to_string()),
        &client(),
        &outbound(&rp, &rcpts, &msg),
    )
    .await;
    assert_eq!(
        summary(&report),
        [
            ("delivered", 250, "2.1.5".into()),
            ("failed", 552, "5.2.2".into()),
            ("failed", 550, "5.1.1".into()),
            ("delivered", 250, "2.1.5".into())
        ]
    );
    let t = server.transcript();
    assert!(t.commands[0].starts_with("LHLO "));
    assert_eq!(t.messages.len(), 1);
    assert_eq!(t.messages[0].data, msg);
}

// ---------------------------------------------------------------- test server (TLS, AUTH, SIZE…)

#[tokio::test]
async fn starttls_opportunistic_and_required() {
    let ca = TestCa::new();
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into(), "8BITMIME".into()],
        tls: Some(ca.clone()),
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message("tls", "secret body\r\n");

    let mut config = client();
    config.tls = TlsPolicy::Opportunistic;
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"]);

    // Required, verified against the test CA.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der.clone()).unwrap();
    config.tls = TlsPolicy::Required;
    config.tls_verify = TlsVerify::with_roots(roots).unwrap();
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"]);

    let t = server.transcript();
    assert_eq!(t.messages.len(), 2);
    assert!(t.messages.iter().all(|m| m.tls && m.data == msg));
    assert_eq!(t.commands.iter().filter(|c| *c == "STARTTLS").count(), 2);

    // Required, but verification fails (an unrelated CA): deferred 4.7.5 (cryptographic failure), no message sent.
    let other = TestCa::new();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(other.ca_der.clone()).unwrap();
    config.tls_verify = TlsVerify::with_roots(roots).unwrap();
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(summary(&report), [("deferred", 421, "4.7.5".into())]);
    // Opportunistic with a failing handshake falls back to plain text.
    config.tls = TlsPolicy::Opportunistic;
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    let t = server.transcript();
    assert_eq!(t.messages.len(), 3);
    assert!(!t.messages[2].tls);

    // Required and not offered (smtp-sink has no TLS at all).
    let sink = Sink::start(&[]);
    config.tls = TlsPolicy::Required;
    let report = deliver_with(sink.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(summary(&report), [("deferred", 421, "4.7.10".into())]);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn auth_plain_and_login_to_a_smarthost() {
    let ca = TestCa::new();
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into()],
        tls: Some(ca),
        auth: Some(("relayuser".into(), "s3cret pw".into())),
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message("auth", "body\r\n");
    let mut config = client();
    config.tls = TlsPolicy::Required;
    for mechanism in [None, Some(AuthMechanism::Login)] {
        config.credentials = Some(RelayCredentials {
            username: "relayuser".into(),
            password: "s3cret pw".into(),
            mechanism,
        });
        let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
        assert_eq!(kinds(&report), ["delivered"], "{mechanism:?}");
    }
    let t = server.transcript();
    assert_eq!(t.messages.len(), 2);
    assert!(t.messages.iter().all(|m| m.authenticated && m.tls));
    assert!(t.commands.iter().any(|c| c.starts_with("AUTH PLAIN ")));
    assert!(t.commands.iter().any(|c| c == "AUTH LOGIN"));

    // Wrong password: deferred (our configuration problem), never bounced.
    config.credentials = Some(RelayCredentials {
        username: "relayuser".into(),
        password: "wrong".into(),
        mechanism: None,
    });
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(summary(&report), [("deferred", 454, "4.7.8".into())]);

    // Credentials are not sent without TLS.
    config.tls = TlsPolicy::None;
    config.credentials.as_mut().unwrap().password = "s3cret pw".into();
    let before = server.transcript().commands.len();
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(summary(&report), [("deferred", 454, "4.7.8".into())]);
    let t = server.transcript();
    assert!(!t.commands[before..].iter().any(|c| c.starts_with("AUTH")));
}

#[tokio::test]
async fn size_limit_fails_5_3_4_and_size_is_declared() {
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into(), "SIZE 400".into()],
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test"), rcpt("carol@dest.test")];
    let big = message("big", &"x".repeat(500));
    let report = deliver(server.addr, &outbound(&rp, &rcpts, &big)).await;
    assert_eq!(
        summary(&report),
        [
            ("failed", 552, "5.3.4".into()),
            ("failed", 552, "5.3.4".into())
        ]
    );
    let small = message("small", "x\r\n");
    let report = deliver(server.addr, &outbound(&rp, &rcpts, &small)).await;
    assert_eq!(kinds(&report), ["delivered", "delivered"]);
    let t = server.transcript();
    assert_eq!(t.messages.len(), 1);
    assert_eq!(
        t.messages[0].mail,
        format!("MAIL FROM:<alice@origin.test> SIZE={}", small.len())
    );
}

#[tokio::test]
async fn smtputf8_passed_when_offered() {
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["8BITMIME".into(), "SMTPUTF8".into()],
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("jürgen@dest.test")];
    let msg = message("utf8", "body\r\n");
    let report = deliver(server.addr, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    let t = server.transcript();
    assert_eq!(t.messages[0].mail, "MAIL FROM:<alice@origin.test> SMTPUTF8");
    assert_eq!(t.messages[0].rcpts, ["RCPT TO:<jürgen@dest.test>"]);
}

#[tokio::test]
async fn chunking_sends_bdat_and_mixed_recipient_outcomes() {
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into(), "CHUNKING".into(), "8BITMIME".into()],
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let rcpts = [
        rcpt("bob@dest.test"),
        rcpt("reject-me@dest.test"),
        rcpt("defer-me@dest.test"),
    ];
    // Leading dots are not stuffed under BDAT; small chunks force several BDAT commands.
    let msg = message("bdat", &".dot line\r\n".repeat(50));
    let mut config = client();
    config.chunk_size = 100;
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(
        summary(&report),
        [
            ("delivered", 250, "2.0.0".into()),
            ("failed", 550, "5.1.1".into()),
            ("deferred", 450, "4.2.1".into())
        ]
    );
    let t = server.transcript();
    assert_eq!(t.messages.len(), 1);
    assert_eq!(t.messages[0].data, msg);
    let bdats = t.commands.iter().filter(|c| c.starts_with("BDAT")).count();
    assert_eq!(bdats, msg.len().div_ceil(100));
    assert!(!t.commands.iter().any(|c| c == "DATA"));
}

#[tokio::test]
async fn rset_after_a_transaction_without_recipients() {
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into()],
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let mut conn = Connection::connect(server.addr, "mx.test", &client())
        .await
        .unwrap();
    let msg = message("first", "body\r\n");
    let rejected = [rcpt("reject-a@dest.test")];
    let report = conn.send(&outbound(&rp, &rejected, &msg)).await;
    assert_eq!(kinds(&report), ["failed"]);
    let good = [rcpt("bob@dest.test")];
    let report = conn.send(&outbound(&rp, &good, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"]);
    conn.quit().await;
    let t = server.transcript();
    assert_eq!(t.sessions, 1);
    assert_eq!(t.messages.len(), 1);
    let rset = t
        .commands
        .iter()
        .position(|c| c == "RSET")
        .expect("RSET sent");
    let second_mail = t
        .commands
        .iter()
        .rposition(|c| c.starts_with("MAIL"))
        .unwrap();
    assert!(rset < second_mail);
}

// ---------------------------------------------------------------- MX resolution

fn mx_config(dns: &DnsServer, port: u16) -> MxConfig {
    MxConfig {
        nameservers: vec![dns.addr],
        dns_timeout: Duration::from_secs(2),
        smtp_port: port,
        max_hosts: 5,
    }
}

#[tokio::test]
async fn mx_hosts_ordered_by_preference_and_implicit_mx() {
    let dns = DnsServer::start(vec![
        ("pref.test", Rr::Mx(20, "b.pref.test")),
        ("pref.test", Rr::Mx(10, "a1.pref.test")),
        ("pref.test", Rr::Mx(10, "a2.pref.test")),
        ("pref.test", Rr::Mx(30, "c.pref.test")),
        ("implicit.test", Rr::A("127.0.0.1")),
        ("nomail.test", Rr::Mx(0, ".")),
    ])
    .await;
    let resolver = MxResolver::new(mx_config(&dns, 25)).unwrap();
    let hosts = resolver.hosts("pref.test").await.unwrap();
    let names: Vec<_> = hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names.len(), 4);
    assert!(
        names[..2].contains(&"a1.pref.test") && names[..2].contains(&"a2.pref.test"),
        "{names:?}"
    );
    assert_eq!(&names[2..], ["b.pref.test", "c.pref.test"]);

    let hosts = resolver.hosts("implicit.test").await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0].implicit && hosts[0].name == "implicit.test");

    let null = resolver.hosts("nomail.test").await.unwrap_err();
    assert_eq!(null.reply().enhanced, "5.1.10");
    let missing = resolver.hosts("missing.test").await.unwrap_err();
    assert_eq!(missing.reply().enhanced, "5.1.2");
}

#[tokio::test]
async fn mx_delivery_null_mx_fails_at_once() {
    let dns = DnsServer::start(vec![("nomail.test", Rr::Mx(0, "."))]).await;
    let resolver = MxResolver::new(mx_config(&dns, free_port("127.0.0.1"))).unwrap();
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@nomail.test")];
    let msg = message("null", "body\r\n");
    let report = resolver
        .deliver("nomail.test", &client(), &outbound(&rp, &rcpts, &msg))
        .await;
    assert_eq!(summary(&report), [("failed", 556, "5.1.10".into())]);
    // Only the MX query: no address lookups, no connection.
    let queries = dns.queries.lock().unwrap().clone();
    assert!(
        queries.iter().all(|(_, t)| t.to_string() == "MX"),
        "{queries:?}"
    );
}

#[tokio::test]
async fn mx_falls_back_on_connection_failure_and_on_4xx() {
    // The same port on two loopback addresses: 127.0.0.2 is the preferred MX.
    let port = free_port("127.0.0.1");
    let dns = DnsServer::start(vec![
        ("dest.test", Rr::Mx(10, "mx1.dest.test")),
        ("dest.test", Rr::Mx(20, "mx2.dest.test")),
        ("mx1.dest.test", Rr::A("127.0.0.2")),
        ("mx2.dest.test", Rr::A("127.0.0.1")),
    ])
    .await;
    let resolver = MxResolver::new(mx_config(&dns, port)).unwrap();
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message("mx", "body\r\n");

    // 1. mx1 refuses connections; mx2 (smtp-sink) takes it.
    let backup = Sink::start_on("127.0.0.1", port, &[]);
    let report = resolver
        .deliver("dest.test", &client(), &outbound(&rp, &rcpts, &msg))
        .await;
    assert_eq!(kinds(&report), ["delivered"]);
    assert!(report.remote_mta.unwrap().starts_with("mx2.dest.test"));
    assert_eq!(backup.wait_messages(1).len(), 1);

    // 2. mx1 answers 4xx at RCPT; the recipient goes on to mx2.
    let primary = Sink::start_on("127.0.0.2", port, &["-r", "RCPT"]);
    let report = resolver
        .deliver("dest.test", &client(), &outbound(&rp, &rcpts, &msg))
        .await;
    assert_eq!(kinds(&report), ["delivered"]);
    assert_eq!(backup.wait_messages(2).len(), 2);
    assert!(primary.messages().is_empty());
    drop(primary);

    // 3. mx1 answers 5xx: final, mx2 is not asked.
    let primary = Sink::start_on("127.0.0.2", port, &["-f", "RCPT"]);
    let report = resolver
        .deliver("dest.test", &client(), &outbound(&rp, &rcpts, &msg))
        .await;
    assert_eq!(kinds(&report), ["failed"]);
    assert_eq!(backup.messages().len(), 2);
    drop(primary);

    // 4. Both down: deferred with the last connection error.
    drop(backup);
    let report = resolver
        .deliver("dest.test", &client(), &outbound(&rp, &rcpts, &msg))
        .await;
    assert_eq!(summary(&report), [("deferred", 421, "4.4.1".into())]);
}

#[tokio::test]
async fn mx_list_stops_at_ourselves() {
    // We are mx2 ("client.mailwit.test", our EHLO name): only mx1 may be tried; as the best
    // exchanger ourselves, the mail would loop.
    let port = free_port("127.0.0.1");
    let dns = DnsServer::start(vec![
        ("dest.test", Rr::Mx(10, "mx1.dest.test")),
        ("dest.test", Rr::Mx(20, "client.mailwit.test")),
        ("dest.test", Rr::Mx(30, "mx3.dest.test")),
        ("mx1.dest.test", Rr::A("127.0.0.2")),
        ("mx3.dest.test", Rr::A("127.0.0.1")),
        ("loop.test", Rr::Mx(10, "client.mailwit.test")),
        ("loop.test", Rr::Mx(20, "mx3.dest.test")),
    ])
    .await;
    let mx3 = Sink::start_on("127.0.0.1", port, &[]);
    let resolver = MxResolver::new(mx_config(&dns, port)).unwrap();
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message("loop", "body\r\n");
    let report = resolver
        .deliver("dest.test", &client(), &outbound(&rp, &rcpts, &msg))
        .await;
    // mx1 is down and mx3 ranks below us: deferred, mx3 never sees the mail.
    assert_eq!(kinds(&report), ["deferred"]);
    let report = resolver
        .deliver("loop.test", &client(), &outbound(&rp, &rcpts, &msg))
        .await;
    assert_eq!(summary(&report), [("failed", 554, "5.4.6".into())]);
    assert!(mx3.messages().is_empty());
}

#[tokio::test]
async fn many_recipients_are_split_into_transactions() {
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into()],
        ..PeerOptions::default()
    })
    .await;
    let rp = sender("alice@origin.test");
    let rcpts: Vec<Recipient> = (0..5).map(|i| rcpt(&format!("r{i}@dest.test"))).collect();
    let msg = message("split", "body\r\n");
    let mut config = client();
    config.max_recipients = 2;
    let report = deliver_with(server.addr, &config, &outbound(&rp, &rcpts, &msg)).await;
    assert_eq!(kinds(&report), ["delivered"; 5]);
    let t = server.transcript();
    assert_eq!(t.sessions, 1);
    let per_message: Vec<usize> = t.messages.iter().map(|m| m.rcpts.len()).collect();
    assert_eq!(per_message, [2, 2, 1]);
}

// ---------------------------------------------------------------- throughput

/// Messages/s to smtp-sink over one reused connection and over N parallel connections.
/// Run: cargo test --test delivery_agents -- --ignored --nocapture throughput
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_to_smtp_sink() {
    // smtp-sink without -d: measure the client, not the disk.
    let sink = FastSink::start(&["-m", "512"], 256);
    let addr = sink.addr;
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let msg = message(
        "bench",
        &"0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(80),
    );
    let total = 5000;

    let start = std::time::Instant::now();
    let mut conn = Connection::connect(addr, "sink", &client()).await.unwrap();
    for _ in 0..total {
        let r = conn.send(&outbound(&rp, &rcpts, &msg)).await;
        assert_eq!(kinds(&r), ["delivered"]);
    }
    conn.quit().await;
    let one = total as f64 / start.elapsed().as_secs_f64();

    let parallel = 16;
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (rp, rcpts, msg) = (rp.clone(), rcpts.clone(), msg.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::connect(addr, "sink", &client()).await.unwrap();
            for _ in 0..total / parallel {
                let r = conn.send(&outbound(&rp, &rcpts, &msg)).await;
                assert_eq!(kinds(&r), ["delivered"]);
            }
            conn.quit().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let many = total as f64 / start.elapsed().as_secs_f64();

    let start = std::time::Instant::now();
    let fresh = 500;
    for _ in 0..fresh {
        let r = deliver(addr, &outbound(&rp, &rcpts, &msg)).await;
        assert_eq!(kinds(&r), ["delivered"]);
    }
    let per_connection = fresh as f64 / start.elapsed().as_secs_f64();

    // Through the queue's agent interface: cached relay sessions, checked with RSET on reuse.
    let state = tempfile::tempdir().unwrap();
    let mut settings = RemoteSettings::new("client.mailwit.test");
    settings.timeouts = client().timeouts;
    let agents = DeliveryAgents::new(
        Maildir::new(state.path().join("mail"), "client.mailwit.test"),
        settings,
    )
    .unwrap();
    let relay = Destination::Relay(RelayTarget {
        host: "127.0.0.1".into(),
        port: addr.port(),
        tls: TlsPolicy::None,
        credentials: None,
    });
    let start = std::time::Instant::now();
    for _ in 0..fresh * 4 {
        let r = agents.deliver(&relay, &outbound(&rp, &rcpts, &msg)).await;
        assert_eq!(kinds(&r), ["delivered"]);
    }
    let pooled = (fresh * 4) as f64 / start.elapsed().as_secs_f64();
    agents.close_idle().await;
    drop(sink);
    println!(
        "throughput ({} byte message, 1 recipient): one reused connection {one:.0} msg/s; \
         {parallel} connections {many:.0} msg/s; new connection per message {per_connection:.0} msg/s; \
         DeliveryAgents (cached session, RSET probe) {pooled:.0} msg/s",
        msg.len()
    );
}
