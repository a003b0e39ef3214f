//! BDAT (RFC 3030 CHUNKING). A chunk's bytes are always consumed, even when the command is refused
//! (no transaction, size exceeded), so they are never read as commands. The reply to each chunk
//! comes after its bytes; `BDAT n LAST` completes the message.

use super::events::Event;
use super::reply;
use super::session::{Body, Chunk, Pending, Phase, Session};
use super::text::Defect;

impl Session {
    pub(super) fn cmd_bdat(&mut self, size: u64, last: bool) {
        let max = self.config.max_message_size as u64;
        let refusal = match self.transaction.as_mut() {
            None => Some(reply::NEED_MAIL),
            Some(tx) if tx.body == Body::Data => Some(reply::DATA_AFTER_BDAT),
            Some(tx) if tx.envelope.recipients.is_empty() => Some(reply::NEED_RCPT),
            Some(tx) if tx.failed.is_some() => tx.failed,
            Some(tx) if (tx.message.len() as u64).saturating_add(size) > max => {
                tx.failed = Some(reply::MESSAGE_TOO_BIG);
                tx.message = Vec::new();
                tx.failed
            }
            Some(tx) => {
                tx.body = Body::Bdat;
                None
            }
        };
        self.phase = Phase::Bdat(Chunk {
            remaining: size,
            size,
            last,
            keep: refusal.is_none(),
            refusal,
        });
    }

    /// All bytes of the chunk are in: reply, or complete the message on LAST.
    pub(super) fn chunk_complete(&mut self) -> Option<Event> {
        let Phase::Bdat(chunk) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return None;
        };
        if let Some(refusal) = chunk.refusal {
            // A failed transaction ends with its last chunk.
            if chunk.last
                && self
                    .transaction
                    .as_ref()
                    .is_some_and(|tx| tx.failed.is_some())
            {
                self.reset_transaction();
            }
            self.fail(refusal);
            return None;
        }
        if !chunk.last {
            let line = format!("250 2.0.0 {} octets received\r\n", chunk.size);
            self.output.extend_from_slice(line.as_bytes());
            return None;
        }
        let mut tx = self.transaction.take()?;
        match tx.text_check.finish() {
            Some(Defect::BareLineEnding) => self.fail(reply::BARE_LINE_ENDING),
            Some(Defect::LongLine) => self.fail(reply::TEXT_LINE_TOO_LONG),
            Some(Defect::TooBig) => self.fail(reply::MESSAGE_TOO_BIG),
            None => {
                // Like DATA, hand over complete lines: a last line without CRLF gets one (DKIM
                // body canonicalization treats both the same).
                if !tx.message.is_empty() && !tx.message.ends_with(b"\r\n") {
                    tx.message.extend_from_slice(b"\r\n");
                }
                self.phase = Phase::Pending(Pending::Message);
                return Some(Event::Message {
                    envelope: tx.envelope,
                    data: std::mem::take(&mut tx.message),
                });
            }
        }
        None
    }
}
