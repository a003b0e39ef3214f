//! Reply formatting. Every 2xx/4xx/5xx reply carries an RFC 3463 enhanced status code; RFC 2034 §3
//! exempts the greeting and the HELO/EHLO answers (whose lines are extension keywords), and 334/354
//! are intermediate replies without one.
//!
//! The session's own replies are `Static` constants written straight into the output buffer, so a
//! pipelined batch costs no allocation per reply.

use crate::mail::Reply;
use crate::mail::reply::enhanced_code_fits;

/// A reply known at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Static {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: &'static str,
}

const fn r(code: u16, enhanced: &'static str, text: &'static str) -> Static {
    Static {
        code,
        enhanced,
        text,
    }
}

// 2xx
pub const OK: Static = r(250, "2.0.0", "Ok");
pub const SENDER_OK: Static = r(250, "2.1.0", "Sender ok");
pub const RECIPIENT_OK: Static = r(250, "2.1.5", "Recipient ok");
pub const RESET_OK: Static = r(250, "2.0.0", "Reset ok");
pub const ETRN_OK: Static = r(250, "2.0.0", "Queuing started");
pub const ATRN_TURNING: Static = r(250, "2.0.0", "OK now reversing the connection");
pub const AUTH_OK: Static = r(235, "2.7.0", "Authentication successful");
pub const READY_FOR_TLS: Static = r(220, "2.0.0", "Ready to start TLS");
pub const VRFY_CANNOT: Static = r(
    252,
    "2.5.0",
    "Cannot VRFY user, but will accept message and attempt delivery",
);

// 4xx
pub const TOO_MANY_RECIPIENTS: Static = r(452, "4.5.3", "Too many recipients");
pub const TOO_MANY_ERRORS: Static = r(421, "4.7.0", "Too many errors, closing connection");
pub const TOO_MANY_AUTH_FAILURES: Static = r(
    421,
    "4.7.0",
    "Too many authentication failures, closing connection",
);
pub const ATRN_UNAVAILABLE: Static = r(451, "4.3.0", "Unable to process ATRN request now");
pub const TIMEOUT: Static = r(421, "4.4.2", "Timeout exceeded, closing connection");

// 5xx: syntax and sequence
pub const UNRECOGNIZED: Static = r(500, "5.5.1", "Command unrecognized");
pub const LINE_TOO_LONG: Static = r(500, "5.5.2", "Line too long");
pub const TEXT_LINE_TOO_LONG: Static = r(
    500,
    "5.5.2",
    "Message refused: a text line is longer than the limit",
);
pub const SYNTAX: Static = r(501, "5.5.4", "Syntax error in parameters or arguments");
pub const INVALID_UTF8: Static = r(501, "5.5.4", "Invalid UTF-8 in command");
pub const NOT_IMPLEMENTED: Static = r(502, "5.5.1", "Command not implemented");
pub const EXPN_DISABLED: Static = r(502, "5.5.1", "EXPN not available");
pub const SEND_HELO_FIRST: Static = r(503, "5.5.1", "Send HELO/EHLO first");
pub const NESTED_MAIL: Static = r(503, "5.5.1", "Nested MAIL command");
pub const NEED_MAIL: Static = r(503, "5.5.1", "Need MAIL command");
pub const NEED_RCPT: Static = r(503, "5.5.1", "Need RCPT command");
pub const RCPT_AFTER_BDAT: Static = r(503, "5.5.1", "RCPT not allowed after BDAT");
pub const NO_VALID_RECIPIENTS: Static = r(554, "5.5.1", "No valid recipients");
pub const DATA_AFTER_BDAT: Static = r(
    503,
    "5.5.1",
    "DATA not allowed after BDAT in one transaction",
);
pub const ALREADY_TLS: Static = r(503, "5.5.1", "TLS already active");
pub const ALREADY_AUTHENTICATED: Static = r(503, "5.5.1", "Already authenticated");
pub const AUTH_IN_TRANSACTION: Static =
    r(503, "5.5.1", "AUTH not allowed during a mail transaction");
pub const ATRN_IN_TRANSACTION: Static =
    r(503, "5.5.1", "ATRN not allowed during a mail transaction");
pub const ETRN_IN_TRANSACTION: Static =
    r(503, "5.5.1", "ETRN not allowed during a mail transaction");
pub const PARAM_NOT_OFFERED: Static =
    r(555, "5.5.4", "Parameter not recognized or not implemented");
