//! TLS and AUTH against the real binary: lettre over plaintext, STARTTLS and implicit TLS;
//! raw dialogs for STARTTLS injection (CVE-2011-0411), TLS versions, AUTH mechanisms.

use crate::support::{ALICE, ALICE_PASSWORD, Client, TestServer, b64};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

fn email(to: &str, subject: &str) -> Message {
    Message::builder()
        .from(ALICE.parse::<Mailbox>().unwrap())
        .to(to.parse::<Mailbox>().unwrap())
        .subject(subject)
        .body(format!("Body of {subject}\r\n"))
        .unwrap()
}

fn tls_params() -> TlsParameters {
    TlsParameters::builder("mail.example.test".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap()
}

fn transport(port: u16, tls: Tls, auth: bool) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .hello_name(ClientId::Domain("lettre.test".into()))
        .tls(tls);
    if auth {
        builder = builder
            .credentials(Credentials::new(ALICE.into(), ALICE_PASSWORD.into()))
            .authentication(vec![Mechanism::Plain]);
    }
    builder.build()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn lettre_plaintext_starttls_and_implicit_tls() {
    let server = TestServer::start();
    // Plaintext to the mx listener, no AUTH.
    let mx = transport(server.addr("mx").port(), Tls::None, false);
    let sent = mx
        .send(email("bob@example.test", "lettre-plain"))
        .await
        .unwrap();
    assert_eq!(u16::from(sent.code()), 250);
    // Submission with STARTTLS + AUTH PLAIN; relays to a remote domain (stays spooled).
    let sub = transport(
        server.addr("submission").port(),
        Tls::Required(tls_params()),
        true,
    );
    let sent = sub
        .send(email("carol@remote.test", "lettre-starttls"))
        .await
        .unwrap();
    assert_eq!(u16::from(sent.code()), 250);
    // Submissions: implicit TLS + AUTH.
    let subs = transport(
        server.addr("submissions").port(),
        Tls::Wrapper(tls_params()),
        true,
    );
    let sent = subs
        .send(email("bob@example.test", "lettre-implicit"))
        .await
        .unwrap();
    assert_eq!(u16::from(sent.code()), 250);

    let all = server.all_messages();
    assert_eq!(all.len(), 3);
    let find = |subject: &str| {
        all.iter()
            .find(|m| contains(m, &format!("Subject: {subject}")))
            .unwrap_or_else(|| panic!("{subject} not stored"))
    };
    assert!(contains(find("lettre-plain"), "with ESMTP\r\n"));
    let starttls = find("lettre-starttls");
    assert!(
        contains(starttls, "with ESMTPSA\r\n\t(using TLSv1."),
        "{}",
        String::from_utf8_lossy(starttls)
    );
    assert!(contains(
        find("lettre-implicit"),
        "with ESMTPSA\r\n\t(using TLSv1.3 with cipher TLS13_"
    ));
}

#[tokio::test]
async fn lettre_wrong_password_is_refused() {
    let server = TestServer::start();
    let sub = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.addr("submissions").port())
        .tls(Tls::Wrapper(tls_params()))
        .credentials(Credentials::new(ALICE.into(), "wrong".into()))
        .build();
    let err = sub
        .send(email("bob@example.test", "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(u16::from), Some(535), "{err}");
    assert_eq!(server.all_messages().len(), 0);
}

#[test]
fn starttls_discards_pipelined_commands() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    // CVE-2011-0411: a command injected after STARTTLS in the same packet must not run under TLS.
    c.send("STARTTLS\r\nRSET\r\n");
    let ready = c.reply();
    assert_eq!((ready.code, ready.enhanced().as_str()), (220, "2.0.0"));
    c.upgrade();
    // The first reply under TLS answers our NOOP, not the injected RSET.
    let noop = c.cmd("NOOP");
    assert_eq!(noop.code, 250);
    assert!(noop.text().contains("2.0.0"), "{noop:?}");
    // All state was reset: EHLO again, and now STARTTLS is no longer offered.
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.text().contains("STARTTLS"), "{ehlo:?}");
    let again = c.cmd("STARTTLS");
    assert!(again.code == 503 || again.code == 502, "{again:?}");
    c.expect("QUIT", 221);
}

