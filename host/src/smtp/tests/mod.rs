//! Session-level tests: whole dialogues fed as bytes, asserting the exact replies and events.
//! One file per stage; this one holds the driver they share.

use super::*;
use crate::mail::{Notify, Reply};

pub(super) fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.example".into(),
        ..SessionConfig::default()
    }
}

pub(super) fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
}

/// What a dialogue produced.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Outcome {
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
pub(super) fn auto_answer(
    session: &mut Session,
    event: &Event,
    out: &mut Outcome,
) -> Option<Answer> {
    out.events.push(match event {
        Event::Ehlo { name, .. } => format!("ehlo {name}"),
        Event::Auth(c) => format!("auth {} {} {}", c.mechanism, c.authcid, c.secret),
        Event::Mail(f) => format!("mail {}", f.address),
        Event::Rcpt(r) => format!("rcpt {}", r.address),
        Event::Message { .. } => "message".into(),
        Event::StartTls => "starttls".into(),
        Event::Etrn { domain } => format!("etrn {domain}"),
        Event::Atrn { domains } => format!("atrn {}", domains.join(",")),
        Event::Turn { .. } => "turn".into(),
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
        Event::Close | Event::Turn { .. } => {
            out.closed = true;
            None
        }
        _ => Some(Answer::Accept),
    }
}

pub(super) fn drive(session: &mut Session, pieces: &[&[u8]]) -> Outcome {
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

pub(super) fn greeted(config: SessionConfig) -> Session {
    let mut s = Session::new(config, None);
    s.greet();
    s.take_output();
    s
}

/// Runs `input` in one piece on a fresh greeted session.
pub(super) fn run(config: SessionConfig, input: &[u8]) -> Outcome {
    drive(&mut greeted(config), &[input])
}

pub(super) fn run_default(input: &str) -> Outcome {
    run(config(), input.as_bytes())
}

/// Each `(line, code)` on a fresh session: after `before` (whose replies are `before_codes`),
/// `line` gets `code`.
pub(super) fn assert_replies(before: &str, before_codes: &[&str], cases: &[(&str, &str)]) {
    for (line, code) in cases {
        let out = run_default(&format!("{before}{line}\r\n"));
        assert_eq!(out.codes(), [before_codes, &[*code]].concat(), "{line}");
    }
}

pub(super) const TX: &str =
    "EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<b@mx.example>\r\n";

mod auth;
mod bdat;
mod data;
mod greeting;
mod mail;
mod misc;
mod rcpt;
mod starttls;
mod transaction;
