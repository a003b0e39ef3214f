//! STARTTLS.

use super::*;

fn starttls_config() -> SessionConfig {
    SessionConfig {
        starttls: true,
        ..config()
    }
}

/// STARTTLS with AUTH PLAIN allowed before it.
fn starttls_auth_config() -> SessionConfig {
    SessionConfig {
        auth: true,
        auth_plaintext: true,
        ..starttls_config()
    }
}

#[test]
fn starttls_discards_pipelined_input_and_resets_state() {
    let mut s = greeted(starttls_config());
    s.receive(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n");
    assert!(matches!(s.poll(), Some(Event::Ehlo { .. })));
    s.answer(Answer::Accept);
    assert!(matches!(s.poll(), Some(Event::StartTls)));
    assert_eq!(s.timeout(), Timeout::None);
    assert!(s.poll().is_none());
    let text = String::from_utf8(s.take_output()).unwrap();
    assert!(
        text.ends_with("250 HELP\r\n220 2.0.0 Ready to start TLS\r\n"),
        "{text}"
    );
    s.receive(b"MAIL FROM:<also-injected@evil.example>\r\n");
    s.tls_started(tls_info());
    assert!(s.poll().is_none(), "injected command must be gone");
    assert!(s.take_output().is_empty());
    assert_eq!(s.helo(), None);
    assert_eq!(s.tls(), Some(&tls_info()));
    let out = drive(
        &mut s,
        &[b"MAIL FROM:<a@b.example>\r\nEHLO c\r\nSTARTTLS\r\n"],
    );
    assert_eq!(out.codes(), ["503 5.5.1", "503 5.5.1"]);
    assert!(!out.output.contains("STARTTLS"));
}

#[test]
fn starttls_not_configured() {
    assert_eq!(run_default("EHLO c\r\nSTARTTLS\r\n").codes(), ["502 5.5.1"]);
    assert_eq!(
        run(starttls_config(), b"EHLO c\r\nSTARTTLS now\r\n").codes(),
        ["501 5.5.4"]
    );
}

#[test]
fn starttls_forgets_authentication_and_transaction() {
    let out = run(
        starttls_auth_config(),
        b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTARTTLS\r\n",
    );
    assert!(out.events.contains(&"auth PLAIN alice secret".to_string()));
    assert!(out.output.contains("235 2.7.0"));
    let mut s = greeted(starttls_auth_config());
    drive(
        &mut s,
        &[b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<>\r\n"],
    );
    assert_eq!(s.authenticated(), Some("alice"));
    assert!(s.envelope().is_some());
    drive(&mut s, &[b"RSET\r\nSTARTTLS\r\n"]);
    assert_eq!(s.authenticated(), None);
    assert!(s.envelope().is_none());
}
