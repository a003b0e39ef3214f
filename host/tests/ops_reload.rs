//! Full reload of the real binary through `mailwit reload`: a listener added and a certificate
//! changed while four clients send (nothing dropped, every message delivered once); a listener
//! removed under an established session (the session finishes); a reload that cannot apply
//! (an address in use, a restart-only section) refused whole, the running configuration kept;
//! `[routes]` and `[queue]` replaced by a reload (the next message goes to the new relay).

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use support::{Client, TestServer, config, message};

fn listeners(server: &TestServer) -> HashMap<String, SocketAddr> {
    let text = std::fs::read_to_string(server.state_dir().join("listeners.json")).unwrap();
    let map: HashMap<String, String> = serde_json::from_str(&text).unwrap();
    map.into_iter()
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect()
}

const NO_WATCH: &str = "[admin]\nwatch_config = false\n";

fn tls_lines(dir: &Path) -> (String, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["mail.example.test".into()]).unwrap();
    let cert = dir.join("new-cert.pem");
    let key = dir.join("new-key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (
        format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        certified.cert.der().to_vec(),
    )
}

#[test]
fn reload_adding_a_listener_and_a_certificate_drops_nothing() {
    let server = TestServer::with_config(&config("", NO_WATCH));
    let mx = server.addr("mx");
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 15;
    let go = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS + 1));
    let senders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let go = go.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(mx);
                client.expect("EHLO client.test", 250);
                go.wait();
                for i in 0..PER_CLIENT {
                    // Every third message on a new connection: some connect across the reload.
                    if i % 3 == 2 {
                        client.expect("QUIT", 221);
                        client = Client::connect(mx);
                        client.expect("EHLO client.test", 250);
                    }
                    let reply = client.send_mail(
                        "sender@remote.test",
                        &["bob@example.test"],
                        &message(&format!("c{c}m{i}"), "during a reload"),
                    );
                    assert_eq!(reply.code, 250, "client {c} message {i}: {reply:?}");
                }
                client.expect("QUIT", 221);
            })
        })
        .collect();
    go.wait();
    let (tls, new_cert) = tls_lines(server.dir.path());
    std::fs::write(
        &server.config_path,
        config(
            &tls,
            &format!(
                "{NO_WATCH}[[listeners]]\nname = \"extra\"\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n"
            ),
        ),
    )
    .unwrap();
    let (ok, report) = server.reload();
    assert!(ok, "{report}\n{}", server.log());
    assert!(
        report.contains("listener extra: added on 127.0.0.1:"),
        "{report}"
    );
    assert!(
        report.contains("server.tls: certificate and key re-read"),
        "{report}"
    );
    assert!(report.contains("plugins: generation 2 live"), "{report}");
    for sender in senders {
        sender.join().expect("a sender failed");
    }
    let all = server.wait_maildir("bob@example.test", CLIENTS * PER_CLIENT);
    assert_eq!(all.len(), CLIENTS * PER_CLIENT);

    // The new listener takes mail; implicit TLS now shows the new certificate.
    let extra = listeners(&server)["extra"];
    let mut client = Client::connect(extra);
    client.expect("EHLO client.test", 250);
    let reply = client.send_mail("s@remote.test", &["alice@example.test"], &message("x", "y"));
    assert_eq!(reply.code, 250);
    let tls = Client::connect_tls(server.addr("submissions"));
    assert_eq!(tls.peer_certificate().unwrap(), new_cert);
}

#[test]
fn removed_listener_lets_its_sessions_finish() {
    let server = TestServer::with_config(&config("", NO_WATCH));
    let submission = server.addr("submission");
    let mut established = Client::connect(submission);
    established.expect("EHLO client.test", 250);
    // The same configuration without the submission listener.
    let text = config("", NO_WATCH).replace(
        "[[listeners]]\nname = \"submission\"\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n",
        "",
    );
    assert!(!text.contains("\"submission\""));
    std::fs::write(&server.config_path, text).unwrap();
    let (ok, report) = server.reload();
    assert!(ok, "{report}");
    assert!(report.contains("listener submission: removed"), "{report}");
    // The established session goes on; new connections are refused.
    established.expect("NOOP", 250);
    established.expect("EHLO again.test", 250);
    established.expect("QUIT", 221);
    assert!(std::net::TcpStream::connect(submission).is_err());
    assert!(!listeners(&server).contains_key("submission"));
}

