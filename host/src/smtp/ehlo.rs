//! EHLO and HELO (RFC 5321 §4.1.1.1). EHLO advertises the extensions this session offers now;
//! HELO advertises nothing. Either resets a transaction in progress.

use super::events::{Answer, Event};
use super::reply::{self, push_reply};
use super::session::{Pending, Phase, Session};

impl Session {
    pub(super) fn cmd_ehlo(&mut self, arg: &str, extended: bool) -> Option<Event> {
        let name = arg.trim_matches(' ');
        if !is_helo_name(name) {
            self.fail(reply::SYNTAX);
            return None;
        }
        self.phase = Phase::Pending(Pending::Ehlo {
            name: name.to_string(),
            extended,
        });
        Some(Event::Ehlo {
            name: name.to_string(),
            extended,
        })
    }

    pub(super) fn ehlo_answered(&mut self, name: String, extended: bool, answer: Answer) {
        if let Answer::Refuse(reply) = answer {
            push_reply(&mut self.output, &reply);
            return;
        }
        self.reset_transaction();
        self.helo = Some(name);
        self.extended = extended;
        if extended {
            self.write_ehlo_reply();
        } else {
            let line = format!("250 {}\r\n", self.config.hostname);
            self.output.extend_from_slice(line.as_bytes());
        }
    }

    /// Whether AUTH PLAIN and LOGIN may be used on this connection now.
    pub(super) fn auth_offered(&self) -> bool {
        self.config.auth && (self.tls.is_some() || self.config.auth_plaintext)
    }

    /// Whether AUTH CRAM-MD5 may be used: where the listener enables it, with or without TLS.
    pub(super) fn cram_offered(&self) -> bool {
        self.config.auth && self.config.cram_md5
    }

    /// The mechanisms to advertise now, strongest first ("" when none).
    fn auth_mechanisms(&self) -> String {
        let mut mechanisms = Vec::new();
        if self.cram_offered() {
            mechanisms.push("CRAM-MD5");
        }
        if self.auth_offered() {
            mechanisms.extend(["PLAIN", "LOGIN"]);
        }
        mechanisms.join(" ")
    }

    fn write_ehlo_reply(&mut self) {
        let mut lines: Vec<String> = vec![
            self.config.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.config.max_message_size),
        ];
        if self.config.etrn {
            lines.push("ETRN".into());
        }
        if self.config.starttls && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        let mechanisms = self.auth_mechanisms();
        if !mechanisms.is_empty() {
            lines.push(format!("AUTH {mechanisms}"));
        }
        if self.config.atrn {
            lines.push("ATRN".into());
        }
        // RFC 8689 §4: only over TLS (the queue enforces it on the way out).
        if self.tls.is_some() {
            lines.push("REQUIRETLS".into());
        }
        for ext in [
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "SMTPUTF8",
            "CHUNKING",
            "DSN",
            "HELP",
        ] {
            lines.push(ext.into());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            self.output
                .extend_from_slice(if i == last { b"250 " } else { b"250-" });
            self.output.extend_from_slice(line.as_bytes());
            self.output.extend_from_slice(b"\r\n");
        }
    }
}

/// A domain or address literal as the client sent it. Checked loosely (many real clients send
/// odd names), but it must be one printable token: no spaces or control characters.
fn is_helo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}
