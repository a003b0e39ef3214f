//! The queue's open ends against real peers: ETRN advertised per client, HELP as offered, 452
//! recipients sent again at once (a real mailwit with max_recipients = 1 as the peer), a
//! bounded shutdown grace for deliveries in flight (smtp-sink slow to answer DATA), and MX
//! sessions reused like relay sessions (the in-test DNS server's MX pointing at smtp-sink). The
//! 8BITMIME downgrade is in delivery_agents.rs (smtp-sink -8), held-mail expiry in odmr.rs.

use std::time::Duration;

use crate::support::dns::{DnsServer, Rr};
use crate::support::outbound::{client, rcpt, sender};
use crate::support::sink::Sink;
use crate::support::{ALICE, Client, TestServer};
use mailwit::delivery::smtp_client::Connection;
use mailwit::delivery::{Outbound, RecipientOutcome};

#[test]
fn etrn_is_advertised_only_to_allowed_clients() {
    let server = TestServer::with_config(&crate::support::config(
        "",
        "[queue]\netrn_clients = [\"127.0.0.2\"]\n",
    ));
    let mut other = Client::connect(server.addr("mx"));
    let ehlo = other.expect("EHLO client.test", 250);
    assert!(!ehlo.text().contains("ETRN"), "{ehlo:?}");
    assert_eq!(other.cmd("ETRN example.test").code, 502);
    let help = other.expect("HELP", 214);
    assert!(!help.text().contains("ETRN"), "{help:?}");

    let mut allowed = Client::connect_raw_from(server.addr("mx"), Some("127.0.0.2"));
    assert_eq!(allowed.reply().code, 220);
    let ehlo = allowed.expect("EHLO client.test", 250);
    assert!(ehlo.text().contains("ETRN"), "{ehlo:?}");
    assert_eq!(allowed.cmd("ETRN example.test").code, 250);
    let help = allowed.expect("HELP", 214);
    assert!(help.text().contains("ETRN"), "{help:?}");
}

#[test]
fn help_lists_only_what_the_session_offers() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    // Plain mx: STARTTLS yes; AUTH only under TLS; no ETRN, no EXPN.
    let help = c.expect("HELP", 214).text();
    assert!(help.contains("STARTTLS"), "{help}");
    assert!(
        !help.contains("AUTH") && !help.contains("ETRN") && !help.contains("EXPN"),
        "{help}"
    );
    c.expect("STARTTLS", 220);
    c.upgrade();
    c.expect("EHLO client.test", 250);
    let help = c.expect("HELP", 214).text();
    assert!(
        help.contains("AUTH") && !help.contains("STARTTLS"),
        "{help}"
    );
}

#[tokio::test]
async fn recipients_refused_with_452_go_again_in_a_new_transaction() {
    // A real mailwit taking one recipient per transaction: the second RCPT gets 452 4.5.3.
    let peer = TestServer::with_config(&crate::support::config(
        "[server.limits]\nmax_recipients = 1\n",
        "",
    ));
    let addr = peer.addr("mx");
    let mut conn = Connection::connect(addr, "mail.example.test", &client())
        .await
        .unwrap();
    let rp = sender("carol@origin.test");
    let rcpts = [rcpt(ALICE), rcpt("bob@example.test")];
    let msg = crate::support::outbound::message("two", "for two\r\n");
    let report = conn
        .send(&Outbound {
            queue_id: "Q452",
            reverse_path: &rp,
            recipients: &rcpts,
            message: &msg,
        })
        .await;
    conn.quit().await;
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| matches!(o, RecipientOutcome::Delivered(_))),
        "{report:?}"
    );
    assert_eq!(peer.wait_maildir(ALICE, 1).len(), 1);
    assert_eq!(peer.wait_maildir("bob@example.test", 1).len(), 1);
}

