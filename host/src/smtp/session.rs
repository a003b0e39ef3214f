//! The session: input buffering, line framing, dispatch to the stage files, pending events.
//!
//! Memory stays bounded: the input buffer holds what the engine handed to the last `receive` plus
//! at most one partial line (an overlong line is discarded as it arrives, then answered with
//! 500 5.5.2), and a message buffer never grows past `max_message_size`.

use memchr::memchr;

use super::command::{self, Command};
use super::events::{Answer, Event, SessionConfig, Timeout, TlsInfo};
use super::reply::{self, Static};
use super::text::{DataDecoder, TextCheck};
use crate::mail::{Envelope, Recipient, Reply, ReversePath};

/// RFC 4954 §4: AUTH command lines and SASL responses may be up to 12288 octets.
pub(super) const MAX_AUTH_LINE: usize = 12288;

/// What the session is doing with its input.
#[derive(Debug)]
pub(super) enum Phase {
    /// Reading command lines.
    Command,
    /// Reading a SASL response line for AUTH.
    Sasl(SaslStep),
    /// Reading DATA until CRLF.CRLF.
    Data(DataDecoder),
    /// Reading a BDAT chunk of known length.
    Bdat(Chunk),
    /// An event waits for the engine's answer; input stays buffered.
    Pending(Pending),
    /// STARTTLS: waiting for `tls_started`.
    TlsHandshake,
    /// ATRN accepted: the next `poll` hands the connection over ([`Event::Turn`]).
    Turned,
    Closed,
}

/// What the next SASL response line is (the AUTH stage, `auth.rs`, drives it).
#[derive(Debug)]
pub(super) enum SaslStep {
    PlainResponse,
    LoginUsername,
    LoginPassword { username: String },
    CramResponse { challenge: String },
}

/// A BDAT chunk being read (the BDAT stage, `bdat.rs`, drives it).
#[derive(Debug)]
pub(super) struct Chunk {
    pub remaining: u64,
    pub size: u64,
    pub last: bool,
    /// False: read and drop (the reply is `refusal`).
    pub keep: bool,
    pub refusal: Option<Static>,
}

/// The pending event's data the session needs back when the answer comes.
#[derive(Debug)]
pub(super) enum Pending {
    Ehlo { name: String, extended: bool },
    Auth { authcid: String },
    Mail(ReversePath),
    Rcpt(Recipient),
    Message,
    Etrn,
    Atrn,
}

/// Which body command a transaction uses: DATA and BDAT never mix (RFC 3030 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    None,
    Data,
    Bdat,
}

/// A mail transaction, from an accepted MAIL to the end of its message (or RSET).
#[derive(Debug)]
pub(super) struct Transaction {
    pub envelope: Envelope,
    pub body: Body,
    pub message: Vec<u8>,
    pub text_check: TextCheck,
    /// A BDAT chunk failed (size): later chunks are read and refused the same way until LAST.
    pub failed: Option<Static>,
}

enum Line {
    /// Start and end (without line ending) of a complete line in `input`.
    Complete(usize, usize),
    TooLong,
    NeedMore,
}

/// The SMTP server side of one connection. See the module documentation for the driving loop.
#[derive(Debug)]
pub struct Session {
    pub(super) config: SessionConfig,
    pub(super) tls: Option<TlsInfo>,
    pub(super) greeted: bool,
    pub(super) helo: Option<String>,
    pub(super) extended: bool,
    pub(super) authenticated: Option<String>,
    pub(super) transaction: Option<Transaction>,
    pub(super) phase: Phase,
    pub(super) input: Vec<u8>,
    pos: usize,
    /// Inside an overlong line: drop bytes up to the next LF, then reply 500 5.5.2.
    discarding_line: bool,
    /// Set by STARTTLS: drop everything buffered after its line (CVE-2011-0411).
    pub(super) discard_input: bool,
    pub(super) output: Vec<u8>,
    bad_commands: u32,
    pub(super) auth_failures: u32,
    close_reported: bool,
    /// Makes CRAM-MD5 challenges unique (see [`Session::set_challenge_seed`]).
    pub(super) cram_seed: String,
    pub(super) cram_attempts: u32,
}

