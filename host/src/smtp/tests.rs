//! Session-level tests: whole dialogues fed as bytes, asserting the exact replies and events.

use super::*;
use crate::mail::{Notify, Reply};

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.example".into(),
        ..SessionConfig::default()
    }
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
}

/// What a dialogue produced.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    output: String,
    messages: Vec<(Envelope, Vec<u8>)>,
    events: Vec<String>,
    closed: bool,
}

impl Outcome {
    fn lines(&self) -> Vec<&str> {
        self.output
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .collect()
    }
    /// The reply codes with enhanced codes, e.g. "250 2.1.0", one per reply (its last line).
    /// EHLO/HELO answers (no enhanced code) are left out; 354 appears as "354 End".
    fn codes(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .filter(|c| c.starts_with("354") || c[4..].split('.').count() == 3)
            .collect()
    }
}

/// The engine stand-in: accepts everything, passwords are "secret", messages get queue ids.
fn auto_answer(session: &mut Session, event: &Event, out: &mut Outcome) -> Option<Answer> {
    out.events.push(match event {
        Event::Ehlo { name, .. } => format!("ehlo {name}"),
        Event::Auth(c) => format!("auth {} {} {}", c.mechanism, c.authcid, c.secret),
        Event::Mail(f) => format!("mail {}", f.address),
        Event::Rcpt(r) => format!("rcpt {}", r.address),
        Event::Message { .. } => "message".into(),
        Event::StartTls => "starttls".into(),
        Event::Etrn { domain } => format!("etrn {domain}"),
        Event::Close => "close".into(),
    });
    match event {
        Event::Auth(c) if c.secret == "secret" => Some(Answer::Authenticated(c.authcid.clone())),
        Event::Auth(_) => Some(Answer::Refuse(Reply::new(
            535,
            "5.7.8",
            "Authentication credentials invalid",
        ))),
        Event::Rcpt(r) if r.address.starts_with("alias@") => {
            Some(Answer::AcceptAs("target@mx.example".into()))
        }
        Event::Rcpt(r) if r.address.starts_with("unknown@") => {
            Some(Answer::Refuse(Reply::new(550, "5.1.1", "No such user")))
        }
        Event::Message { envelope, data } => {
            out.messages.push((envelope.clone(), data.clone()));
            Some(Answer::Queued(format!("Q{}", out.messages.len())))
        }
        Event::StartTls => {
            out.output
                .push_str(std::str::from_utf8(&session.take_output()).unwrap());
            session.tls_started(tls_info());
            None
        }
        Event::Close => {
            out.closed = true;
            None
        }
        _ => Some(Answer::Accept),
    }
}

fn drive(session: &mut Session, pieces: &[&[u8]]) -> Outcome {
    let mut out = Outcome::default();
    let pump = |session: &mut Session, out: &mut Outcome| {
        while let Some(event) = session.poll() {
            if let Some(answer) = auto_answer(session, &event, out) {
                session.answer(answer);
            }
        }
        out.output
            .push_str(&String::from_utf8_lossy(&session.take_output()));
    };
    pump(session, &mut out);
    for piece in pieces {
        session.receive(piece);
        pump(session, &mut out);
    }
    out
}

fn greeted(config: SessionConfig) -> Session {
    let mut s = Session::new(config, None);
    s.greet();
    s.take_output();
    s
}

/// Runs `input` in one piece on a fresh greeted session.
fn run(config: SessionConfig, input: &[u8]) -> Outcome {
    drive(&mut greeted(config), &[input])
}

fn run_default(input: &str) -> Outcome {
    run(config(), input.as_bytes())
}

const TX: &str =
    "EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<b@mx.example>\r\n";

// ---------------------------------------------------------------- greeting, EHLO, HELO

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

// ---------------------------------------------------------------- a transaction

