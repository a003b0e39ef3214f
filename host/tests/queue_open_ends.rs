//! The queue's open ends against real peers: ETRN advertised per client, HELP as offered, 452
//! recipients sent again at once (a real mailwit with max_recipients = 1 as the peer), and a
//! bounded shutdown grace for deliveries in flight (smtp-sink slow to answer DATA). The 8BITMIME
//! downgrade is in delivery_agents.rs (smtp-sink -8), held-mail expiry in odmr.rs.

use std::time::Duration;

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
