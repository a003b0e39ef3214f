//! Contract 0.2.0 in the real server: a plugin built against 0.1.0 still loads and every one of
//! its hooks works; the outbound hook edits, defers, fails and re-routes real delivery attempts;
//! a real Wasm delivery hook (the first-party delivery-log) hears every outcome.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Client, PATIENCE, TestServer, config, message};

fn wasm(name: &str) -> String {
    format!("{}/{name}.wasm", env!("MAILWIT_PLUGIN_WASM_DIR"))
}

/// Waits until the server log contains `needle`.
fn wait_log(server: &TestServer, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = server.log();
        if log.contains(needle) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_plugin_built_against_0_1_0_loads_and_every_hook_works() {
    let server = TestServer::with_config(&config(
        "",
        &format!(
            r#"
[plugins.legacy]
path = "{legacy}"
grants = ["log", "kv"]

[pipelines.mx]
mail = ["legacy"]
rcpt = ["legacy"]
data = ["legacy"]

[pipelines.queue]
route = ["legacy"]
delivery = ["legacy"]
"#,
            legacy = wasm("mailwit_test_legacy_v01")
        ),
    ));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    // mail: refuses the legacy-reject@ sender.
    let reply = client.cmd("MAIL FROM:<legacy-reject@remote.test>");
    assert_eq!(reply.code, 550, "{reply:?}");
    assert!(reply.text().contains("legacy 0.1"), "{reply:?}");
    // rcpt: legacy-alias@ becomes bob@; data: X-Legacy; route: bob's copy goes to alice.
    client.expect("MAIL FROM:<carol@remote.test>", 250);
    client.expect("RCPT TO:<legacy-alias@example.test>", 250);
    client.expect("DATA", 354);
    client.send(message("hello-legacy", "from a 0.1.0 plugin"));
    client.send(".\r\n");
    assert_eq!(client.reply().code, 250);
    client.expect("QUIT", 221);

    let files = server.wait_maildir("alice@example.test", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("X-Legacy: 0.1 hello-legacy\r\n"), "{text}");
    assert!(server.maildir("bob@example.test").is_empty());
    // delivery: the 0.1 event (with `message-id`) reached the plugin.
    wait_log(&server, "legacy delivery ");
    let log = server.log();
    assert!(log.contains("bob@example.test delivered (#1)"), "{log}");
}

/// A minimal SMTP receiver on loopback: accepts everything, keeps each message's data.
struct Sink {
    port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = store.clone();
                std::thread::spawn(move || Sink::serve(stream, store));
            }
        });
        Sink { port, messages }
    }

    fn serve(stream: TcpStream, store: Arc<Mutex<Vec<String>>>) {
        let mut out = stream.try_clone().unwrap();
        let mut input = BufReader::new(stream);
        let _ = out.write_all(b"220 sink.test ESMTP\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            if input.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 sink.test\r\n",
                "DATA" => {
                    let _ = out.write_all(b"354 go ahead\r\n");
                    let mut data = String::new();
                    loop {
                        let mut l = String::new();
                        if input.read_line(&mut l).unwrap_or(0) == 0 {
                            return;
                        }
                        if l == ".\r\n" {
                            break;
                        }
                        data.push_str(&l);
                    }
                    store.lock().unwrap().push(data);
                    b"250 2.0.0 stored\r\n"
                }
                "QUIT" => {
                    let _ = out.write_all(b"221 bye\r\n");
                    return;
                }
                _ => b"250 2.0.0 ok\r\n",
            };
            if out.write_all(reply).is_err() {
                return;
            }
        }
    }

    fn wait(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.messages.lock().unwrap().clone();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "sink got {} of {count}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn submit(server: &TestServer, to: &str, subject: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let body = message(subject, "outbound test").replacen(
        "\r\n\r\n",
        "\r\nX-Internal: do-not-leak\r\n\r\n",
        1,
    );
    let reply = c.send_mail("alice@example.test", &[to], &body);
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