#[test]
fn a_whole_transaction() {
    let out = run_default(&format!(
        "{TX}DATA\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"
    ));
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert!(out.output.contains("250 2.0.0 Ok: queued as Q1\r\n"));
    assert_eq!(out.messages.len(), 1);
    let (envelope, data) = &out.messages[0];
    assert_eq!(envelope.reverse_path.address, "a@client.example");
    assert_eq!(envelope.recipients[0].address, "b@mx.example");
    assert_eq!(data, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    assert!(out.closed);
    assert_eq!(out.events.last().unwrap(), "close");
}

#[test]
fn pipelined_batch_gets_replies_in_order() {
    let out = run_default(
        "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example>\r\nRCPT TO:<unknown@mx.example>\r\n\
         RCPT TO:<alias@mx.example>\r\nNOOP\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<>\r\nRSET\r\nQUIT\r\n",
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "250 2.0.0",
            "354 End",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    let recipients: Vec<_> = out.messages[0]
        .0
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(recipients, ["b@mx.example", "target@mx.example"]);
}

#[test]
fn nothing_after_354_is_read_as_a_command() {
    let out = run_default(&format!("{TX}DATA\r\nQUIT\r\nRSET\r\n.\r\nNOOP\r\n"));
    assert_eq!(out.messages[0].1, b"QUIT\r\nRSET\r\n");
    assert!(!out.closed);
    assert_eq!(out.codes().last().unwrap(), "250 2.0.0");
}

/// Feeding the same dialogue whole, byte by byte, or split at any point gives the same result.
#[test]
fn split_input_at_every_byte_boundary() {
    let script = format!(
        "{TX}DATA\r\nA: b\r\n\r\n..x\r\n\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<c@mx.example> NOTIFY=NEVER\r\n\
         BDAT 7\r\nhello\r\nBDAT 4 LAST\r\nab\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<d@mx.example>\r\n\
         DATA\r\nbad\nline\r\n.\r\nAUTH PLAIN\r\nFOO\r\nRSET\r\nQUIT\r\n"
    );
    let script = script.as_bytes();
    let whole = run(config(), script);
    assert_eq!(whole.messages.len(), 2);
    assert!(whole.output.contains("554 5.6.0"));
    let bytes: Vec<&[u8]> = script.chunks(1).collect();
    assert_eq!(drive(&mut greeted(config()), &bytes), whole);
    for step in [2, 3, 5, 7, 13] {
        let pieces: Vec<&[u8]> = script.chunks(step).collect();
        assert_eq!(drive(&mut greeted(config()), &pieces), whole, "step {step}");
    }
    for cut in 0..script.len() {
        let (a, b) = script.split_at(cut);
        assert_eq!(
            drive(&mut greeted(config()), &[a, b]),
            whole,
            "cut at {cut}"
        );
    }
}

// ---------------------------------------------------------------- MAIL

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
    let cases: &[(&str, &str)] = &[
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
    for (line, code) in cases {
        let out = run_default(&format!("EHLO c\r\n{line}\r\n"));
        assert_eq!(out.codes(), [*code], "{line}");
    }
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

// ---------------------------------------------------------------- RCPT

#[test]
fn rcpt_parameters_reach_the_engine() {
    let out = run_default(
        "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@mx.example\r\n\
         RCPT TO:<Postmaster>\r\nRCPT TO:<\"x y\"@[192.0.2.1]> NOTIFY=NEVER\r\nDATA\r\n.\r\n",
    );
    let rcpts = &out.messages[0].0.recipients;
    assert_eq!(
        rcpts[0].notify,
        Some(Notify {
            success: true,
            failure: true,
            delay: false
        })
    );
    assert_eq!(rcpts[0].orcpt.as_deref(), Some("rfc822;b@mx.example"));
    assert_eq!(rcpts[1].address, "Postmaster");
    assert_eq!(rcpts[2].address, "\"x y\"@[192.0.2.1]");
    assert_eq!(rcpts[2].notify, Some(Notify::default()));
}

#[test]
fn rcpt_errors() {
    let cases: &[(&str, &str)] = &[
        ("RCPT TO:<b@mx.example> NOTIFY=NEVER,DELAY", "501 5.5.4"),
        (
            "RCPT TO:<b@mx.example> NOTIFY=SUCCESS NOTIFY=DELAY",
            "501 5.5.4",
        ),
        ("RCPT TO:<b@mx.example> SIZE=10", "555 5.5.4"),
        ("RCPT TO:<>", "501 5.1.3"),
        ("RCPT TO:<b@mx..example>", "501 5.1.3"),
        ("RCPT TO:b@mx.example", "501 5.1.3"),
    ];
    for (line, code) in cases {
        let out = run_default(&format!("EHLO c\r\nMAIL FROM:<>\r\n{line}\r\n"));
        assert_eq!(out.codes(), ["250 2.1.0", *code], "{line}");
    }
    assert_eq!(
        run_default("EHLO c\r\nRCPT TO:<b@mx.example>\r\n").codes(),
        ["503 5.5.1"]
    );
}

#[test]
fn recipient_limit() {
    let mut input = String::from("EHLO c\r\nMAIL FROM:<>\r\n");
    for i in 0..4 {
        input.push_str(&format!("RCPT TO:<r{i}@mx.example>\r\n"));
    }
    input.push_str("DATA\r\n.\r\n");
    let out = run(
        SessionConfig {
            max_recipients: 3,
            ..config()
        },
        input.as_bytes(),
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354 End",
            "250 2.0.0"
        ]
    );
    assert_eq!(out.messages[0].0.recipients.len(), 3);
}

// ---------------------------------------------------------------- DATA

#[test]
fn data_sequence_errors() {
    assert_eq!(run_default("EHLO c\r\nDATA\r\n").codes(), ["503 5.5.1"]);
    assert_eq!(
        run_default("EHLO c\r\nMAIL FROM:<>\r\nDATA\r\n").codes(),
        ["250 2.1.0", "554 5.5.1"]
    );
    assert_eq!(run_default("EHLO c\r\nDATA x\r\n").codes(), ["501 5.5.4"]);
}

#[test]
fn bare_lf_is_refused_and_the_next_transaction_is_clean() {
    let out = run_default(&format!(
        "{TX}DATA\r\na\nb\r\n.\r\n{}DATA\r\nok\r\n.\r\n",
        &TX[21..]
    ));
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "554 5.6.0",
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "250 2.0.0"
        ]
    );
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].1, b"ok\r\n");
}