#[test]
fn shutdown_waits_for_deliveries_in_flight() {
    // The smarthost takes 2 s to answer DATA; SIGTERM arrives meanwhile.
    let sink = Sink::start(&["-w", "2"]);
    let server = TestServer::with_config(&crate::support::config(
        "",
        &format!(
            "[routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n",
            sink.port()
        ),
    ));
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(
        ALICE,
        &["bob@remote.test"],
        &crate::support::message("in flight", "slow"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
    // Wait until the delivery is under way (the sink is holding its DATA reply).
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !delivery_active(&server) {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut server = server;
    let status = server.terminate();
    assert!(status.success(), "{status}");
    // The delivery finished and was recorded before the exit: nothing left to deliver again.
    assert_eq!(sink.wait_messages(1).len(), 1);
    assert!(server.spooled().is_empty(), "{}", server.log());
}

/// `mailwit queue list --json` shows a message being delivered right now.
fn delivery_active(server: &TestServer) -> bool {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .arg("queue")
        .arg("--state-dir")
        .arg(server.state_dir())
        .arg("--json")
        .arg("list")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace(' ', "");
    text.contains("\"active\":true")
}

// ---------------------------------------------------------------- MX session reuse

/// The test configuration delivering by MX: the in-test DNS server answers, MX hosts listen on
/// `mx_port`. Idle sessions wait up to a minute (never reached here), `extra` goes in `[queue]`.
fn mx_server(dns: &DnsServer, mx_port: u16, extra: &str) -> TestServer {
    TestServer::with_config(&crate::support::config(
        "",
        &format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\nattempts = 1\n\n\
             [queue]\nmx_port = {mx_port}\nconnection_reuse = \"60s\"\nretry_first = \"1s\"\n\
             retry_max = \"2s\"\nclient_timeout = \"30s\"\n{extra}\n",
            dns.addr
        ),
    ))
}

/// dest.test's MX is mx.dest.test on 127.0.0.1.
async fn dest_test_dns() -> DnsServer {
    DnsServer::start(vec![
        ("dest.test", Rr::Mx(10, "mx.dest.test")),
        ("mx.dest.test", Rr::A("127.0.0.1")),
    ])
    .await
}

/// Submits one message for `to` and waits until it has left the queue, so its session is back
/// in the pool before the next one is sent.
fn submit_and_wait(server: &TestServer, to: &str, subject: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(ALICE, &[to], &crate::support::message(subject, "By MX."));
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
    crate::support::until_blocking(
        "the message to leave the queue",
        || server.log(),
        || server.spooled().is_empty(),
    );
}

fn log_count(server: &TestServer, needle: &str) -> usize {
    server.log().lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn mx_sessions_are_reused_up_to_the_message_limit() {
    let sink = Sink::start(&[]);
    let dns = dest_test_dns().await;
    let server = mx_server(&dns, sink.port(), "connection_reuse_messages = 3");
    for i in 0..5 {
        submit_and_wait(
            &server,
            &format!("user{i}@dest.test"),
            &format!("reuse {i}"),
        );
    }
    let dumps = sink.wait_messages(5);
    assert_eq!(dumps.len(), 5, "{dumps:?}");
    for i in 0..5 {
        assert!(
            dumps
                .iter()
                .any(|d| d.contains(&format!("X-Rcpt-Args: <user{i}@dest.test>"))),
            "{dumps:?}"
        );
    }
    // Five messages over two sessions: three on the first (then it is closed at the limit),
    // two on the second; each reuse begins with RSET.
    let log = server.log();
    assert_eq!(
        log_count(&server, "delivery session opened"),
        2,
        "sessions opened:\n{log}"
    );
    assert_eq!(log_count(&server, "delivery session reused"), 3, "{log}");
    assert_eq!(
        log_count(&server, "delivery session closed at its message limit"),
        1,
        "{log}"
    );
    assert!(log.contains("mx.dest.test [127.0.0.1]"), "{log}");
    assert_eq!(log_count(&server, "status=Deferred"), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mx_session_the_peer_closed_is_not_reused() {
    let port = crate::support::free_port("127.0.0.1");
    let dns = dest_test_dns().await;
    let server = mx_server(&dns, port, "");
    let first = Sink::start_on("127.0.0.1", port, &[]);
    submit_and_wait(&server, "carol@dest.test", "before the restart");
    assert_eq!(first.wait_messages(1).len(), 1);
    // The MX host restarts: the idle session's peer is gone.
    drop(first);
    let second = Sink::start_on("127.0.0.1", port, &[]);
    submit_and_wait(&server, "dave@dest.test", "after the restart");
    let dumps = second.wait_messages(1);
    assert_eq!(dumps.len(), 1);
    assert!(
        dumps[0].contains("X-Rcpt-Args: <dave@dest.test>"),
        "{dumps:?}"
    );
    // The dead session was found out by its RSET before anything was sent and the message
    // went over a new session at once: delivered at the first attempt.
    let log = server.log();
    assert_eq!(
        log_count(&server, "idle delivery session was closed by the peer"),
        1,
        "{log}"
    );
    assert_eq!(log_count(&server, "delivery session opened"), 2, "{log}");
    assert_eq!(log_count(&server, "delivery session reused"), 0, "{log}");
    assert_eq!(log_count(&server, "status=Deferred"), 0, "{log}");
}
