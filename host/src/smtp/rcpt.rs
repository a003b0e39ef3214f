//! RCPT TO (RFC 5321 §4.1.1.3) with NOTIFY and ORCPT (RFC 3461). The engine decides relay control
//! and mailbox existence; this stage hands it a well-formed address.

use super::address;
use super::events::{Answer, Event};
use super::params;
use super::reply::{self, push_reply};
use super::session::{Body, Pending, Phase, Session};
use crate::mail::Recipient;

impl Session {
    pub(super) fn cmd_rcpt(&mut self, arg: &str) -> Option<Event> {
        let Some(tx) = self.transaction.as_ref() else {
            self.fail(reply::NEED_MAIL);
            return None;
        };
        if tx.body != Body::None {
            self.fail(reply::RCPT_AFTER_BDAT);
            return None;
        }
        if tx.envelope.recipients.len() >= self.config.max_recipients {
            self.fail(reply::TOO_MANY_RECIPIENTS);
            return None;
        }
        let smtputf8 = tx.envelope.reverse_path.smtputf8;
        let path = address::parse_path(arg, false, true)
            .map_err(|error| super::mail::path_error(error, reply::BAD_RECIPIENT));
        let path = self.or_fail(path)?;
        self.params_allowed(path.rest)?;
        let params = self.or_fail(params::parse_rcpt(path.rest))?;
        self.guard(&[(path.utf8 && !smtputf8, reply::UTF8_NOT_PERMITTED)])?;
        let rcpt = Recipient {
            address: path.address,
            ..params
        };
        self.phase = Phase::Pending(Pending::Rcpt(rcpt.clone()));
        Some(Event::Rcpt(rcpt))
    }

    pub(super) fn rcpt_answered(&mut self, mut rcpt: Recipient, answer: Answer) {
        match answer {
            Answer::Refuse(reply) => {
                push_reply(&mut self.output, &reply);
                return;
            }
            Answer::AcceptAs(address) => rcpt.address = address,
            _ => {}
        }
        if let Some(tx) = self.transaction.as_mut() {
            tx.envelope.recipients.push(rcpt);
        }
        reply::push_static(&mut self.output, reply::RECIPIENT_OK);
    }
}
