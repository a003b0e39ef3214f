//! PROXY protocol behind Debian's HAProxy (send-proxy and send-proxy-v2), started by the test:
//! the real client address reaches the connection limits, the hooks (greylist's exempt_ips), the
//! Received header and the logs. A header from an untrusted source, or a malformed one, closes
//! the connection without a word.

use crate::support;

use support::ops::Haproxy;
use support::{Client, TestServer, config, message};

fn proxied_server() -> TestServer {
    TestServer::with_config(&config(
        "[server.limits]\nmax_connections_per_ip = 1\n",
        "[[listeners]]\nname = \"proxied\"\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n\
         pipeline = \"mx\"\nproxy_protocol = true\nproxy_trusted = [\"127.0.0.1/32\"]\n\
         [plugins.grey]\nbuiltin = \"greylist\"\n\
         grants = [\"config\", \"kv\", \"clock\", \"log\"]\n\
         config = { delay_secs = 600, exempt_ips = [\"127.0.0.77\", \"127.0.0.78\"] }\n\
         [pipelines.mx]\nrcpt = [\"grey\"]\n",
    ))
}

#[test]
fn haproxy_v1_and_v2_carry_the_real_client() {
    let server = proxied_server();
    let dir = tempfile::tempdir().unwrap();
    let backend = server.addr("proxied");
    let haproxy = Haproxy::start(
        dir.path(),
        &[
            ("v1", backend, "send-proxy"),
            ("v2", backend, "send-proxy-v2"),
        ],
    );
    for (frontend, client_ip) in [("v1", "127.0.0.77"), ("v2", "127.0.0.78")] {
        let mut client = Client::connect_raw_from(haproxy.frontend(frontend), Some(client_ip));
        assert_eq!(client.reply().code, 220, "{frontend}");
        // Per-IP limit 1: a second connection from the same real client is refused, while
        // the balancer's own address (127.0.0.1) carries both.
        let mut second = Client::connect_raw_from(haproxy.frontend(frontend), Some(client_ip));
        let refused = second.reply();
        assert_eq!(
            (refused.code, refused.enhanced()),
            (421, "4.7.0".into()),
            "{frontend}"
        );
        client.expect("EHLO client.test", 250);
        // The hook saw the real address: greylisting exempts it.
        let reply = client.send_mail(
            "sender@remote.test",
            &["bob@example.test"],
            &message(frontend, "behind haproxy"),
        );
        assert_eq!(reply.code, 250, "{frontend}: {reply:?}");
        client.expect("QUIT", 221);
    }
    // A client the greylist does not exempt, through the balancer: greylisted (the hook did
    // not see an exempt address, nor the balancer's).
    let mut other = Client::connect_raw_from(haproxy.frontend("v2"), Some("127.0.0.79"));
    assert_eq!(other.reply().code, 220);
    other.expect("EHLO client.test", 250);
    other.expect("MAIL FROM:<sender@remote.test>", 250);
    other.expect("RCPT TO:<bob@example.test>", 451);

    let messages = server.wait_maildir("bob@example.test", 2);
    let texts: Vec<String> = messages
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for ip in ["127.0.0.77", "127.0.0.78"] {
        assert!(
            texts.iter().any(|t| t.contains(&format!("[{ip}]"))),
            "no Received from {ip}:\n{texts:?}"
        );
    }
    assert!(
        texts.iter().all(|t| !t.contains("[127.0.0.1]")),
        "{texts:?}"
    );
    let log = server.log();
    assert!(log.contains("client=127.0.0.77:"), "{log}");
}

#[test]
fn untrusted_or_malformed_headers_close_the_connection() {
    let server = proxied_server();
    let addr = server.addr("proxied");
    // Not from a trusted network: closed before any greeting, even with a valid header.
    let mut untrusted = Client::connect_raw_from(addr, Some("127.0.0.2"));
    untrusted.send("PROXY TCP4 192.0.2.1 127.0.0.1 4000 25\r\n");
    assert!(untrusted.is_closed());
    // Trusted source, but no PROXY header (a client that bypassed the balancer).
    let mut bare = Client::connect_raw(addr);
    bare.send("EHLO client.test\r\n");
    assert!(bare.is_closed());
    // Trusted source, malformed header.
    let mut bad = Client::connect_raw(addr);
    bad.send("PROXY TCP4 192.0.2.1 127.0.0.1 99999 25\r\n");
    assert!(bad.is_closed());
    // A good header straight from a trusted source works.
    let mut good = Client::connect_raw(addr);
    good.send("PROXY TCP4 192.0.2.1 127.0.0.1 4000 25\r\n");
    assert_eq!(good.reply().code, 220);
    good.expect("QUIT", 221);
    let log = server.log();
    assert!(log.contains("untrusted source"), "{log}");
    assert!(log.contains("PROXY header refused"), "{log}");
    assert!(log.contains("client=192.0.2.1:4000"), "{log}");
}