#[test]
fn the_outbound_hook_edits_defers_fails_and_reroutes_and_the_delivery_hook_hears_every_outcome() {
    let relay = Sink::start();
    let rerouted = Sink::start();
    let server = TestServer::with_config(&config(
        "",
        &format!(
            r#"
[plugins.router]
path = "{chaos}"
grants = ["config", "log", "kv", "clock", "relay"]
config = {{ route = "relay", relay_host = "127.0.0.1", relay_port = {relay}, outbound = "edit", reroute_port = {rerouted} }}

[plugins.delivery-log]
builtin = "delivery-log"
grants = ["log", "kv"]

[pipelines.queue]
route = ["router"]
outbound = ["router"]
delivery = ["delivery-log"]
"#,
            chaos = wasm("mailwit_test_chaos"),
            relay = relay.port,
            rerouted = rerouted.port,
        ),
    ));
    submit(&server, "ok@remote.test", "s-ok");
    submit(&server, "defer@remote.test", "s-defer");
    submit(&server, "bounce@remote.test", "s-bounce");
    submit(&server, "reroute@remote.test", "s-reroute");

    // Edited on its way out: a header added, one removed.
    let sent = relay.wait(1);
    let ok = sent.iter().find(|m| m.contains("Subject: s-ok")).unwrap();
    assert!(
        ok.contains("X-Outbound: relay 127.0.0.1 attempt=1 s-ok\r\n"),
        "{ok}"
    );
    assert!(!ok.contains("X-Internal"), "{ok}");
    // Re-routed to the other relay.
    let other = rerouted.wait(1);
    assert!(other[0].contains("Subject: s-reroute"), "{}", other[0]);

    // The delivery hook heard each outcome; deferred and bounced carry the hook's reply.
    wait_log(&server, "ok@remote.test delivered");
    wait_log(&server, "reroute@remote.test delivered");
    let log = wait_log(
        &server,
        "defer@remote.test deferred attempts=1 reply=451 4.7.1",
    );
    let log = if log.contains("bounce@remote.test bounced") {
        log
    } else {
        wait_log(
            &server,
            "bounce@remote.test bounced attempts=1 reply=550 5.7.1",
        )
    };
    assert!(log.contains("(bounced to remote.test: 1)"), "{log}");
    // Neither the deferred nor the bounced message reached a relay (the bounce's DSN to alice
    // quotes it, and is routed by the same plugin).
    let all: Vec<String> = relay
        .messages
        .lock()
        .unwrap()
        .iter()
        .chain(rerouted.messages.lock().unwrap().iter())
        .cloned()
        .collect();
    assert!(
        !all.iter().any(|m| !m.contains("MAILER-DAEMON")
            && (m.contains("Subject: s-defer") || m.contains("Subject: s-bounce"))),
        "{all:?}"
    );
}

/// Our DKIM signature is made at submission, before any outbound attempt: an outbound edit of a
/// field the signature covers (Subject here) is dropped with a warning, other edits apply, and
/// the relayed message still verifies in dkimpy.
#[test]
fn outbound_edits_that_would_break_our_dkim_signature_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (key, name, value) =
        crate::mailauth_dkim::generate(dir.path(), "rsa", "example.test", "rsa");
    let relay = Sink::start();
    let server = TestServer::with_config(&config(
        "",
        &format!(
            r#"
[[dkim.sign]]
domain = "example.test"
selector = "rsa"
key = "{key}"

[plugins.router]
path = "{chaos}"
grants = ["config", "log", "kv", "clock", "relay"]
config = {{ route = "relay", relay_host = "127.0.0.1", relay_port = {relay}, outbound = "edit", outbound_replace = "Subject" }}

[pipelines.queue]
route = ["router"]
outbound = ["router"]
"#,
            key = key.display(),
            chaos = wasm("mailwit_test_chaos"),
            relay = relay.port,
        ),
    ));
    submit(&server, "ok@remote.test", "s-signed");
    let sent = relay.wait(1);
    let m = &sent[0];
    assert!(m.contains("DKIM-Signature:"), "{m}");
    assert!(m.contains("Subject: s-signed\r\n"), "{m}");
    assert!(!m.contains("replaced by chaos"), "{m}");
    assert!(m.contains("X-Outbound: relay"), "unsigned field added: {m}");
    assert!(!m.contains("X-Internal"), "unsigned field removed: {m}");
    let verified =
        crate::mailauth_dkim::python(&["verify", &format!("{name}={value}")], m.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout).trim(),
        "pass",
        "{verified:?}"
    );
    wait_log(&server, "outbound header edit dropped");
}
