//! What the session and the engine exchange: the session's configuration, the TLS and
//! credentials it learns of, the events it raises, the answers it waits for and the timer it asks
//! for. The stage files use this file, never `smtp/mod.rs`, which re-exports it.

use crate::mail::{Envelope, Recipient, Reply, ReversePath};

/// The TLS a session runs under, as the engine reports it after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. "TLSv1.3"
    pub version: String,
    /// e.g. "TLS13_AES_256_GCM_SHA384"
    pub cipher: String,
}

/// Credentials offered with AUTH.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// "PLAIN", "LOGIN" or "CRAM-MD5"
    pub mechanism: String,
    pub authzid: String,
    pub authcid: String,
    /// The password; for CRAM-MD5 the client's hex digest of `challenge`.
    pub secret: String,
    /// The challenge of a challenge-response mechanism (CRAM-MD5), as sent.
    pub challenge: Option<String>,
}

/// What one listener's sessions allow. Built by the engine from `[server]` and `[[listeners]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our name in the greeting, EHLO answer and QUIT reply.
    pub hostname: String,
    /// Advertised as `SIZE <max>`; a declared `SIZE=` over it gets 552 5.3.4 at MAIL, an actual
    /// message over it gets 552 5.3.4 after the data (the session goes on).
    pub max_message_size: usize,
    /// Recipients per transaction; one more gets 452 4.5.3.
    pub max_recipients: usize,
    /// Longest command line including CRLF (RFC 5321 §4.5.3.1.4: 512); longer gets 500 5.5.2.
    /// AUTH lines and SASL responses get RFC 4954's 12288 instead.
    pub max_command_line: usize,
    /// Longest text line of a message including CRLF (RFC 5321 §4.5.3.1.6: 1000).
    pub max_text_line: usize,
    /// Protocol errors (500, 501, 502, 503, 553, 555) tolerated; reaching it gets 421 4.7.0 + close.
    pub max_bad_commands: u32,
    /// Failed AUTH attempts tolerated; reaching it gets 421 4.7.0 + close.
    pub max_auth_failures: u32,
    /// The listener can do STARTTLS (advertised only while not under TLS).
    pub starttls: bool,
    /// The listener offers AUTH at all.
    pub auth: bool,
    /// AUTH allowed without TLS (else not advertised in plaintext, and AUTH there gets 538 5.7.11).
    pub auth_plaintext: bool,
    /// MAIL before a successful AUTH gets 530 5.7.0.
    pub auth_required: bool,
    /// Advertise and accept ETRN (RFC 1985), surfaced as [`Event::Etrn`].
    pub etrn: bool,
    /// Offer AUTH CRAM-MD5 (RFC 2195), with or without TLS (the odmr listener).
    pub cram_md5: bool,
    /// Advertise and accept ATRN (RFC 2645), surfaced as [`Event::Atrn`].
    pub atrn: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_string(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 512,
            max_text_line: 1000,
            max_bad_commands: 20,
            max_auth_failures: 3,
            starttls: false,
            auth: false,
            auth_plaintext: false,
            auth_required: false,
            etrn: false,
            cram_md5: false,
            atrn: false,
        }
    }
}

/// Something the engine must act on. Events marked "answer" wait for exactly one
/// [`Session::answer`](super::session::Session::answer); until then
/// [`Session::poll`](super::session::Session::poll) returns `None` and no further input is read.
#[derive(Debug, Clone)]
pub enum Event {
    /// EHLO or HELO with its syntactically valid name. Answer `Accept` (the session sends the
    /// 250 with its extensions), `Refuse(reply)` or `Disconnect(reply)`.
    Ehlo { name: String, extended: bool },
    /// AUTH PLAIN or LOGIN decoded. Answer `Authenticated(identity)` (235 2.7.0), `Refuse(reply)`
    /// (e.g. 535 5.7.8 or 454 4.7.0; a 5xx counts as a failure) or `Disconnect(reply)`.
    Auth(Credentials),
    /// MAIL FROM, parsed. Answer `Accept` (250 2.1.0), `Refuse(reply)` or `Disconnect(reply)`.
    Mail(ReversePath),
    /// RCPT TO, parsed. Answer `Accept` (250 2.1.5), `AcceptAs(address)` (recorded rewritten),
    /// `Refuse(reply)` or `Disconnect(reply)`.
    Rcpt(Recipient),
    /// A complete message (DATA dot-unstuffed, or BDAT chunks joined), CRLF line ends only
    /// (bare CR/LF are refused), ending in CRLF unless empty, within `max_message_size` (a
    /// final CRLF supplied to a BDAT message may add 2 octets). Answer
    /// `Queued(id)` only once it is durable (250 2.0.0), `Refuse(reply)` or `Disconnect(reply)`.
    Message { envelope: Envelope, data: Vec<u8> },
    /// The 220 2.0.0 is queued and input after the STARTTLS line is discarded (CVE-2011-0411).
    /// Engine: write the output, do the handshake, then call
    /// [`Session::tls_started`](super::session::Session::tls_started). No answer.
    StartTls,
    /// ETRN for a domain (or `@domain`, `#queue` as given). Answer `Accept` (250 2.0.0) or
    /// `Refuse(reply)`.
    Etrn { domain: String },
    /// ATRN by an authenticated client, with the domains asked for (lower case, deduplicated;
    /// empty: all the client may collect). Answer `Accept` (250, then [`Event::Turn`]) or
    /// `Refuse(reply)` (450 / 451 / 453 per RFC 2645).
    Atrn { domains: Vec<String> },
    /// ATRN was accepted and its 250 is in the output: write it, then act as the SMTP client on
    /// this connection. `leftover` is what the peer sent after the ATRN line (the start of its
    /// greeting, if it was quick). The session is over; no Close follows. No answer.
    Turn { leftover: Vec<u8> },
    /// The session is over (QUIT, 421, a Disconnect): write the output, then close the socket.
    Close,
}

/// The engine's answer to the pending [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// RCPT only: accept and record this address instead of the one given.
    AcceptAs(String),
    /// AUTH only: the authenticated identity.
    Authenticated(String),
    /// Message only: the spool's queue id, sent back in the 250.
    Queued(String),
    Refuse(Reply),
    /// Send this reply, then close.
    Disconnect(Reply),
}

/// Which RFC 5321 §4.5.3.2 server-side timer applies while waiting for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The greeting was not sent yet (engine's pre-greeting wait / early-talker window).
    Greeting,
    /// Waiting for a command line (RFC 5321 "server timeout", 5 minutes).
    Command,
    /// After 354, before the first data byte (RFC 5321 "DATA initiation", 2 minutes).
    DataInit,
    /// Inside DATA or a BDAT chunk, waiting for more bytes ("data block", 3 minutes).
    DataBlock,
    /// Waiting on the engine (an event is pending) or closed: no client timer runs.
    None,
}