#[test]
fn smuggling_variants_yield_one_message_or_a_refusal_never_two() {
    let smuggled =
        "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@mx.example>\r\nDATA\r\nforged\r\n";
    for sneaky in [
        "\n.\n",
        "\r.\r",
        "\n.\r\n",
        "\r\n.\n",
        "\r.\r\n",
        "\r\n.\r",
        "\r\n\0.\r\n",
        "\r\n\x00.\n",
    ] {
        let input = format!("{TX}DATA\r\nreal{sneaky}{smuggled}\r\n.\r\nQUIT\r\n");
        for step in [1, 3, input.len()] {
            let pieces: Vec<&[u8]> = input.as_bytes().chunks(step).collect();
            let out = drive(&mut greeted(config()), &pieces);
            assert!(out.messages.len() <= 1, "{sneaky:?}: {out:?}");
            assert!(
                !out.events.iter().any(|e| e.contains("evil")),
                "{sneaky:?} smuggled a MAIL"
            );
            assert_eq!(out.codes().last().unwrap(), "221 2.0.0");
            if out.messages.is_empty() {
                assert!(out.output.contains("554 5.6.0"));
            } else {
                assert!(out.messages[0].1.ends_with(b"forged\r\n\r\n"));
            }
        }
    }
}

#[test]
fn text_line_limit_refuses_at_the_end() {
    let long = "x".repeat(999);
    let out = run_default(&format!("{TX}DATA\r\n{long}\r\n.\r\nNOOP\r\n"));
    assert_eq!(out.codes()[3..], ["500 5.5.2", "250 2.0.0"]);
    assert!(out.messages.is_empty());
    let ok = "x".repeat(998);
    let out = run_default(&format!("{TX}DATA\r\n{ok}\r\n.\r\n"));
    assert_eq!(out.messages.len(), 1);
}