pub const BAD_SENDER: Static = r(501, "5.1.7", "Bad sender address syntax");
pub const BAD_RECIPIENT: Static = r(501, "5.1.3", "Bad recipient address syntax");
pub const UTF8_NOT_PERMITTED: Static = r(
    553,
    "5.6.7",
    "Non-ASCII address requires the SMTPUTF8 parameter",
);

// 5xx: message and auth
pub const MESSAGE_TOO_BIG: Static = r(
    552,
    "5.3.4",
    "Message size exceeds fixed maximum message size",
);
pub const BARE_LINE_ENDING: Static = r(
    554,
    "5.6.0",
    "Message refused: bare CR or LF in message data (RFC 5321 2.3.8)",
);
pub const AUTH_REQUIRED: Static = r(530, "5.7.0", "Authentication required");
pub const ENCRYPTION_REQUIRED: Static = r(
    538,
    "5.7.11",
    "Encryption required for requested authentication mechanism",
);
pub const AUTH_FAILED: Static = r(535, "5.7.8", "Authentication credentials invalid");
pub const AUTH_CANCELLED: Static = r(501, "5.7.0", "Authentication cancelled");
pub const AUTH_BAD_BASE64: Static = r(501, "5.5.2", "Invalid base64 data");
pub const AUTH_MALFORMED: Static = r(501, "5.5.2", "Malformed authentication response");
pub const AUTH_UNKNOWN_MECHANISM: Static = r(504, "5.5.4", "Unrecognized authentication mechanism");

impl Static {
    pub fn to_reply(self) -> Reply {
        Reply::new(self.code, self.enhanced, self.text)
    }
}

/// True for replies that count as a client's protocol error (see `SessionConfig::max_bad_commands`).
pub fn is_protocol_error(code: u16) -> bool {
    matches!(code, 500..=504 | 530 | 553 | 555)
}

fn push_code(out: &mut Vec<u8>, code: u16) {
    let code = if (200..=599).contains(&code) {
        code
    } else {
        451
    };
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
}

/// Writes a reply; `text` may hold several lines separated by `\n` (sent as "250-" continuations).
/// Control characters are replaced so that no text (e.g. from a plugin) can inject a reply line.
pub fn push(out: &mut Vec<u8>, code: u16, enhanced: &str, text: &str) {
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        push_code(out, code);
        out.push(if lines.peek().is_some() { b'-' } else { b' ' });
        if !enhanced.is_empty() {
            out.extend_from_slice(enhanced.as_bytes());
            out.push(b' ');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.bytes().any(|b| b.is_ascii_control()) {
            out.extend(
                line.bytes()
                    .map(|b| if b.is_ascii_control() { b' ' } else { b }),
            );
        } else {
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

pub fn push_static(out: &mut Vec<u8>, reply: Static) {
    push(out, reply.code, reply.enhanced, reply.text);
}

/// Writes a reply from the engine or a plugin, repairing what would break the protocol: a code
/// outside 200..=599 becomes 451, and a missing or mismatched enhanced code becomes "X.0.0".
pub fn push_reply(out: &mut Vec<u8>, reply: &Reply) {
    let code = if (200..=599).contains(&reply.code) {
        reply.code
    } else {
        451
    };
    let class = (b'0' + (code / 100) as u8) as char;
    if enhanced_code_fits(code, &reply.enhanced) {
        push(out, code, &reply.enhanced, &reply.text);
    } else {
        let fallback = match class {
            '2' => "2.0.0",
            '3' => "",
            '4' => "4.0.0",
            _ => "5.0.0",
        };
        push(out, code, fallback, &reply.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_line_reply_has_enhanced_code() {
        assert_eq!(text(|o| push_static(o, OK)), "250 2.0.0 Ok\r\n");
    }

    #[test]
    fn multi_line_reply_uses_dash_continuations() {
        let s = text(|o| push(o, 550, "5.7.1", "first\nsecond\nthird"));
        assert_eq!(
            s,
            "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
        );
    }

    #[test]
    fn plugin_reply_is_repaired() {
        let bad = Reply::new(999, "2.0.0", "x\ry");
        assert_eq!(text(|o| push_reply(o, &bad)), "451 4.0.0 x y\r\n");
        let mismatched = Reply::new(550, "4.7.1", "no");
        assert_eq!(text(|o| push_reply(o, &mismatched)), "550 5.0.0 no\r\n");
        let good = Reply::new(554, "5.7.1", "Relay denied");
        assert_eq!(text(|o| push_reply(o, &good)), "554 5.7.1 Relay denied\r\n");
    }
}
