//! Relay control on the final envelope, in the real server: a plugin decision that would send an
//! unauthenticated session's mail off-site (a rcpt rewrite, a data-hook added recipient, a route
//! to a relay or MX for a local recipient) needs the plugin's "relay" grant; without it the core
//! refuses it and logs the plugin.

use crate::support;

use std::time::{Duration, Instant};

use support::{Client, PATIENCE, TestServer, config, message};

fn chaos() -> String {
    format!(
        "{}/mailwit_test_chaos.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    )
}

fn grants(relay: bool) -> &'static str {
    if relay {
        r#"["config", "log", "kv", "clock", "relay"]"#
    } else {
        r#"["config", "log", "kv", "clock"]"#
    }
}

fn rewriter(relay: bool) -> String {
    config(
        "",
        &format!(
            r#"
[plugins.rewriter]
path = "{chaos}"
grants = {grants}
config = {{ rcpt = "rewrite", rewrite_to = "carol@remote.test" }}

[pipelines.mx]
rcpt = ["rewriter"]

[pipelines.submissions]
rcpt = ["rewriter"]
"#,
            chaos = chaos(),
            grants = grants(relay)
        ),
    )
}

#[test]
fn an_off_site_rcpt_rewrite_without_the_relay_grant_is_refused_for_unauthenticated_clients() {
    let server = TestServer::with_config(&rewriter(false));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    client.expect("MAIL FROM:<dave@remote.test>", 250);
    let reply = client.cmd("RCPT TO:<bob@example.test>");
    assert_eq!(reply.code, 554, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.7.1");
    assert!(reply.text().contains("carol@remote.test"), "{reply:?}");
    client.expect("QUIT", 221);
    let log = server.log();
    assert!(
        log.contains("relay control") && log.contains("rewriter"),
        "{log}"
    );

    // An authenticated client may send off-site: the same rewrite stands.
    let mut client = Client::connect_tls(server.addr("submissions"));
    client.expect("EHLO c.example.test", 250);
    client.login_alice();
    client.expect("MAIL FROM:<alice@example.test>", 250);
    client.expect("RCPT TO:<bob@example.test>", 250);
    client.expect("QUIT", 221);
}

#[test]
fn the_relay_grant_lets_a_plugin_rewrite_off_site() {
    let server = TestServer::with_config(&rewriter(true));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    client.expect("MAIL FROM:<dave@remote.test>", 250);
    client.expect("RCPT TO:<bob@example.test>", 250);
    client.expect("QUIT", 221);
}

fn adder(relay: bool) -> String {
    config(
        "",
        &format!(
            r#"
[plugins.adder]
path = "{chaos}"
grants = {grants}
config = {{ data = "add-rcpt", add_rcpt = "carol@remote.test" }}
on_error = "reject"

[pipelines.mx]
data = ["adder"]
"#,
            chaos = chaos(),
            grants = grants(relay)
        ),
    )
}

#[test]
fn an_off_site_added_recipient_without_the_relay_grant_is_a_plugin_failure() {
    let server = TestServer::with_config(&adder(false));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    let reply = client.send_mail(
        "dave@remote.test",
        &["bob@example.test"],
        &message("added", "hello"),
    );
    assert_eq!(reply.code, 554, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.3.0");
    client.expect("QUIT", 221);
    let log = server.log();
    assert!(
        log.contains("relay control: add-recipient <carol@remote.test>") && log.contains("adder"),
        "{log}"
    );
    assert!(server.spooled().is_empty());

    let server = TestServer::with_config(&adder(true));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    let reply = client.send_mail(
        "dave@remote.test",
        &["bob@example.test"],
        &message("added", "hello"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    client.expect("QUIT", 221);
}

fn router(relay: bool, port: u16) -> String {
    config(
        "",
        &format!(
            r#"
[plugins.router]
path = "{chaos}"
grants = {grants}
config = {{ route = "relay", relay_host = "127.0.0.1", relay_port = {port} }}

[pipelines.queue]
route = ["router"]
"#,
            chaos = chaos(),
            grants = grants(relay)
        ),
    )
}

#[test]
fn routing_a_local_recipient_off_site_needs_the_relay_grant() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    // Without the grant the route table decides: bob's Maildir.
    let server = TestServer::with_config(&router(false, port));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    let reply = client.send_mail(
        "dave@remote.test",
        &["bob@example.test"],
        &message("routed", "hello"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    client.expect("QUIT", 221);
    assert_eq!(server.wait_maildir("bob@example.test", 1).len(), 1);
    assert!(listener.accept().is_err(), "nothing went off-site");
    let log = server.log();
    assert!(
        log.contains("relay control: routing local recipient <bob@example.test>"),
        "{log}"
    );
    drop(server);

    // With it, the plugin's relay gets the delivery attempt.
    let server = TestServer::with_config(&router(true, port));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    let reply = client.send_mail(
        "dave@remote.test",
        &["bob@example.test"],
        &message("routed", "hello"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    client.expect("QUIT", 221);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if listener.accept().is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no relay attempt\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.maildir("bob@example.test").is_empty());
}