#[test]
fn oversized_message_is_read_discarded_and_refused() {
    let cfg = SessionConfig {
        max_message_size: 1000,
        ..config()
    };
    let mut s = greeted(cfg);
    let mut out = drive(&mut s, &[TX.as_bytes(), b"DATA\r\n"]);
    let line = [b'y'; 98];
    for _ in 0..1000 {
        let more = drive(&mut s, &[&line, b"\r\n"]);
        out.output.push_str(&more.output);
        assert!(s.input.capacity() < 64 * 1024);
    }
    let rest = drive(
        &mut s,
        &[format!(".\r\n{}DATA\r\nsmall\r\n.\r\n", &TX[21..]).as_bytes()],
    );
    out.output.push_str(&rest.output);
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "250 2.0.0"
        ]
    );
    assert_eq!(rest.messages.len(), 1);
    assert_eq!(rest.messages[0].1, b"small\r\n");
}

#[test]
fn refused_and_disconnected_messages() {
    let mut s = greeted(config());
    s.receive(format!("{TX}DATA\r\nx\r\n.\r\nRSET\r\n").as_bytes());
    let mut last = None;
    while let Some(ev) = s.poll() {
        if let Event::Message { .. } = ev {
            s.answer(Answer::Refuse(Reply::new(451, "4.3.0", "spool full")));
            assert!(s.envelope().is_none());
        } else {
            s.answer(Answer::Accept);
        }
        last = Some(ev);
    }
    assert!(matches!(last, Some(Event::Message { .. })));
    let text = String::from_utf8(s.take_output()).unwrap();
    assert!(
        text.ends_with("451 4.3.0 spool full\r\n250 2.0.0 Reset ok\r\n"),
        "{text}"
    );

    let mut s = greeted(config());
    s.receive(format!("{TX}DATA\r\nx\r\n.\r\nNOOP\r\n").as_bytes());
    while let Some(ev) = s.poll() {
        match ev {
            Event::Message { .. } => s.answer(Answer::Disconnect(Reply::new(421, "4.7.0", "bye"))),
            Event::Close => break,
            _ => s.answer(Answer::Accept),
        }
    }
    assert!(s.is_closed());
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("421 4.7.0 bye\r\n")
    );
}

// ---------------------------------------------------------------- BDAT

#[test]
fn bdat_chunks_make_one_message() {
    let out = run_default(&format!(
        "{TX}BDAT 5\r\nhel\r\nBDAT 10 LAST\r\nlo\r\nQUIT\r\nRSET\r\n"
    ));
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert!(out.output.contains("250 2.0.0 5 octets received\r\n"));
    assert_eq!(out.messages[0].1, b"hel\r\nlo\r\nQUIT\r\n");
    assert!(!out.closed);
}

#[test]
fn bdat_zero_last_completes() {
    let out = run_default(&format!("{TX}BDAT 4\r\nab\r\nBDAT 0 LAST\r\n"));
    assert_eq!(out.messages[0].1, b"ab\r\n");
    let out = run_default(&format!("{TX}BDAT 0 LAST\r\n"));
    assert_eq!(out.messages.len(), 1);
    assert!(out.messages[0].1.is_empty());
}

#[test]
fn bdat_without_transaction_consumes_the_chunk() {
    let out = run_default("EHLO c\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(out.codes(), ["503 5.5.1", "250 2.0.0"]);
    assert!(!out.closed);
    let out = run_default("EHLO c\r\nMAIL FROM:<>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(out.codes(), ["250 2.1.0", "503 5.5.1", "250 2.0.0"]);
}

#[test]
fn data_and_bdat_never_mix() {
    let out = run_default(&format!(
        "{TX}BDAT 3\r\nab\nDATA\r\nRCPT TO:<x@mx.example>\r\nBDAT 0 LAST\r\n"
    ));
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "503 5.5.1",
            "503 5.5.1",
            "554 5.6.0"
        ]
    );
    assert!(out.messages.is_empty());
}

#[test]
fn bdat_over_the_size_limit() {
    let cfg = SessionConfig {
        max_message_size: 10,
        ..config()
    };
    let out = run(
        cfg,
        format!("{TX}BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 1 LAST\r\n9MAIL FROM:<>\r\nRCPT TO:<b@mx.example>\r\nBDAT 2 LAST\r\nok").as_bytes(),
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "552 5.3.4",
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0"
        ]
    );
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].1, b"ok\r\n", "a final CRLF is supplied");
}

#[test]
fn bdat_syntax_errors() {
    assert_eq!(
        run_default("EHLO c\r\nBDAT\r\nBDAT x\r\nBDAT 1 NOW\r\n").codes(),
        ["501 5.5.4"; 3]
    );
}

