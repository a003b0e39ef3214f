//! Reading the peer's replies: strict, bounded and panic-free, because the peer is untrusted.
//!
//! A reply is one or more lines `DDD-text` ... `DDD text` (RFC 5321 §4.2). Every line must carry
//! the same three-digit code, first digit 2 to 5. The text may start with an RFC 3463 enhanced
//! status code (`x.y.z`) whose class must match the reply's first digit.

use std::borrow::Cow;

use crate::mail::Reply;
use crate::mail::reply::enhanced_code_fits;

/// Longest reply line we accept, CRLF included. RFC 5321 §4.5.3.1.5 says 512; real servers
/// exceed it with long texts, so allow some slack but stay bounded.
pub const MAX_LINE: usize = 2048;
/// Most lines in one reply (an EHLO response has one per extension).
pub const MAX_LINES: usize = 128;

/// One reply as received: its code, the enhanced status code if present, and the text of each
/// line with the enhanced code removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    pub enhanced: Option<String>,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("reply has more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("malformed reply line")]
    Malformed,
    #[error("reply lines disagree on the code")]
    InconsistentCode,
    #[error("reply is incomplete")]
    Incomplete,
}

/// One parsed line: its code, whether it is the last of the reply, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: u16,
    pub last: bool,
    pub text: Cow<'a, str>,
}

/// Parses one reply line, CRLF (or bare LF) already removed.
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine<'_>, ReplyError> {
    if line.len() > MAX_LINE {
        return Err(ReplyError::LineTooLong);
    }
    let digits = line.get(..3).ok_or(ReplyError::Malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(ReplyError::Malformed);
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let (last, rest) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(ReplyError::Malformed),
    };
    // Control characters have no place in a reply (and could forge log lines or headers later).
    if rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ReplyError::Malformed);
    }
    // Replies should be ASCII (UTF-8 with SMTPUTF8), but legacy servers send Latin-1 texts:
    // keep the session going and replace what is not UTF-8.
    let text = String::from_utf8_lossy(rest);
    Ok(ReplyLine { code, last, text })
}

/// Parses a complete reply from `input` (lines ending in CRLF or LF). Returns the reply and the
/// number of bytes it used, so pipelined replies can be split from one buffer.
/// Never panics, whatever the input: this is the function to fuzz.
pub fn parse_reply(input: &[u8]) -> Result<(ServerReply, usize), ReplyError> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut offset = 0;
    loop {
        let rest = &input[offset..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(if rest.len() > MAX_LINE {
                ReplyError::LineTooLong
            } else {
                ReplyError::Incomplete
            });
        };
        let raw = &rest[..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        offset += end + 1;
        let line = parse_reply_line(raw)?;
        if *code.get_or_insert(line.code) != line.code {
            return Err(ReplyError::InconsistentCode);
        }
        if lines.len() == MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        lines.push(line.text.into_owned());
        if line.last {
            break;
        }
    }
    let code = code.unwrap_or(0);
    Ok((ServerReply::from_lines(code, lines), offset))
}

impl ServerReply {
    /// Builds a reply from its raw line texts, taking the enhanced code off each line.
    pub fn from_lines(code: u16, raw: Vec<String>) -> ServerReply {
        let enhanced = raw
            .first()
            .and_then(|l| split_enhanced(code, l))
            .map(|(e, _)| e);
        let lines = raw
            .into_iter()
            .map(|l| match (&enhanced, split_enhanced(code, &l)) {
                (Some(e), Some((this, text))) if &this == e => text.to_string(),
                _ => l,
            })
            .collect();
        ServerReply {
            code,
            enhanced,
            lines,
        }
    }

    pub fn class(&self) -> u16 {
        self.code / 100
    }

    pub fn is_positive(&self) -> bool {
        self.class() == 2 || self.class() == 3
    }

    /// The reply as the rest of the host sees it. Without an enhanced code, a generic one of the
    /// same class (`4.0.0`, `5.0.0`) stands in.
    pub fn to_reply(&self) -> Reply {
        let enhanced = self
            .enhanced
            .clone()
            .unwrap_or_else(|| format!("{}.0.0", self.class()));
        Reply::new(self.code, enhanced, self.lines.join(" "))
    }
}

/// Splits `"5.1.1 text"` into ("5.1.1", "text") when the prefix is a valid RFC 3463 code whose
/// class matches the reply code.
fn split_enhanced(code: u16, text: &str) -> Option<(String, &str)> {
    let (candidate, rest) = match text.find(' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    if enhanced_code_fits(code, candidate) {
        Some((candidate.to_string(), rest))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        let (r, used) = parse_reply(b"250 2.1.0 Ok\r\n").unwrap();
        assert_eq!(used, 14);
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced.as_deref(), Some("2.1.0"));
        assert_eq!(r.lines, vec!["Ok"]);
    }

    #[test]
    fn multi_line_and_pipelined_split() {
        let input = b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n550 5.1.1 no\r\n";
        let (r, used) = parse_reply(input).unwrap();
        assert_eq!(r.lines, vec!["mx.test", "PIPELINING", "SIZE 1000"]);
        let (next, _) = parse_reply(&input[used..]).unwrap();
        assert_eq!(next.to_reply(), Reply::new(550, "5.1.1", "no"));
    }

    #[test]
    fn bare_code_and_missing_enhanced_code() {
        let (r, _) = parse_reply(b"354\r\n").unwrap();
        assert_eq!(r.code, 354);
        let (r, _) = parse_reply(b"451 try later\n").unwrap();
        assert_eq!(r.to_reply(), Reply::new(451, "4.0.0", "try later"));
    }

    #[test]
    fn enhanced_code_of_wrong_class_is_text() {
        let (r, _) = parse_reply(b"550 2.0.0 odd\r\n").unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines, vec!["2.0.0 odd"]);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b"25 ok\r\n"[..],
            b"abc ok\r\n",
            b"650 ok\r\n",
            b"250x ok\r\n",
            b"250-a\r\n251 b\r\n",
            b"250 \x01\r\n",
            b"250 a\rb\r\n",
        ] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_reply(b"250-a\r\n"), Err(ReplyError::Incomplete));
        let long = vec![b'2'; MAX_LINE + 10];
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(parse_reply(&many), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn latin1_text_is_replaced_not_fatal() {
        let (r, _) = parse_reply(b"550 5.1.1 Gr\xfc\xdfe\r\n").unwrap();
        assert_eq!(r.code, 550);
        assert!(r.lines[0].starts_with("Gr"));
    }

    #[test]
    fn random_input_never_panics() {
        use rand::RngExt as _;
        let mut rng = rand::rng();
        let alphabet = b"0123456789 -.\r\n\t\xffabcDSN";
        for _ in 0..20_000 {
            let len = rng.random_range(0..64);
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            if let Ok((reply, used)) = parse_reply(&input) {
                assert!(used <= input.len());
                assert!((200..600).contains(&reply.code));
            }
        }
    }

    #[test]
    fn never_panics_on_prefixes() {
        let input = b"250-mx\r\n250-8BITMIME\r\n250 2.0.0 DSN\r\n";
        for i in 0..input.len() {
            let _ = parse_reply(&input[..i]);
            let _ = parse_reply(&input[i..]);
        }
    }
}