#[test]
fn starttls_resets_helo_and_auth_offer_follows_tls() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("submission"));
    c.expect("EHLO client.test", 250);
    c.expect("STARTTLS", 220);
    c.upgrade();
    assert!(c.tls_version().is_some());
    let mail = c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(
        mail.code, 503,
        "EHLO required again after STARTTLS: {mail:?}"
    );
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.text().contains("AUTH PLAIN LOGIN"), "{ehlo:?}");
    c.login_alice();
    let reply = c.send_mail(
        ALICE,
        &["bob@example.test"],
        &crate::support::message("sub", "x"),
    );
    assert_eq!(reply.code, 250);
    c.expect("QUIT", 221);
}

#[test]
fn tls12_and_tls13_both_work() {
    let server = TestServer::start();
    for (version, label) in [
        (&rustls::version::TLS12, "TLSv1.2"),
        (&rustls::version::TLS13, "TLSv1.3"),
    ] {
        let stream = std::net::TcpStream::connect(server.addr("submissions")).unwrap();
        stream
            .set_read_timeout(Some(crate::support::PATIENCE))
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("mail.example.test").unwrap();
        let conn =
            rustls::ClientConnection::new(crate::support::tls_client_config_version(version), name)
                .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, stream);
        use std::io::{BufRead, BufReader, Write};
        let mut greeting = String::new();
        let mut reader = BufReader::new(&mut tls);
        reader.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("220 "), "{greeting}");
        drop(reader);
        tls.write_all(b"EHLO v.test\r\n").unwrap();
        let mut reader = BufReader::new(&mut tls);
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) == Some(&b' ') {
                break;
            }
        }
        drop(reader);
        let negotiated = tls.conn.protocol_version().unwrap();
        assert_eq!(format!("{negotiated:?}").replace('_', "."), label);
    }
}

#[test]
fn auth_mechanisms_and_failures() {
    let server = TestServer::with_config(&crate::support::config(
        "[server.limits]\nmax_auth_failures = 2\n",
        "",
    ));
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    // AUTH LOGIN, challenge-response.
    c.expect("AUTH LOGIN", 334);
    c.expect(&b64(ALICE), 334);
    c.expect(&b64(ALICE_PASSWORD), 235);
    let again = c.cmd("AUTH PLAIN");
    assert_eq!(again.code, 503, "already authenticated: {again:?}");
    c.expect("QUIT", 221);

    // PLAIN without initial response; `*` cancels.
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.expect("AUTH PLAIN", 334);
    let cancel = c.cmd("*");
    assert_eq!(cancel.code, 501, "{cancel:?}");
    c.expect("AUTH PLAIN", 334);
    c.expect(&b64(&format!("\0{ALICE}\0{ALICE_PASSWORD}")), 235);
    c.expect("QUIT", 221);

    // Wrong passwords: 535 5.7.8, then the session is closed.
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    let bad = c.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{ALICE}\0nope"))));
    assert_eq!((bad.code, bad.enhanced().as_str()), (535, "5.7.8"));
    let unknown = c.cmd(&format!("AUTH PLAIN {}", b64("\0mallory@example.test\0x")));
    assert!(unknown.code == 535 || unknown.code == 421, "{unknown:?}");
    if unknown.code == 535 {
        let closed = c.reply();
        assert_eq!(closed.code, 421, "{closed:?}");
    }
    assert!(c.is_closed());
}

#[test]
fn authenticated_relay_and_unauthenticated_refusal() {
    let server = TestServer::start();
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    c.expect(&format!("MAIL FROM:<{ALICE}>"), 250);
    c.expect("RCPT TO:<carol@remote.test>", 250);
    c.expect("RSET", 250);
    c.expect("QUIT", 221);
    // The same recipient without AUTH over the mx listener: refused.
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<someone@remote.test>", 250);
    let denied = c.cmd("RCPT TO:<carol@remote.test>");
    assert_eq!((denied.code, denied.enhanced().as_str()), (554, "5.7.1"));
}

#[test]
fn certificate_and_key_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["mail.example.test".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let server = TestServer::with_config(&crate::support::config(
        &format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
        "",
    ));
    // Implicit TLS and STARTTLS both present the configured certificate.
    let c = Client::connect_tls(server.addr("submissions"));
    assert_eq!(c.peer_certificate().unwrap(), certified.cert.der().to_vec());
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("STARTTLS", 220);
    c.upgrade();
    assert_eq!(c.peer_certificate().unwrap(), certified.cert.der().to_vec());
    c.expect("EHLO client.test", 250);
    assert!(!server.log().contains("self-signed"), "{}", server.log());
}