// ---------------------------------------------------------------- other commands

#[test]
fn small_commands() {
    let out = run_default(
        "EHLO c\r\nNOOP\r\nNOOP hello\r\nHELP\r\nHELP MAIL\r\nVRFY bob\r\nEXPN list\r\nRSET\r\nFOO\r\nTURN\r\nRSET x\r\nQUIT\r\n",
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.0.0",
            "250 2.0.0",
            "214 2.0.0",
            "214 2.0.0",
            "252 2.5.0",
            "502 5.5.1",
            "250 2.0.0",
            "500 5.5.1",
            "502 5.5.1",
            "501 5.5.4",
            "221 2.0.0"
        ]
    );
    assert!(out.closed);
    assert_eq!(out.events, ["ehlo c", "close"]);
}

#[test]
fn quit_ends_everything() {
    let mut s = greeted(config());
    s.receive(b"QUIT\r\nNOOP\r\n");
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.poll().is_none());
    assert!(s.is_closed());
    assert_eq!(
        s.take_output(),
        b"221 2.0.0 mx.example closing connection\r\n"
    );
    s.receive(b"NOOP\r\n");
    assert!(s.poll().is_none());
    assert_eq!(s.timeout(), Timeout::None);
}

#[test]
fn every_reply_carries_an_enhanced_status_code() {
    let out = run(
        SessionConfig { auth: true, auth_plaintext: true, etrn: true, max_bad_commands: 100, ..config() },
        format!(
            "EHLO c\r\nNOOP\r\nFOO\r\nMAIL FROM:<x>\r\n{}DATA\r\nx\r\n.\r\nAUTH PLAIN AGIAc2VjcmV0\r\nVRFY x\r\nEXPN x\r\n\
             ETRN x.example\r\nHELP\r\nBDAT 1\r\nxSTARTTLS\r\nRSET\r\nQUIT\r\n",
            &TX[8..]
        )
        .as_bytes(),
    );
    let re_ok = |l: &str| {
        let mut parts = l[4..].split(' ');
        let enhanced = parts.next().unwrap();
        let bits: Vec<_> = enhanced.split('.').collect();
        bits.len() == 3
            && bits
                .iter()
                .all(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
    };
    for line in out.lines() {
        let ehlo_line = !line.contains(' ') || line.starts_with("250-") || line == "250 HELP";
        if ehlo_line || line.starts_with("354 ") {
            continue;
        }
        assert!(re_ok(line), "no enhanced code: {line}");
    }
    assert!(out.lines().len() > 15);
}

#[test]
fn bad_commands_end_the_session() {
    let out = run(
        SessionConfig {
            max_bad_commands: 3,
            ..config()
        },
        b"FOO\r\nBAR\r\nNOOP\r\nBAZ\r\nNOOP\r\n",
    );
    assert_eq!(
        out.codes(),
        [
            "500 5.5.1",
            "500 5.5.1",
            "250 2.0.0",
            "500 5.5.1",
            "421 4.7.0"
        ]
    );
    assert!(out.closed);
}

// ---------------------------------------------------------------- line limits

#[test]
fn command_line_limit() {
    let ok = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(ok.len(), 512);
    assert_eq!(run_default(&ok).codes(), ["250 2.0.0"]);
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(512 - 6));
    assert_eq!(run_default(&long).codes(), ["500 5.5.2", "250 2.0.0"]);
}

#[test]
fn gigantic_line_is_never_buffered_whole() {
    let mut s = greeted(config());
    let junk = vec![b'A'; 4096];
    let mut out = drive(&mut s, &[b"EHLO c\r\n"]);
    for _ in 0..2560 {
        // 10 MiB without a line end
        let more = drive(&mut s, &[&junk]);
        assert!(more.output.is_empty());
        assert!(s.input.capacity() <= 16 * 1024, "{}", s.input.capacity());
    }
    out.output
        .push_str(&drive(&mut s, &[b"AAAA\r\nNOOP\r\n"]).output);
    assert_eq!(out.codes(), ["500 5.5.2", "250 2.0.0"]);
}

// ---------------------------------------------------------------- STARTTLS