impl Session {
    /// `tls` is `Some` on implicit-TLS listeners (the handshake happened before the session).
    pub fn new(config: SessionConfig, tls: Option<TlsInfo>) -> Session {
        Session {
            config,
            tls,
            greeted: false,
            helo: None,
            extended: false,
            authenticated: None,
            transaction: None,
            phase: Phase::Command,
            input: Vec::new(),
            pos: 0,
            discarding_line: false,
            discard_input: false,
            output: Vec::with_capacity(512),
            bad_commands: 0,
            auth_failures: 0,
            close_reported: false,
            cram_seed: "0".to_string(),
            cram_attempts: 0,
        }
    }

    /// Sets the per-session part of CRAM-MD5 challenges (`<seed.n@hostname>`). The engine
    /// passes something unique and unpredictable (random digits and the session id); RFC 2195
    /// wants every challenge to differ.
    pub fn set_challenge_seed(&mut self, seed: &str) {
        self.cram_seed = seed
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
    }

    /// Queues the 220 greeting; commands are processed only after it.
    pub fn greet(&mut self) {
        if self.greeted || self.is_closed() {
            return;
        }
        self.greeted = true;
        self.output.extend_from_slice(b"220 ");
        self.output
            .extend_from_slice(self.config.hostname.as_bytes());
        self.output.extend_from_slice(b" ESMTP mailwit\r\n");
    }

    /// Refuses the session (early talker, connect hook, connection limit): queue `reply`, close.
    pub fn refuse(&mut self, reply: Reply) {
        if self.is_closed() {
            return;
        }
        reply::push_reply(&mut self.output, &reply);
        self.close();
    }

    /// Feeds bytes read from the socket. Call it when `poll` returned `None`; bytes arriving while
    /// the STARTTLS handshake is pending or after close are dropped.
    pub fn receive(&mut self, bytes: &[u8]) {
        if matches!(
            self.phase,
            Phase::Closed | Phase::TlsHandshake | Phase::Turned
        ) {
            return;
        }
        if self.pos == self.input.len() {
            self.input.clear();
        } else if self.pos > 0 {
            self.input.drain(..self.pos);
        }
        self.pos = 0;
        self.input.extend_from_slice(bytes);
    }

