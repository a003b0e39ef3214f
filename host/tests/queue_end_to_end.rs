//! Issue 4's "done when" against the real binary: alice submits mail for a remote domain and the
//! queue relays it to an smtp-sink smarthost; with the sink rejecting RCPT alice gets an RFC 3464
//! bounce in her Maildir; with the sink down, `mailwit queue summary` shows the deferred mail and
//! `mailwit queue flush` sends it once the sink is back. Also `mailwit queue` against the socket.

use crate::support::sink::Sink;
use crate::support::{Client, TestServer};
use std::process::Command;

fn free_port() -> u16 {
    crate::support::free_port("127.0.0.1")
}

fn server(sink_port: u16) -> TestServer {
    TestServer::with_config(&crate::support::config(
        "",
        &format!(
            "[queue]\nretry_first = \"1h\"\nclient_timeout = \"10s\"\n\n[routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {sink_port}, tls = \"none\" }}\n"
        ),
    ))
}

fn submit_as_alice(server: &TestServer, to: &[&str], subject: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let body = format!("From: alice@example.test\r\nSubject: {subject}\r\n\r\nHi there.\r\n");
    let reply = c.send_mail("alice@example.test", to, &body);
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

fn queue_cli(server: &TestServer, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .arg("queue")
        .arg("--state-dir")
        .arg(server.state_dir())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn alice_mail_for_a_remote_domain_reaches_the_smarthost() {
    let port = free_port();
    let sink = Sink::start_on("127.0.0.1", port, &[]);
    let server = server(port);
    submit_as_alice(&server, &["dave@remote.test"], "to the sink");
    crate::support::until_blocking("relayed", String::new, || sink.messages().len() == 1);
    let dump = &sink.messages()[0];
    assert!(dump.contains("Subject: to the sink"));
    assert!(
        dump.contains("Received: from"),
        "our Received header travels along"
    );
    crate::support::until_blocking("spool empty", String::new, || server.spooled().is_empty());
}

#[test]
fn rejected_rcpt_at_the_smarthost_bounces_to_alice() {
    let port = free_port();
    let _sink = Sink::start_on("127.0.0.1", port, &["-f", "RCPT"]);
    let server = server(port);
    submit_as_alice(&server, &["dave@remote.test"], "will bounce");
    let files = server.wait_maildir("alice@example.test", 1);
    let bounce = std::fs::read_to_string(&files[0]).unwrap();
    assert!(bounce.contains("Return-Path: <>"));
    assert!(bounce.contains("From: MAILER-DAEMON@mail.example.test"));
    assert!(bounce.contains("report-type=delivery-status"));
    assert!(bounce.contains("Final-Recipient: rfc822; dave@remote.test"));
    assert!(bounce.contains("Action: failed"));
    assert!(bounce.contains("Status: 5."));
    assert!(bounce.contains("Subject: will bounce"));
    crate::support::until_blocking("spool empty", String::new, || server.spooled().is_empty());
}

#[test]
fn queue_commands_while_the_smarthost_is_down() {
    let port = free_port();
    let server = server(port);
    submit_as_alice(&server, &["dave@remote.test", "erin@remote.test"], "waits");
    submit_as_alice(&server, &["frank@elsewhere.test"], "waits too");
    crate::support::until_blocking("deferred", String::new, || {
        let (_, json) = queue_cli(&server, &["--json", "list"]);
        let list: serde_json::Value = serde_json::from_str(&json).unwrap();
        let messages = list["messages"].as_array().unwrap();
        messages.len() == 2
            && messages.iter().all(|m| {
                m["active"] == false
                    && m["recipients"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r["status"] == "deferred")
            })
    });
    let (code, summary) = queue_cli(&server, &["summary"]);
    assert_eq!(code, 0, "{summary}");
    let remote = summary
        .lines()
        .find(|l| l.starts_with("remote.test"))
        .unwrap();
    let fields: Vec<&str> = remote.split_whitespace().collect();
    assert_eq!(&fields[1..3], ["2", "2"], "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("total") && l.contains(" 3"))
    );

    let (code, json) = queue_cli(&server, &["--json", "list"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let messages = list["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    let id = messages[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        messages[0]["recipients"][0]["last_reply"]["enhanced"],
        "4.4.1"
    );

    let (code, text) = queue_cli(&server, &["show", &id]);
    assert_eq!(code, 0);
    assert!(
        text.contains("deferred") && text.contains("attempts 1"),
        "{text}"
    );
    let (code, text) = queue_cli(&server, &["show", "not-an-id"]);
    assert_eq!(code, 2, "{text}");
    let (code, text) = queue_cli(&server, &["hold", "00000000000000FFFF"]);
    assert_eq!(code, 1, "{text}");

    let sink = Sink::start_on("127.0.0.1", port, &[]);
    let (code, text) = queue_cli(&server, &["flush", "remote.test"]);
    assert_eq!((code, text.trim()), (0, "1 messages flushed"));
    crate::support::until_blocking("remote.test relayed", String::new, || {
        sink.messages().len() == 1
    });
    crate::support::until_blocking("one message left", String::new, || {
        server.spooled().len() == 1
    });
    let (code, text) = queue_cli(&server, &["flush"]);
    assert_eq!((code, text.trim()), (0, "1 messages flushed"));
    crate::support::until_blocking("all relayed", String::new, || sink.messages().len() == 2);
    crate::support::until_blocking("spool empty", String::new, || server.spooled().is_empty());
    let (_, text) = queue_cli(&server, &["list"]);
    assert_eq!(text.trim(), "queue is empty");
}
