//! The greeting, EHLO and HELO.

use super::*;

#[test]
fn greeting_names_the_host() {
    let mut s = Session::new(config(), None);
    assert_eq!(s.timeout(), Timeout::Greeting);
    s.greet();
    assert_eq!(s.take_output(), b"220 mx.example ESMTP mailwit\r\n");
    assert_eq!(s.timeout(), Timeout::Command);
}

#[test]
fn no_command_is_processed_before_the_greeting() {
    let mut s = Session::new(config(), None);
    s.receive(b"EHLO x\r\n");
    assert!(s.poll().is_none());
    assert!(s.take_output().is_empty());
}

#[test]
fn ehlo_advertises_the_extensions() {
    let out = run(
        SessionConfig {
            starttls: true,
            auth: true,
            etrn: true,
            max_message_size: 1000,
            ..config()
        },
        b"EHLO client.example\r\n",
    );
    assert_eq!(out.events, ["ehlo client.example"]);
    assert_eq!(
        out.lines(),
        [
            "250-mx.example",
            "250-PIPELINING",
            "250-SIZE 1000",
            "250-ETRN",
            "250-STARTTLS",
            "250-ENHANCEDSTATUSCODES",
            "250-8BITMIME",
            "250-SMTPUTF8",
            "250-CHUNKING",
            "250-DSN",
            "250 HELP",
        ]
    );
}

#[test]
fn ehlo_offers_auth_in_plaintext_only_when_configured() {
    let out = run(
        SessionConfig {
            auth: true,
            auth_plaintext: true,
            ..config()
        },
        b"EHLO c\r\n",
    );
    assert!(out.lines().contains(&"250-AUTH PLAIN LOGIN"));
    let out = run(
        SessionConfig {
            auth: true,
            ..config()
        },
        b"EHLO c\r\n",
    );
    assert!(!out.output.contains("AUTH"));
    assert!(!out.output.contains("STARTTLS"));
}

#[test]
fn ehlo_under_tls_offers_auth_but_not_starttls() {
    let mut s = Session::new(
        SessionConfig {
            starttls: true,
            auth: true,
            ..config()
        },
        Some(tls_info()),
    );
    s.greet();
    let out = drive(&mut s, &[b"EHLO c\r\n"]);
    assert!(out.lines().contains(&"250-AUTH PLAIN LOGIN"));
    assert!(!out.output.contains("STARTTLS"));
}

#[test]
fn helo_advertises_nothing() {
    let out = run_default("HELO client.example\r\n");
    assert_eq!(out.output, "250 mx.example\r\n");
}

#[test]
fn ehlo_needs_a_name() {
    assert_eq!(run_default("EHLO\r\n").codes(), ["501 5.5.4"]);
    assert_eq!(run_default("EHLO a b\r\n").codes(), ["501 5.5.4"]);
}

#[test]
fn refused_ehlo_keeps_the_session_without_helo() {
    let mut s = greeted(config());
    s.receive(b"EHLO bad.example\r\nMAIL FROM:<a@b.example>\r\n");
    assert!(matches!(s.poll(), Some(Event::Ehlo { .. })));
    s.answer(Answer::Refuse(Reply::new(550, "5.7.1", "go away")));
    assert!(s.poll().is_none());
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "550 5.7.1 go away\r\n503 5.5.1 Send HELO/EHLO first\r\n"
    );
}
