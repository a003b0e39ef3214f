//! ATRN (RFC 2645, On-Demand Mail Relay): an authenticated customer asks for the mail held for
//! its domains, and the line turns around — we become the SMTP client on this connection.
//!
//! `ATRN [domain *("," domain)]`, only on listeners with `atrn` (else 502 5.5.1): after EHLO
//! (503 5.5.1), after AUTH (530 5.7.0), outside a transaction (503 5.5.1). The engine answers
//! the [`Event::Atrn`]: `Accept` sends "250 2.0.0 OK now reversing the connection" and the next
//! `poll` returns [`Event::Turn`] with whatever the customer pipelined after the command (the
//! session is over: the engine runs the client side); `Refuse` sends its reply (450 not
//! allowed, 451 busy, 453 no mail) and the session goes on. Without a domain list the engine
//! picks every domain the user may collect.

use super::events::{Answer, Event};
use super::reply::{self, push_reply};
use super::session::{Pending, Phase, Session};

impl Session {
    pub(super) fn cmd_atrn(&mut self, arg: &str) -> Option<Event> {
        self.guard(&[
            (!self.config.atrn, reply::NOT_IMPLEMENTED),
            (self.helo.is_none(), reply::SEND_HELO_FIRST),
            (self.authenticated.is_none(), reply::AUTH_REQUIRED),
            (self.transaction.is_some(), reply::ATRN_IN_TRANSACTION),
        ])?;
        let mut domains = Vec::new();
        for domain in arg.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !is_domain(&domain) {
                self.fail(reply::SYNTAX);
                return None;
            }
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        self.guard(&[(arg.contains(',') && domains.is_empty(), reply::SYNTAX)])?;
        self.phase = Phase::Pending(Pending::Atrn);
        Some(Event::Atrn { domains })
    }

    pub(super) fn atrn_answered(&mut self, answer: Answer) {
        match answer {
            Answer::Accept => {
                reply::push_static(&mut self.output, reply::ATRN_TURNING);
                self.phase = Phase::Turned;
            }
            Answer::Refuse(reply) => push_reply(&mut self.output, &reply),
            // Not an answer to ATRN: refuse rather than turn.
            _ => reply::push_static(&mut self.output, reply::ATRN_UNAVAILABLE),
        }
    }
}

