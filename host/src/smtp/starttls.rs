//! STARTTLS (RFC 3207). The 220 is queued, everything the client pipelined after the command is
//! discarded (CVE-2011-0411: plaintext injected before the handshake must never be read as if it
//! came through TLS), and after `tls_started` the session starts over.

use super::events::Event;
use super::reply;
use super::session::{Phase, Session};

impl Session {
    pub(super) fn cmd_starttls(&mut self) -> Option<Event> {
        self.guard(&[
            (!self.config.starttls, reply::NOT_IMPLEMENTED),
            (self.tls.is_some(), reply::ALREADY_TLS),
        ])?;
        reply::push_static(&mut self.output, reply::READY_FOR_TLS);
        self.discard_input = true;
        self.phase = Phase::TlsHandshake;
        Some(Event::StartTls)
    }
}
