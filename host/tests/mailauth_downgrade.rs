//! What the server signs reaches every peer unchanged: an 8-bit message from an authenticated
//! sender is made 7-bit (quoted-printable, RFC 6152 §3) before it is DKIM-signed, so a peer
//! without 8BITMIME gets it byte for byte (no downgrade on the way to break the signature), and
//! dkimpy verifies the stored copy. A 7-bit message goes to such a peer untouched
//! (delivery_agents::eight_bit_mime_…); here the relay is Postfix's smtp-sink with `-8`.

use crate::mailauth_dkim::{generate, python};
use crate::mailauth_dns::{DnsServer, Zone};
use crate::support;

use support::sink::Sink;
use support::{Client, TestServer};

#[test]
fn an_eight_bit_message_is_made_seven_bit_before_signing_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(Zone::new());
    let (key, name, value) = generate(dir.path(), "rsa", "example.test", "rsa");
    // No 8BITMIME at the relay: the message must already be 7-bit when it leaves.
    let relay = Sink::start(&["-8"]);
    let server = TestServer::with_config(&support::config(
        "",
        &format!(
            "{dns}\n[[dkim.sign]]\ndomain = \"example.test\"\nselector = \"rsa\"\nkey = \"{}\"\n\
             [routes.domains.\"relay.test\"]\n\
             relay = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n",
            key.display(),
            relay.port(),
            dns = dns.config_toml(),
        ),
    ));
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let message = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: 8bit\r\n\
                   MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n";
    let reply = c.send_mail(
        support::ALICE,
        &["bob@example.test", "x@relay.test"],
        message,
    );
    assert_eq!(reply.code, 250, "{reply:?}");

    // The stored copy: signed, 7-bit, quoted-printable, and dkimpy says pass.
    let files = server.wait_maildir("bob@example.test", 1);
    let stored = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(stored.is_ascii(), "{text}");
    assert!(text.contains("DKIM-Signature:"), "{text}");
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable"),
        "{text}"
    );
    assert!(text.contains("Gr=C3=BC=C3=9Fe aus K=C3=B6ln"), "{text}");
    let verified = python(&["verify", &format!("{name}={value}")], &stored);
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout).trim(),
        "pass",
        "{verified:?}"
    );

    // The relay without 8BITMIME took it (no 5.6.3 bounce), with the same signed body.
    let dumps = relay.wait_messages(1);
    assert_eq!(dumps.len(), 1, "{}", server.log());
    assert!(dumps[0].contains("DKIM-Signature:"), "{}", dumps[0]);
    assert!(
        dumps[0].contains("Gr=C3=BC=C3=9Fe aus K=C3=B6ln"),
        "{}",
        dumps[0]
    );
}
