//! MAIL FROM (RFC 5321 §4.1.1.2) with SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
//! RET/ENVID (RFC 3461), AUTH= (RFC 4954) and REQUIRETLS (RFC 8689). Starts a transaction once the engine accepts.

use super::address::{self, PathError};
use super::events::{Answer, Event};
use super::params;
use super::reply::{self, push_reply};
use super::session::{Body, Pending, Phase, Session, Transaction};
use crate::mail::{Envelope, ReversePath};

impl Session {
    pub(super) fn cmd_mail(&mut self, arg: &str) -> Option<Event> {
        self.guard(&[
            (self.helo.is_none(), reply::SEND_HELO_FIRST),
            (self.transaction.is_some(), reply::NESTED_MAIL),
            (
                self.config.auth_required && self.authenticated.is_none(),
                reply::AUTH_REQUIRED,
            ),
        ])?;
        let path =
            self.or_fail(address::parse_path(arg, true, false).map_err(|_| reply::BAD_SENDER))?;
        self.params_allowed(path.rest)?;
        let params = self.or_fail(params::parse_mail(path.rest, self.auth_offered()))?;
        let max_size = self.config.max_message_size as u64;
        self.guard(&[
            // RFC 8689 §4: REQUIRETLS is offered only on a TLS session.
            (
                params.requiretls && self.tls.is_none(),
                reply::PARAM_NOT_OFFERED,
            ),
            (path.utf8 && !params.smtputf8, reply::UTF8_NOT_PERMITTED),
            (
                params.size.is_some_and(|size| size > max_size),
                reply::MESSAGE_TOO_BIG,
            ),
        ])?;
        let from = ReversePath {
            address: path.address,
            ..params
        };
        self.phase = Phase::Pending(Pending::Mail(from.clone()));
        Some(Event::Mail(from))
    }

    pub(super) fn mail_answered(&mut self, from: ReversePath, answer: Answer) {
        if let Answer::Refuse(reply) = answer {
            push_reply(&mut self.output, &reply);
            return;
        }
        self.transaction = Some(Transaction {
            envelope: Envelope {
                reverse_path: from,
                recipients: Vec::new(),
            },
            body: Body::None,
            message: Vec::new(),
            text_check: super::text::TextCheck::new(self.config.max_text_line),
            failed: None,
        });
        reply::push_static(&mut self.output, reply::SENDER_OK);
    }

    /// HELO clients get no extensions, so no MAIL or RCPT parameters either.
    pub(super) fn params_allowed(&mut self, params: &str) -> Option<()> {
        self.guard(&[(
            !self.extended && !params.is_empty(),
            reply::PARAM_NOT_OFFERED,
        )])
    }
}

/// Maps a path error to its reply (shared with RCPT).
pub(super) fn path_error(error: PathError, syntax: reply::Static) -> reply::Static {
    match error {
        PathError::Syntax => syntax,
        PathError::Utf8NotPermitted => reply::UTF8_NOT_PERMITTED,
    }
}