#[test]
fn a_reload_that_cannot_apply_is_refused_whole() {
    let server = TestServer::with_config(&config("", NO_WATCH));
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = occupied.local_addr().unwrap();
    // A new listener on a taken address, plus a limit change: neither applies.
    std::fs::write(
        &server.config_path,
        config(
            "[server.limits]\nmax_recipients = 1\n",
            &format!(
                "{NO_WATCH}[[listeners]]\nname = \"extra\"\naddress = \"{taken}\"\nrole = \"mx\"\n"
            ),
        ),
    )
    .unwrap();
    let (ok, report) = server.reload();
    assert!(!ok, "{report}");
    assert!(report.contains("bind"), "{report}");
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    client.expect("MAIL FROM:<s@remote.test>", 250);
    client.expect("RCPT TO:<bob@example.test>", 250);
    client.expect("RCPT TO:<alice@example.test>", 250); // max_recipients is still 100
    client.expect("QUIT", 221);
    assert!(!listeners(&server).contains_key("extra"));

    // A section that needs a restart: refused with its name.
    std::fs::write(
        &server.config_path,
        config("", NO_WATCH).replace(
            "hostname = \"mail.example.test\"",
            "hostname = \"other.example.test\"",
        ),
    )
    .unwrap();
    let (ok, report) = server.reload();
    assert!(!ok, "{report}");
    assert!(report.contains("server.hostname"), "{report}");
    // A malformed file: refused with its line.
    std::fs::write(&server.config_path, "[server\n").unwrap();
    let (ok, report) = server.reload();
    assert!(!ok, "{report}");
    assert!(report.contains("mailwit.toml:1"), "{report}");
    // The server still answers with its first settings.
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    client.expect("QUIT", 221);
}

/// A `[routes]` entry sending `relay.test` to an smtp-sink, with fast retries.
fn relay_routes(port: u16) -> String {
    format!(
        "{NO_WATCH}[queue]\nretry_first = \"1s\"\nretry_max = \"2s\"\n\
         [routes.domains.\"relay.test\"]\n\
         relay = {{ host = \"127.0.0.1\", port = {port}, tls = \"none\" }}\n"
    )
}

#[test]
fn a_reload_replaces_routes_and_queue_settings() {
    let (first, second) = (
        support::sink::Sink::start(&[]),
        support::sink::Sink::start(&[]),
    );
    let server = TestServer::with_config(&config("", &relay_routes(first.port())));
    let send = |subject: &str| {
        // Relaying: alice, authenticated on the implicit-TLS submission port.
        let mut client = Client::connect_raw_from(server.addr("submissions"), None);
        client.upgrade();
        assert_eq!(client.reply().code, 220);
        client.expect("EHLO client.test", 250);
        client.login_alice();
        let reply = client.send_mail(
            "alice@example.test",
            &["x@relay.test"],
            &message(subject, "routed by [routes]"),
        );
        assert_eq!(reply.code, 250, "{reply:?}");
        client.expect("QUIT", 221);
    };
    send("before");
    assert!(first.wait_messages(1)[0].contains("Subject: before"));

    std::fs::write(
        &server.config_path,
        config("", &relay_routes(second.port())),
    )
    .unwrap();
    let (ok, report) = server.reload();
    assert!(ok, "{report}");
    assert!(report.contains("[queue]/[routes]"), "{report}");
    send("after");
    assert!(second.wait_messages(1)[0].contains("Subject: after"));
    assert_eq!(first.messages().len(), 1, "the old relay got nothing more");

    // The queue's total concurrency still needs a restart: refused with its name.
    std::fs::write(
        &server.config_path,
        config(
            "",
            &relay_routes(second.port()).replace("[queue]\n", "[queue]\nconcurrency = 7\n"),
        ),
    )
    .unwrap();
    let (ok, report) = server.reload();
    assert!(!ok, "{report}");
    assert!(report.contains("queue.concurrency"), "{report}");
}
