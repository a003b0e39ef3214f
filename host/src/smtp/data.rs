//! DATA: the stage's command handling; the dot-unstuffing decoder it feeds is
//! [`super::text::DataDecoder`].

use super::events::{Answer, Event};
use super::reply::{self, push_reply};
use super::session::{Body, Pending, Phase, Session};
use super::text::{DataDecoder, Defect};

impl Session {
    pub(super) fn cmd_data(&mut self) {
        let Some(tx) = self.transaction.as_mut() else {
            self.fail(reply::NEED_MAIL);
            return;
        };
        if tx.body == Body::Bdat {
            self.fail(reply::DATA_AFTER_BDAT);
            return;
        }
        if tx.envelope.recipients.is_empty() {
            self.fail(reply::NO_VALID_RECIPIENTS);
            return;
        }
        tx.body = Body::Data;
        self.output
            .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        self.phase = Phase::Data(DataDecoder::new(
            self.config.max_text_line,
            self.config.max_message_size,
        ));
    }

    /// CRLF.CRLF arrived: hand the message over, or refuse it and stay in the session.
    pub(super) fn data_complete(&mut self) -> Option<Event> {
        let Phase::Data(decoder) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return None;
        };
        let mut tx = self.transaction.take()?;
        match decoder.defect() {
            Some(Defect::TooBig) => self.fail(reply::MESSAGE_TOO_BIG),
            Some(Defect::BareLineEnding) => self.fail(reply::BARE_LINE_ENDING),
            Some(Defect::LongLine) => self.fail(reply::TEXT_LINE_TOO_LONG),
            None => {
                self.phase = Phase::Pending(Pending::Message);
                return Some(Event::Message {
                    envelope: tx.envelope,
                    data: std::mem::take(&mut tx.message),
                });
            }
        }
        None
    }

    pub(super) fn message_answered(&mut self, answer: Answer) {
        self.reset_transaction();
        match answer {
            Answer::Queued(id) => {
                let line = format!("250 2.0.0 Ok: queued as {id}\r\n");
                self.output.extend_from_slice(line.as_bytes());
            }
            Answer::Refuse(reply) => push_reply(&mut self.output, &reply),
            _ => reply::push_static(&mut self.output, reply::OK),
        }
    }
}