#[test]
fn starttls_discards_pipelined_input_and_resets_state() {
    let cfg = SessionConfig {
        starttls: true,
        ..config()
    };
    let mut s = greeted(cfg);
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
    let cfg = SessionConfig {
        starttls: true,
        ..config()
    };
    assert_eq!(
        run(cfg, b"EHLO c\r\nSTARTTLS now\r\n").codes(),
        ["501 5.5.4"]
    );
}

#[test]
fn starttls_forgets_authentication_and_transaction() {
    let cfg = SessionConfig {
        starttls: true,
        auth: true,
        auth_plaintext: true,
        ..config()
    };
    let out = run(
        cfg,
        b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTARTTLS\r\n",
    );
    assert!(out.events.contains(&"auth PLAIN alice secret".to_string()));
    assert!(out.output.contains("235 2.7.0"));
    let mut s = greeted(SessionConfig {
        starttls: true,
        auth: true,
        auth_plaintext: true,
        ..config()
    });
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

// ---------------------------------------------------------------- AUTH

fn auth_config() -> SessionConfig {
    SessionConfig {
        auth: true,
        ..config()
    }
}

fn run_tls(config: SessionConfig, input: &str) -> Outcome {
    let mut s = Session::new(config, Some(tls_info()));
    s.greet();
    s.take_output();
    drive(&mut s, &[input.as_bytes()])
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    // "\0alice\0secret"
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    );
    assert_eq!(out.codes(), ["235 2.7.0"]);
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
    );
    assert!(
        out.output.contains("\r\n334 \r\n235 2.7.0 "),
        "{}",
        out.output
    );
    assert_eq!(out.events[1], "auth PLAIN alice secret");
}

#[test]
fn auth_login_with_and_without_initial_response() {
    // "alice", "secret"
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
    );
    assert!(
        out.output
            .contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0"),
        "{}",
        out.output
    );
    assert_eq!(out.events[1], "auth LOGIN alice secret");
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
    );
    assert!(out.output.contains("334 UGFzc3dvcmQ6\r\n235 2.7.0"));
}

#[test]
fn auth_errors() {
    let cases: &[(&str, &[&str])] = &[
        ("AUTH PLAIN !!!\r\n", &["501 5.5.2"]),
        ("AUTH PLAIN\r\n*\r\n", &["501 5.7.0"]),
        ("AUTH LOGIN\r\n*\r\n", &["501 5.7.0"]),
        ("AUTH LOGIN\r\nYWxpY2U=\r\n*\r\n", &["501 5.7.0"]),
        ("AUTH PLAIN YWxpY2U=\r\n", &["501 5.5.2"]),
        ("AUTH CRAM-MD5\r\n", &["504 5.5.4"]),
        ("AUTH PLAIN AGFsaWNlAHdyb25n\r\n", &["535 5.7.8"]),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            &["235 2.7.0", "503 5.5.1"],
        ),
        (
            "MAIL FROM:<>\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            &["250 2.1.0", "503 5.5.1"],
        ),
    ];
    for (input, codes) in cases {
        let out = run_tls(auth_config(), &format!("EHLO c\r\n{input}"));
        assert_eq!(out.codes(), *codes, "{input:?}");
    }
}

#[test]
fn auth_in_plaintext_needs_configuration() {
    let out = run(
        auth_config(),
        b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    );
    assert_eq!(out.codes(), ["538 5.7.11"]);
    assert_eq!(
        run_default("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n").codes(),
        ["502 5.5.1"]
    );
    let cfg = SessionConfig {
        auth_plaintext: true,
        ..auth_config()
    };
    assert_eq!(
        run(cfg, b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n").codes(),
        ["235 2.7.0"]
    );
}

#[test]
fn auth_failures_end_the_session() {
    let cfg = SessionConfig {
        max_auth_failures: 2,
        ..auth_config()
    };
    let out = run_tls(
        cfg,
        "EHLO c\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nNOOP\r\n",
    );
    assert_eq!(out.codes(), ["535 5.7.8", "535 5.7.8", "421 4.7.0"]);
    assert!(out.closed);
}

#[test]
fn auth_required_before_mail() {
    let cfg = SessionConfig {
        auth_required: true,
        ..auth_config()
    };
    let out = run_tls(
        cfg,
        "EHLO c\r\nMAIL FROM:<alice@mx.example>\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@mx.example> AUTH=<>\r\n",
    );
    assert_eq!(out.codes(), ["530 5.7.0", "235 2.7.0", "250 2.1.0"]);
}

#[test]
fn long_auth_lines_are_allowed() {
    let secret = "s".repeat(600);
    let blob = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("\0alice\0{secret}"),
    );
    let out = run_tls(auth_config(), &format!("EHLO c\r\nAUTH PLAIN {blob}\r\n"));
    assert_eq!(out.codes(), ["535 5.7.8"]);
}

