//! Encodings on the wire: dot-stuffing, RFC 3461 NOTIFY, and the checks that decide
//! whether a message needs 8BITMIME or SMTPUTF8.

use crate::delivery::contract::Outbound;
use crate::mail::{Notify, header};

/// Whether any byte has the high bit set.
pub fn has_8bit(message: &[u8]) -> bool {
    !message.is_ascii()
}

/// SMTPUTF8 is needed when an address is non-ASCII, or when the client declared it and the header
/// carries UTF-8 (RFC 6532).
pub fn needs_smtputf8(out: &Outbound<'_>) -> bool {
    let addresses = !out.reverse_path.address.is_ascii()
        || out.recipients.iter().any(|r| !r.address.is_ascii());
    addresses || (out.reverse_path.smtputf8 && !header::section(out.message).is_ascii())
}

/// RFC 3461 NOTIFY value.
pub fn notify_param(n: Notify) -> String {
    let mut words = Vec::new();
    if n.success {
        words.push("SUCCESS");
    }
    if n.failure {
        words.push("FAILURE");
    }
    if n.delay {
        words.push("DELAY");
    }
    if words.is_empty() {
        "NEVER".into()
    } else {
        words.join(",")
    }
}

/// Message data for DATA: dot-stuffed, bare LF made CRLF, ending in CRLF "." CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut previous = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        previous = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\nb\n"), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    #[test]
    fn notify() {
        assert_eq!(notify_param(Notify::default()), "NEVER");
        let n = Notify {
            success: true,
            failure: true,
            delay: false,
        };
        assert_eq!(notify_param(n), "SUCCESS,FAILURE");
    }
}