/// A domain name: dot-separated labels of letters, digits and hyphens (no address literals:
/// ODMR serves domains).
fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::super::events::{Answer, Event, SessionConfig};
    use super::super::session::Session;
    use crate::policy::Reply;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    fn odmr() -> Session {
        let mut s = Session::new(
            SessionConfig {
                hostname: "odmr.example".into(),
                auth: true,
                cram_md5: true,
                atrn: true,
                ..SessionConfig::default()
            },
            None,
        );
        s.set_challenge_seed("12345.boot.7");
        s.greet();
        s.take_output();
        s
    }

    fn text(s: &mut Session) -> String {
        String::from_utf8(s.take_output()).unwrap()
    }

    /// Feeds a line and answers the one event it raises with `answer`.
    fn line(s: &mut Session, input: &str, answer: Option<Answer>) -> (Option<Event>, String) {
        s.receive(input.as_bytes());
        let event = s.poll();
        if let (Some(_), Some(a)) = (&event, answer) {
            s.answer(a);
        }
        (event, text(s))
    }

    /// EHLO offers CRAM-MD5 in plaintext (PLAIN/LOGIN are not: no TLS, no auth_plaintext) and ATRN.
    #[test]
    fn ehlo_offers_cram_md5_and_atrn_without_tls() {
        let mut s = odmr();
        let (_, out) = line(&mut s, "EHLO customer.test\r\n", Some(Answer::Accept));
        assert!(out.contains("250-AUTH CRAM-MD5\r\n"), "{out}");
        assert!(out.contains("250-ATRN\r\n"), "{out}");
        let (_, out) = line(&mut s, "AUTH PLAIN AGEAYg==\r\n", None);
        assert!(out.starts_with("538 5.7.11"), "{out}");
    }

    #[test]
    fn cram_md5_exchange_and_atrn_turns_the_line() {
        let mut s = odmr();
        line(&mut s, "EHLO customer.test\r\n", Some(Answer::Accept));
        let (_, out) = line(&mut s, "ATRN odmr.test\r\n", None);
        assert_eq!(out, "530 5.7.0 Authentication required\r\n");
        let (_, out) = line(&mut s, "AUTH CRAM-MD5\r\n", None);
        let challenge = out.strip_prefix("334 ").unwrap().trim_end();
        let challenge = String::from_utf8(BASE64.decode(challenge).unwrap()).unwrap();
        assert_eq!(challenge, "<12345.boot.7.1@odmr.example>");
        let response = BASE64.encode("alice@example.test 0123456789abcdef0123456789ABCDEF");
        let (event, out) = line(
            &mut s,
            &format!("{response}\r\n"),
            Some(Answer::Authenticated("alice@example.test".into())),
        );
        let Some(Event::Auth(c)) = event else {
            panic!("{event:?}")
        };
        assert_eq!(c.mechanism, "CRAM-MD5");
        assert_eq!(c.authcid, "alice@example.test");
        assert_eq!(c.secret, "0123456789abcdef0123456789abcdef");
        assert_eq!(c.challenge.as_deref(), Some(challenge.as_str()));
        assert!(out.starts_with("235 2.7.0"), "{out}");

        // Refusals keep the session going.
        let refusal = Reply::new(450, "4.7.1", "not yours");
        let (event, out) = line(
            &mut s,
            "ATRN Other.test,ODMR.test.\r\n",
            Some(Answer::Refuse(refusal)),
        );
        assert!(
            matches!(event, Some(Event::Atrn { domains }) if domains == ["other.test", "odmr.test"])
        );
        assert_eq!(out, "450 4.7.1 not yours\r\n");
        let (_, out) = line(&mut s, "ATRN bad domain\r\n", None);
        assert!(out.starts_with("501 5.5.4"), "{out}");
        line(&mut s, "MAIL FROM:<a@b.test>\r\n", Some(Answer::Accept));
        let (_, out) = line(&mut s, "ATRN odmr.test\r\n", None);
        assert_eq!(
            out,
            "503 5.5.1 ATRN not allowed during a mail transaction\r\n"
        );
        line(&mut s, "RSET\r\n", None);

        // Accepted: 250, then the turn with what the customer already sent.
        let (event, out) = line(
            &mut s,
            "ATRN\r\n220 customer.test ESMTP",
            Some(Answer::Accept),
        );
        assert!(matches!(event, Some(Event::Atrn { domains }) if domains.is_empty()));
        assert_eq!(out, "250 2.0.0 OK now reversing the connection\r\n");
        match s.poll() {
            Some(Event::Turn { leftover }) => assert_eq!(leftover, b"220 customer.test ESMTP"),
            other => panic!("{other:?}"),
        }
        assert!(s.is_closed());
        assert!(s.poll().is_none(), "no Close after a turn");
    }

    #[test]
    fn cram_md5_refuses_initial_responses_and_garbage() {
        let mut s = odmr();
        line(&mut s, "EHLO customer.test\r\n", Some(Answer::Accept));
        let (_, out) = line(&mut s, "AUTH CRAM-MD5 eA==\r\n", None);
        assert!(out.starts_with("501 5.5.2"), "{out}");
        line(&mut s, "AUTH CRAM-MD5\r\n", None);
        let (_, out) = line(
            &mut s,
            &format!("{}\r\n", BASE64.encode("alice nothex")),
            None,
        );
        assert!(out.starts_with("501 5.5.2"), "{out}");
        // A second challenge differs from the first.
        let (_, first) = line(&mut s, "AUTH CRAM-MD5\r\n", None);
        line(&mut s, "*\r\n", None);
        let (_, second) = line(&mut s, "AUTH CRAM-MD5\r\n", None);
        assert_ne!(first, second);
    }

    /// HELP names what this session offers, and nothing else.
    #[test]
    fn help_lists_only_what_is_offered() {
        let mut s = odmr();
        let (_, out) = line(&mut s, "HELP\r\n", None);
        assert_eq!(
            out,
            "214 2.0.0 Commands: EHLO HELO RSET NOOP QUIT HELP VRFY AUTH ATRN\r\n"
        );
        let mut s = Session::new(SessionConfig::default(), None);
        s.greet();
        s.take_output();
        let (_, out) = line(&mut s, "HELP\r\n", None);
        assert_eq!(
            out,
            "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY\r\n"
        );
        let mut s = Session::new(
            SessionConfig {
                starttls: true,
                auth: true,
                etrn: true,
                ..SessionConfig::default()
            },
            None,
        );
        s.greet();
        s.take_output();
        let (_, out) = line(&mut s, "HELP\r\n", None);
        assert!(out.ends_with("VRFY STARTTLS ETRN\r\n"), "{out}");
    }

    #[test]
    fn atrn_is_not_offered_elsewhere() {
        let mut s = Session::new(SessionConfig::default(), None);
        s.greet();
        s.take_output();
        let (_, out) = line(&mut s, "EHLO c\r\n", Some(Answer::Accept));
        assert!(!out.contains("ATRN") && !out.contains("CRAM-MD5"), "{out}");
        let (_, out) = line(&mut s, "ATRN odmr.test\r\n", None);
        assert!(out.starts_with("502 5.5.1"), "{out}");
    }
}