#[test]
fn overlong_sasl_response_ends_the_exchange() {
    let huge = "A".repeat(20_000);
    let out = run_tls(
        auth_config(),
        &format!("EHLO c\r\nAUTH PLAIN\r\n{huge}\r\nNOOP\r\n"),
    );
    assert_eq!(out.codes(), ["500 5.5.2", "250 2.0.0"]);
    assert_eq!(out.events, ["ehlo c"]);
}

// ---------------------------------------------------------------- ETRN, timeouts, refusal

#[test]
fn etrn() {
    let cfg = SessionConfig {
        etrn: true,
        ..config()
    };
    let out = run(cfg, b"EHLO c\r\nETRN example.org\r\n");
    assert_eq!(out.events[1], "etrn example.org");
    assert_eq!(out.codes(), ["250 2.0.0"]);
    assert_eq!(
        run_default("EHLO c\r\nETRN example.org\r\n").codes(),
        ["502 5.5.1"]
    );
}

#[test]
fn timers_follow_the_state() {
    let mut s = greeted(config());
    assert_eq!(s.timeout(), Timeout::Command);
    s.receive(TX.as_bytes());
    while let Some(_ev) = s.poll() {
        assert_eq!(s.timeout(), Timeout::None);
        s.answer(Answer::Accept);
    }
    s.receive(b"DATA\r\n");
    assert!(s.poll().is_none());
    assert_eq!(s.timeout(), Timeout::DataInit);
    s.receive(b"Subject: x\r\n");
    assert!(s.poll().is_none());
    assert_eq!(s.timeout(), Timeout::DataBlock);
    s.take_output();
    s.timed_out();
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "421 4.4.2 mx.example Timeout exceeded, closing connection\r\n"
    );
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.is_closed());
}

#[test]
fn refuse_before_greeting() {
    let mut s = Session::new(config(), None);
    s.refuse(Reply::new(554, "5.5.0", "talked before the greeting"));
    assert_eq!(s.take_output(), b"554 5.5.0 talked before the greeting\r\n");
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.is_closed());
}

#[test]
fn answer_without_pending_event_is_ignored() {
    let mut s = greeted(config());
    s.answer(Answer::Accept);
    assert!(s.take_output().is_empty());
    assert!(!s.is_closed());
}

/// Not a timed assertion: prints a throughput figure for the report (run with --ignored --nocapture).
#[test]
#[ignore]
fn throughput_figure() {
    let body = "Subject: load\r\n\r\n".to_string() + "0123456789abcdef ".repeat(50).trim_end();
    let mut message = String::new();
    while message.len() < 10_000 {
        message.push_str(&body);
        message.push_str("\r\n");
    }
    let one =
        format!("MAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example>\r\nDATA\r\n{message}.\r\n");
    let transactions = 20_000;
    let mut s = greeted(config());
    let mut delivered = 0usize;
    let start = std::time::Instant::now();
    s.receive(b"EHLO c\r\n");
    for _ in 0..=transactions {
        while let Some(event) = s.poll() {
            match event {
                Event::Message { data, .. } => {
                    delivered += data.len();
                    s.answer(Answer::Queued("q".into()));
                }
                _ => s.answer(Answer::Accept),
            }
        }
        s.take_output();
        s.receive(one.as_bytes());
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(delivered / transactions, message.len());
    println!(
        "{transactions} transactions of {} bytes in {secs:.3}s: {:.0} tx/s, {:.1} MB/s",
        one.len(),
        transactions as f64 / secs,
        (transactions * one.len()) as f64 / secs / 1e6
    );
}