    /// Processes buffered input until an event needs the engine (`Some`) or more input is needed
    /// (`None`). Replies accumulate in the output in command order.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            match self.phase {
                Phase::Closed => {
                    if self.close_reported {
                        return None;
                    }
                    self.close_reported = true;
                    return Some(Event::Close);
                }
                Phase::Pending(_) | Phase::TlsHandshake => return None,
                Phase::Turned => {
                    // The session ends here without a Close: the connection is the engine's.
                    let leftover = self.input[self.pos..].to_vec();
                    self.close();
                    self.close_reported = true;
                    return Some(Event::Turn { leftover });
                }
                _ if !self.greeted => return None,
                Phase::Command | Phase::Sasl(_) => {
                    let limit = self.line_limit();
                    match self.next_line(limit) {
                        Line::NeedMore => return None,
                        Line::TooLong => {
                            // An overlong SASL response also ends the exchange.
                            if let Phase::Sasl(_) = self.phase {
                                self.phase = Phase::Command;
                            }
                            self.fail(reply::LINE_TOO_LONG);
                        }
                        Line::Complete(start, end) => {
                            // The stage code gets `&mut self` while reading the line from the
                            // buffer; lend the buffer out instead of copying the line.
                            let input = std::mem::take(&mut self.input);
                            let event = self.dispatch(&input[start..end]);
                            self.input = input;
                            if self.discard_input {
                                self.discard_input = false;
                                self.input.clear();
                                self.pos = 0;
                            }
                            if event.is_some() {
                                return event;
                            }
                        }
                    }
                }
                Phase::Data(_) => {
                    let Phase::Data(decoder) = &mut self.phase else {
                        unreachable!()
                    };
                    let mut nowhere = Vec::new();
                    let sink = match self.transaction.as_mut() {
                        Some(tx) => &mut tx.message,
                        None => &mut nowhere,
                    };
                    let (used, done) = decoder.feed(&self.input[self.pos..], sink);
                    self.pos += used;
                    if !done {
                        return None;
                    }
                    if let Some(event) = self.data_complete() {
                        return Some(event);
                    }
                }
                Phase::Bdat(_) => {
                    let Phase::Bdat(chunk) = &mut self.phase else {
                        unreachable!()
                    };
                    let available = &self.input[self.pos..];
                    let take = chunk.remaining.min(available.len() as u64) as usize;
                    let bytes = &available[..take];
                    chunk.remaining -= take as u64;
                    let done = chunk.remaining == 0;
                    if let Some(tx) = self.transaction.as_mut()
                        && chunk.keep
                    {
                        tx.message.extend_from_slice(bytes);
                        tx.text_check.scan(bytes);
                    }
                    self.pos += take;
                    if !done {
                        return None;
                    }
                    if let Some(event) = self.chunk_complete() {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// Reply bytes to write, in order. Empties the output buffer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True when there are reply bytes waiting for `take_output`.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Resolves the pending event. An answer with no event pending is ignored.
    pub fn answer(&mut self, answer: Answer) {
        let Phase::Pending(_) = self.phase else {
            return;
        };
        let Phase::Pending(pending) = std::mem::replace(&mut self.phase, Phase::Command) else {
            unreachable!()
        };
        if let Answer::Disconnect(reply) = &answer {
            if matches!(pending, Pending::Message) {
                self.transaction = None;
            }
            reply::push_reply(&mut self.output, reply);
            self.close();
            return;
        }
        match pending {
            Pending::Ehlo { name, extended } => self.ehlo_answered(name, extended, answer),
            Pending::Auth { authcid } => self.auth_answered(authcid, answer),
            Pending::Mail(from) => self.mail_answered(from, answer),
            Pending::Rcpt(rcpt) => self.rcpt_answered(rcpt, answer),
            Pending::Message => self.message_answered(answer),
            Pending::Etrn => self.etrn_answered(answer),
            Pending::Atrn => self.atrn_answered(answer),
        }
    }

    /// After the STARTTLS handshake: everything from before is forgotten (RFC 3207 §4.2); the
    /// client must EHLO again.
    pub fn tls_started(&mut self, tls: TlsInfo) {
        if self.is_closed() {
            return;
        }
        self.tls = Some(tls);
        self.helo = None;
        self.extended = false;
        self.authenticated = None;
        self.transaction = None;
        self.input.clear();
        self.pos = 0;
        self.discarding_line = false;
        self.phase = Phase::Command;
    }

    /// The current timer expired: 421 4.4.2 and close.
    pub fn timed_out(&mut self) {
        if self.is_closed() {
            return;
        }
        self.transaction = None;
        self.push_with_host(reply::TIMEOUT);
        self.close();
    }

    /// Which RFC 5321 §4.5.3.2 timer applies while waiting for the client now.
    pub fn timeout(&self) -> Timeout {
        match &self.phase {
            Phase::Closed | Phase::Pending(_) | Phase::TlsHandshake | Phase::Turned => {
                Timeout::None
            }
            _ if !self.greeted => Timeout::Greeting,
            Phase::Command | Phase::Sasl(_) => Timeout::Command,
            Phase::Data(decoder) if !decoder.started() => Timeout::DataInit,
            Phase::Data(_) | Phase::Bdat(_) => Timeout::DataBlock,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The EHLO/HELO name accepted last.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The client greeted with EHLO (not HELO).
    pub fn extended(&self) -> bool {
        self.extended
    }

    /// The identity from a successful AUTH.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The transaction in progress (after an accepted MAIL, until its message is complete).
    pub fn envelope(&self) -> Option<&Envelope> {
        self.transaction.as_ref().map(|tx| &tx.envelope)
    }

    pub fn bad_commands(&self) -> u32 {
        self.bad_commands
    }

    pub fn auth_failures(&self) -> u32 {
        self.auth_failures
    }

    // ---- internals shared by the stage files ----

    pub(super) fn close(&mut self) {
        self.phase = Phase::Closed;
        self.input = Vec::new();
        self.pos = 0;
    }

    /// Sends an error reply; protocol errors count towards `max_bad_commands`.
    pub(super) fn fail(&mut self, reply: Static) {
        reply::push_static(&mut self.output, reply);
        if reply::is_protocol_error(reply.code) {
            self.bad_commands += 1;
            if self.bad_commands >= self.config.max_bad_commands {
                self.transaction = None;
                self.push_with_host(reply::TOO_MANY_ERRORS);
                self.close();
            }
        }
    }

    /// A command's preconditions, as `(refused, reply)` in the order they are checked: the first
    /// that holds is answered (through `fail`) and `None` returned, so a stage handler writes
    /// `self.guard(&[..])?;` and goes on only when none holds.
    pub(super) fn guard(&mut self, refusals: &[(bool, Static)]) -> Option<()> {
        match refusals.iter().find(|(refused, _)| *refused) {
            Some(&(_, reply)) => {
                self.fail(reply);
                None
            }
            None => Some(()),
        }
    }

    /// The value of a parse step, or `None` once its error reply is sent (through `fail`).
    pub(super) fn or_fail<T>(&mut self, result: Result<T, Static>) -> Option<T> {
        result.map_err(|reply| self.fail(reply)).ok()
    }

    /// Writes "<code> <enhanced> <hostname> <text>".
    pub(super) fn push_with_host(&mut self, reply: Static) {
        let text = format!("{} {}", self.config.hostname, reply.text);
        reply::push(&mut self.output, reply.code, reply.enhanced, &text);
    }

    pub(super) fn reset_transaction(&mut self) {
        self.transaction = None;
    }

    fn line_limit(&self) -> usize {
        let command = self.config.max_command_line.max(8);
        let rest = &self.input[self.pos..];
        let auth_line = matches!(self.phase, Phase::Sasl(_))
            || rest
                .get(..5)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "));
        if auth_line {
            command.max(MAX_AUTH_LINE)
        } else {
            command
        }
    }

    /// Frames the next line (LF-terminated; a preceding CR is stripped). `limit` includes the line
    /// ending; a longer line is dropped as it arrives.
    fn next_line(&mut self, limit: usize) -> Line {
        let available = &self.input[self.pos..];
        match memchr(b'\n', available) {
            Some(lf) => {
                let start = self.pos;
                self.pos += lf + 1;
                if std::mem::take(&mut self.discarding_line) || lf + 1 > limit {
                    return Line::TooLong;
                }
                let mut end = start + lf;
                if end > start && self.input[end - 1] == b'\r' {
                    end -= 1;
                }
                Line::Complete(start, end)
            }
            None => {
                if self.discarding_line || available.len() >= limit {
                    self.discarding_line = true;
                    self.input.clear();
                    self.pos = 0;
                }
                Line::NeedMore
            }
        }
    }

    fn dispatch(&mut self, line: &[u8]) -> Option<Event> {
        if let Phase::Sasl(_) = self.phase {
            return self.sasl_line(line);
        }
        let command = self.or_fail(command::parse(line))?;
        match command {
            Command::Ehlo(name) => self.cmd_ehlo(name, true),
            Command::Helo(name) => self.cmd_ehlo(name, false),
            Command::Mail(arg) => self.cmd_mail(arg),
            Command::Rcpt(arg) => self.cmd_rcpt(arg),
            Command::Data => {
                self.cmd_data();
                None
            }
            Command::Bdat { size, last } => {
                self.cmd_bdat(size, last);
                None
            }
            Command::Rset => {
                self.cmd_rset();
                None
            }
            Command::Noop => {
                reply::push_static(&mut self.output, reply::OK);
                None
            }
            Command::Quit => {
                self.cmd_quit();
                None
            }
            Command::Help => {
                self.cmd_help();
                None
            }
            Command::Vrfy => {
                reply::push_static(&mut self.output, reply::VRFY_CANNOT);
                None
            }
            Command::Expn => {
                self.fail(reply::EXPN_DISABLED);
                None
            }
            Command::StartTls => self.cmd_starttls(),
            Command::Auth { mechanism, initial } => self.cmd_auth(mechanism, initial),
            Command::Etrn(domain) => self.cmd_etrn(domain),
            Command::Atrn(domains) => self.cmd_atrn(domains),
            Command::NotImplemented => {
                self.fail(reply::NOT_IMPLEMENTED);
                None
            }
        }
    }
}
