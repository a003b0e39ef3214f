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

/// The session's reply constants, one row each: `NAME = code, "enhanced", "text";`.
macro_rules! replies {
    ($($name:ident = $code:literal, $enhanced:literal, $text:literal;)*) => {
        $(pub const $name: Static = Static { code: $code, enhanced: $enhanced, text: $text };)*
    };
}

replies! {
    // 2xx
    OK = 250, "2.0.0", "Ok";
    SENDER_OK = 250, "2.1.0", "Sender ok";
    RECIPIENT_OK = 250, "2.1.5", "Recipient ok";
    RESET_OK = 250, "2.0.0", "Reset ok";
    ETRN_OK = 250, "2.0.0", "Queuing started";
    ATRN_TURNING = 250, "2.0.0", "OK now reversing the connection";
    AUTH_OK = 235, "2.7.0", "Authentication successful";
    READY_FOR_TLS = 220, "2.0.0", "Ready to start TLS";
    VRFY_CANNOT = 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery";

    // 4xx
    TOO_MANY_RECIPIENTS = 452, "4.5.3", "Too many recipients";
    TOO_MANY_ERRORS = 421, "4.7.0", "Too many errors, closing connection";
    TOO_MANY_AUTH_FAILURES = 421, "4.7.0", "Too many authentication failures, closing connection";
    ATRN_UNAVAILABLE = 451, "4.3.0", "Unable to process ATRN request now";
    TIMEOUT = 421, "4.4.2", "Timeout exceeded, closing connection";

    // 5xx: syntax and sequence
    UNRECOGNIZED = 500, "5.5.1", "Command unrecognized";
    LINE_TOO_LONG = 500, "5.5.2", "Line too long";
    TEXT_LINE_TOO_LONG = 500, "5.5.2", "Message refused: a text line is longer than the limit";
    SYNTAX = 501, "5.5.4", "Syntax error in parameters or arguments";
    INVALID_UTF8 = 501, "5.5.4", "Invalid UTF-8 in command";
    NOT_IMPLEMENTED = 502, "5.5.1", "Command not implemented";
    EXPN_DISABLED = 502, "5.5.1", "EXPN not available";
    SEND_HELO_FIRST = 503, "5.5.1", "Send HELO/EHLO first";
    NESTED_MAIL = 503, "5.5.1", "Nested MAIL command";
    NEED_MAIL = 503, "5.5.1", "Need MAIL command";
    NEED_RCPT = 503, "5.5.1", "Need RCPT command";
    RCPT_AFTER_BDAT = 503, "5.5.1", "RCPT not allowed after BDAT";
    NO_VALID_RECIPIENTS = 554, "5.5.1", "No valid recipients";
    DATA_AFTER_BDAT = 503, "5.5.1", "DATA not allowed after BDAT in one transaction";
    ALREADY_TLS = 503, "5.5.1", "TLS already active";
    ALREADY_AUTHENTICATED = 503, "5.5.1", "Already authenticated";
    AUTH_IN_TRANSACTION = 503, "5.5.1", "AUTH not allowed during a mail transaction";
    ATRN_IN_TRANSACTION = 503, "5.5.1", "ATRN not allowed during a mail transaction";
    ETRN_IN_TRANSACTION = 503, "5.5.1", "ETRN not allowed during a mail transaction";
    PARAM_NOT_OFFERED = 555, "5.5.4", "Parameter not recognized or not implemented";
    BAD_SENDER = 501, "5.1.7", "Bad sender address syntax";
    BAD_RECIPIENT = 501, "5.1.3", "Bad recipient address syntax";
    UTF8_NOT_PERMITTED = 553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter";

    // 5xx: message and auth
    MESSAGE_TOO_BIG = 552, "5.3.4", "Message size exceeds fixed maximum message size";
    BARE_LINE_ENDING = 554, "5.6.0", "Message refused: bare CR or LF in message data (RFC 5321 2.3.8)";
    AUTH_REQUIRED = 530, "5.7.0", "Authentication required";
    ENCRYPTION_REQUIRED = 538, "5.7.11", "Encryption required for requested authentication mechanism";
    AUTH_FAILED = 535, "5.7.8", "Authentication credentials invalid";
    AUTH_CANCELLED = 501, "5.7.0", "Authentication cancelled";
    AUTH_BAD_BASE64 = 501, "5.5.2", "Invalid base64 data";
    AUTH_MALFORMED = 501, "5.5.2", "Malformed authentication response";
    AUTH_UNKNOWN_MECHANISM = 504, "5.5.4", "Unrecognized authentication mechanism";
}

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
