//! The real `mailwit` binary on both ends of the delivery agents: the quickstart's smarthost
//! route relays alice's mail to smtp-sink (and a rejecting sink bounces it back into her
//! Maildir), and the SMTP client delivers to a running mailwit as its downstream peer
//! (STARTTLS, pipelining, CHUNKING as offered, per-recipient replies).

use crate::support::outbound::{client, rcpt, sender};
use crate::support::sink::Sink;
use crate::support::{ALICE, Client, TestServer};
use mailwit::delivery::smtp_client::Connection;
use mailwit::delivery::{Outbound, RecipientOutcome};
use mailwit::policy::TlsPolicy;

fn with_smarthost(port: u16) -> String {
    crate::support::config(
        "",
        &format!(
            "[routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {port}, tls = \"opportunistic\" }}\n\
             [queue]\nretry_first = \"1s\"\nretry_max = \"2s\"\nclient_timeout = \"30s\"\n"
        ),
    )
}

fn submit_as_alice(server: &TestServer, to: &str, subject: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(
        ALICE,
        &[to],
        &crate::support::message(subject, "Hi bob.\r\n"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

/// Waits (bounded: only to catch hangs) for `cond`.
#[test]
fn quickstart_relays_remote_mail_to_the_smarthost() {
    let sink = Sink::start(&[]);
    let server = TestServer::with_config(&with_smarthost(sink.port()));
    submit_as_alice(&server, "bob@remote.test", "to the smarthost");
    crate::support::until_blocking(
        "the sink received it",
        || server.log(),
        || sink.messages().len() == 1,
    );
    let dump = &sink.wait_messages(1)[0];
    assert!(dump.contains("X-Mail-Args: <alice@example.test>"), "{dump}");
    assert!(dump.contains("X-Rcpt-Args: <bob@remote.test>"), "{dump}");
    assert!(dump.contains("Subject: to the smarthost"), "{dump}");
    assert!(dump.contains("Hi bob."), "{dump}");
    crate::support::until_blocking(
        "the spool is empty",
        || server.log(),
        || server.spooled().is_empty(),
    );
}

#[test]
fn rejecting_smarthost_bounces_to_alices_maildir() {
    let sink = Sink::start(&["-f", "RCPT"]);
    let server = TestServer::with_config(&with_smarthost(sink.port()));
    submit_as_alice(&server, "bob@remote.test", "will bounce");
    let files = server.wait_maildir(ALICE, 1);
    let bounce = std::fs::read_to_string(&files[0]).unwrap();
    assert!(bounce.contains("multipart/report"), "{bounce}");
    assert!(bounce.contains("report-type=delivery-status"), "{bounce}");
    assert!(bounce.contains("Action: failed"), "{bounce}");
    assert!(bounce.contains("Status: 5.3.0"), "{bounce}");
    assert!(bounce.contains("bob@remote.test"), "{bounce}");
    assert!(bounce.contains("Subject: will bounce"), "{bounce}");
    assert!(sink.messages().iter().all(|m| !m.contains("Hi bob.")));
}

#[tokio::test]
async fn smtp_client_delivers_to_a_running_mailwit() {
    let server = TestServer::start();
    let mut config = client();
    config.tls = TlsPolicy::Opportunistic;
    let mut conn = Connection::connect(server.addr("mx"), "mail.example.test", &config)
        .await
        .unwrap();
    assert!(conn.is_tls(), "mailwit offers STARTTLS on its mx listener");
    let caps = conn.capabilities().clone();
    assert!(caps.pipelining && caps.eight_bit_mime, "{caps:?}");

    let rp = sender("carol@remote.test");
    let rcpts = [rcpt("bob@example.test"), rcpt("nobody@example.test")];
    let body = "Line one.\r\n.dot line\r\nGrüße\r\n";
    let msg = crate::support::outbound::message("from the client", body);
    for _ in 0..2 {
        let attempt = conn
            .send(&Outbound {
                queue_id: "E2E",
                reverse_path: &rp,
                recipients: &rcpts,
                message: &msg,
            })
            .await;
        assert!(
            matches!(
                &attempt.outcomes[..],
                [RecipientOutcome::Delivered(ok), RecipientOutcome::Failed(no)]
                    if ok.code == 250 && no.code == 550
            ),
            "{attempt:?}"
        );
    }
    conn.quit().await;
    let files = server.wait_maildir("bob@example.test", 2);
    for f in files {
        let stored = std::fs::read(f).unwrap();
        assert!(
            stored.ends_with(&msg[msg.len() - body.len()..]),
            "body stored byte for byte"
        );
    }
}
