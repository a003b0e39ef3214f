//! Open-relay probes against the real `mailwit` binary: address tricks never relay for an
//! unauthenticated client. Each probe must get a 5xx at RCPT, and nothing may be spooled.

use crate::support::{Client, TestServer};

/// Recipients an unauthenticated client must not reach. `example.test` is the local domain.
const PROBES: &[&str] = &[
    // Plain remote, any case.
    "victim@elsewhere.test",
    "victim@ELSEWHERE.TEST",
    "Victim@Elsewhere.Test",
    // Percent hack (Sendmail's old routing), single and chained.
    "victim%elsewhere.test@example.test",
    "victim%elsewhere.test%example.test@example.test",
    "victim%40elsewhere.test@example.test",
    "bob%example.test@elsewhere.test",
    // Bang paths (UUCP).
    "elsewhere.test!victim@example.test",
    "elsewhere.test!victim",
    "example.test!elsewhere.test!victim@example.test",
    // Source routes: the last hop counts.
    "@example.test:victim@elsewhere.test",
    "@example.test,@example.test:victim@elsewhere.test",
    // Quoted local parts holding @ or routing characters.
    "\"victim@elsewhere.test\"@example.test",
    "\"victim@elsewhere.test\"",
    "\"victim%elsewhere.test\"@example.test",
    "\"elsewhere.test!victim\"@example.test",
    "\"bob\"@elsewhere.test",
    "\"victim\\@elsewhere.test\"@example.test",
    // Several @.
    "victim@elsewhere.test@example.test",
    "bob@example.test@elsewhere.test",
    // IP literals, ours and others.
    "bob@[127.0.0.1]",
    "victim@[192.0.2.1]",
    "bob@[IPv6:::1]",
    "victim@[IPv6:2001:db8::1]",
    "bob@[example.test]",
    // Trailing and doubled dots.
    "victim@elsewhere.test.",
    "bob@example.test.",
    "bob@example.test..",
    "bob@.example.test",
    // Look-alike and suffix domains.
    "bob@example.test.evil",
    "bob@evilexample.test",
    "bob@example.test.elsewhere.test",
    "bob@sub.example.test",
    "bob@example.tes",
    "bob@xample.test",
    "bob@example-test",
    "bob@example.testx",
    // UTF-8 look-alikes (Cyrillic а and е, fullwidth dot, zero-width space).
    "bob@ex\u{0430}mple.test",
    "bob@example.t\u{0435}st",
    "bob@example\u{ff0e}test",
    "bob@example.test\u{200b}",
    "bob@\u{0435}xample.test",
    // Comments and escapes that some parsers strip.
    "bob@example.test(elsewhere.test)",
    "victim@elsewhere.test(example.test)",
    "victim\\@elsewhere.test@example.test",
    // No domain at all (only Postmaster may go without one).
    "victim",
    "",
];

fn assert_probes_refused(c: &mut Client, smtputf8: bool) -> usize {
    let mail = if smtputf8 {
        "MAIL FROM:<a@remote.test> SMTPUTF8"
    } else {
        "MAIL FROM:<a@remote.test>"
    };
    c.expect(mail, 250);
    for rcpt in PROBES {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(
            (500..600).contains(&reply.code),
            "<{rcpt}> (smtputf8 {smtputf8}) not refused: {reply:?}"
        );
    }
    // Nothing was accepted, so there is no transaction to send.
    let data = c.cmd("DATA");
    assert!((500..600).contains(&data.code), "{data:?}");
    c.expect("RSET", 250);
    PROBES.len()
}

#[test]
fn address_tricks_never_relay_for_unauthenticated_clients() {
    let server = TestServer::with_config(&crate::support::config(
        "[server.limits]\nmax_bad_commands = 1000\n",
        "",
    ));
    let mut probes = 0;
    for greeting in ["EHLO client.test", "HELO client.test"] {
        let mut c = Client::connect(server.addr("mx"));
        c.expect(greeting, 250);
        probes += assert_probes_refused(&mut c, false);
        if greeting.starts_with("EHLO") {
            probes += assert_probes_refused(&mut c, true);
        }
        c.expect("QUIT", 221);
    }
    // Not-authenticated on the submission port: refused before any recipient.
    let mut c = Client::connect(server.addr("submission"));
    c.expect("EHLO client.test", 250);
    let reply = c.cmd("MAIL FROM:<a@remote.test>");
    assert!((500..600).contains(&reply.code), "{reply:?}");
    for rcpt in PROBES.iter().take(5) {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!((500..600).contains(&reply.code), "{rcpt}: {reply:?}");
        probes += 1;
    }
    eprintln!("relay probes refused: {probes}");
    assert!(probes >= 3 * PROBES.len());
    assert!(server.spooled().is_empty(), "a probe was spooled");
    assert!(server.all_messages().is_empty());
}

/// A refused probe does not poison the transaction: a local recipient next to refused ones
/// gets exactly one message, and no remote copy is spooled.
#[test]
fn local_recipient_among_refused_probes_gets_one_copy_and_nothing_relays() {
    let server = TestServer::with_config(&crate::support::config(
        "[server.limits]\nmax_bad_commands = 1000\n",
        "",
    ));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    for rcpt in PROBES {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!((500..600).contains(&reply.code), "{rcpt}: {reply:?}");
    }
    c.expect("DATA", 354);
    c.send(crate::support::message("probe", "hello"));
    c.expect(".", 250);
    c.expect("QUIT", 221);
    let delivered = server.wait_maildir("bob@example.test", 1);
    assert_eq!(delivered.len(), 1);
    // Delivered locally and gone from the spool: no remote recipient stayed behind.
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !server.spooled().is_empty() {
        assert!(std::time::Instant::now() < deadline, "still spooled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.all_messages().len(), 1);
    assert!(server.maildir("alice@example.test").is_empty());
}

/// Failed AUTH does not open the relay; neither does AUTH on a listener that refuses it.
#[test]
fn failed_auth_does_not_open_the_relay() {
    let server = TestServer::start();
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    let token = crate::support::b64(&format!("\0{}\0wrong", crate::support::ALICE));
    c.expect(&format!("AUTH PLAIN {token}"), 535);
    let reply = c.cmd("MAIL FROM:<alice@example.test>");
    assert!((500..600).contains(&reply.code), "{reply:?}");
    let reply = c.cmd("RCPT TO:<victim@elsewhere.test>");
    assert!((500..600).contains(&reply.code), "{reply:?}");

    // The MX listener does not offer AUTH in plaintext.
    let mut mx = Client::connect(server.addr("mx"));
    mx.expect("EHLO client.test", 250);
    let token = crate::support::b64(&format!(
        "\0{}\0{}",
        crate::support::ALICE,
        crate::support::ALICE_PASSWORD
    ));
    let reply = mx.cmd(&format!("AUTH PLAIN {token}"));
    assert!((500..600).contains(&reply.code), "{reply:?}");
    mx.expect("MAIL FROM:<alice@example.test>", 250);
    let reply = mx.cmd("RCPT TO:<victim@elsewhere.test>");
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (554, "5.7.1"),
        "{reply:?}"
    );
    assert!(server.all_messages().is_empty());
}
