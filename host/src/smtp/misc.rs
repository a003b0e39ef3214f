//! The small commands: RSET, QUIT, HELP, ETRN (RFC 1985). NOOP, VRFY (252: never confirms a
//! mailbox) and EXPN (502: never expands a list) are answered straight from `session.rs`.

use super::events::{Answer, Event};
use super::reply::{self, push_reply};
use super::session::{Pending, Phase, Session};

impl Session {
    pub(super) fn cmd_rset(&mut self) {
        self.reset_transaction();
        reply::push_static(&mut self.output, reply::RESET_OK);
    }

    pub(super) fn cmd_quit(&mut self) {
        let line = format!("221 2.0.0 {} closing connection\r\n", self.config.hostname);
        self.output.extend_from_slice(line.as_bytes());
        self.reset_transaction();
        self.close();
    }

    /// HELP lists the commands this session offers now (no STARTTLS under TLS, no AUTH where
    /// no mechanism is offered, ETRN and ATRN only where enabled; EXPN is never offered).
    pub(super) fn cmd_help(&mut self) {
        let mut commands = String::from("Commands: EHLO HELO");
        if !self.config.atrn {
            // The odmr port takes no mail (the engine refuses MAIL there).
            commands.push_str(" MAIL RCPT DATA BDAT");
        }
        commands.push_str(" RSET NOOP QUIT HELP VRFY");
        if self.config.starttls && self.tls.is_none() {
            commands.push_str(" STARTTLS");
        }
        if self.auth_offered() || self.cram_offered() {
            commands.push_str(" AUTH");
        }
        if self.config.etrn {
            commands.push_str(" ETRN");
        }
        if self.config.atrn {
            commands.push_str(" ATRN");
        }
        reply::push(&mut self.output, 214, "2.0.0", &commands);
    }

    pub(super) fn cmd_etrn(&mut self, domain: &str) -> Option<Event> {
        self.guard(&[
            (!self.config.etrn, reply::NOT_IMPLEMENTED),
            (self.helo.is_none(), reply::SEND_HELO_FIRST),
            (self.transaction.is_some(), reply::ETRN_IN_TRANSACTION),
            (domain.contains(' '), reply::SYNTAX),
        ])?;
        self.phase = Phase::Pending(Pending::Etrn);
        Some(Event::Etrn {
            domain: domain.to_string(),
        })
    }

    pub(super) fn etrn_answered(&mut self, answer: Answer) {
        match answer {
            Answer::Refuse(reply) => push_reply(&mut self.output, &reply),
            _ => reply::push_static(&mut self.output, reply::ETRN_OK),
        }
    }
}
