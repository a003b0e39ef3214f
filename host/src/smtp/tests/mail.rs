//! MAIL FROM: parameters, errors, sequence.

use super::*;

#[test]
fn mail_parameters_reach_the_engine() {
    let mut s = greeted(config());
    s.receive(
        b"EHLO c\r\nMAIL FROM:<a@c.example> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=id+2B1\r\n",
    );
    assert!(matches!(s.poll(), Some(Event::Ehlo { .. })));
    s.answer(Answer::Accept);
    let Some(Event::Mail(from)) = s.poll() else {
        panic!("no MAIL event")
    };
    assert_eq!(from.size, Some(100));
    assert_eq!(from.body, Some(crate::mail::BodyType::EightBitMime));
    assert_eq!(from.ret, Some(crate::mail::DsnRet::Hdrs));
    assert_eq!(from.envid.as_deref(), Some("id+1"));
    assert_eq!(s.envelope(), None);
    s.answer(Answer::Accept);
    assert_eq!(s.envelope().unwrap().reverse_path.address, "a@c.example");
}

#[test]
fn mail_errors() {
    let cases = [
        ("MAIL FROM:<a@c.example> SIZE=26214401", "552 5.3.4"),
        ("MAIL FROM:<a@c.example> BODY=BINARYMIME", "555 5.5.4"),
        ("MAIL FROM:<a@c.example> FOO=BAR", "555 5.5.4"),
        ("MAIL FROM:<a@c.example> SIZE=1 SIZE=2", "501 5.5.4"),
        ("MAIL FROM:<a@c.example> RET=NONE", "501 5.5.4"),
        ("MAIL FROM:a@c.example", "501 5.1.7"),
        ("MAIL FROM:<a@c.example.>", "501 5.1.7"),
        ("MAIL FROM:<jösé@c.example>", "553 5.6.7"),
        ("MAIL TO:<a@c.example>", "501 5.5.4"),
        ("MAIL", "501 5.5.4"),
    ];
    assert_replies("EHLO c\r\n", &[], &cases);
    let out = run(config(), b"EHLO c\r\nMAIL FROM:<\xff@c.example>\r\n");
    assert_eq!(out.codes(), ["501 5.5.4"]);
}

#[test]
fn mail_with_smtputf8_accepts_utf8() {
    let out = run_default(
        "EHLO c\r\nMAIL FROM:<jösé@bücher.example> SMTPUTF8\r\nRCPT TO:<ü@mx.example>\r\n",
    );
    assert_eq!(out.codes(), ["250 2.1.0", "250 2.1.5"]);
    let out = run_default("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<ü@mx.example>\r\n");
    assert_eq!(out.codes(), ["250 2.1.0", "553 5.6.7"]);
}

#[test]
fn mail_sequence_errors() {
    assert_eq!(
        run_default("MAIL FROM:<a@c.example>\r\n").codes(),
        ["503 5.5.1"]
    );
    let out = run_default("EHLO c\r\nMAIL FROM:<a@c.example>\r\nMAIL FROM:<a@c.example>\r\n");
    assert_eq!(out.codes(), ["250 2.1.0", "503 5.5.1"]);
}

#[test]
fn helo_session_gets_no_parameters() {
    let out = run_default("HELO c\r\nMAIL FROM:<a@c.example> BODY=8BITMIME\r\nMAIL FROM:<>\r\n");
    assert_eq!(out.codes(), ["555 5.5.4", "250 2.1.0"]);
}

#[test]
fn null_reverse_path_and_source_routes() {
    let out = run_default(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<@relay.example,@b.example:u@mx.example>\r\nDATA\r\n.\r\n",
    );
    let (envelope, _) = &out.messages[0];
    assert_eq!(envelope.reverse_path.address, "");
    assert_eq!(envelope.recipients[0].address, "u@mx.example");
}
