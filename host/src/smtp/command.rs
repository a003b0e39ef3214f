//! Command line parsing: the verb and its raw argument. Stage files parse the arguments further.
//!
//! The line arrives without its line ending. The verb is ASCII and case-insensitive; the argument
//! must be valid UTF-8 (non-ASCII is only meaningful with SMTPUTF8, which the stages check).

use super::reply::{self, Static};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(&'a str),
    Helo(&'a str),
    /// The text after "MAIL FROM:".
    Mail(&'a str),
    /// The text after "RCPT TO:".
    Rcpt(&'a str),
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    Expn,
    StartTls,
    Auth {
        mechanism: &'a str,
        initial: Option<&'a str>,
    },
    Etrn(&'a str),
    /// ATRN with its domain list as given (may be empty).
    Atrn(&'a str),
    /// A verb from some SMTP standard this server does not offer (502 5.5.1).
    NotImplemented,
}

/// Verbs this server knows but does not offer.
const NOT_OFFERED: &[&str] = &[
    "TURN", "SEND", "SOML", "SAML", "VERB", "XCLIENT", "XFORWARD", "BURL", "ONEX",
];

/// Parses one command line (without CRLF). An error is the reply to send.
pub fn parse(line: &[u8]) -> Result<Command<'_>, Static> {
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let verb = &line[..verb_end];
    let rest = if verb_end < line.len() {
        &line[verb_end + 1..]
    } else {
        &[][..]
    };
    if verb.len() > 10 {
        return Err(reply::UNRECOGNIZED);
    }
    let mut upper = [0u8; 10];
    upper[..verb.len()].copy_from_slice(verb);
    upper.make_ascii_uppercase();
    let verb = &upper[..verb.len()];

    let arg = std::str::from_utf8(rest).map_err(|_| reply::INVALID_UTF8)?;
    let no_arg = |command: Command<'static>| {
        if arg.trim().is_empty() {
            Ok(command)
        } else {
            Err(reply::SYNTAX)
        }
    };
    match verb {
        b"EHLO" => Ok(Command::Ehlo(arg)),
        b"HELO" => Ok(Command::Helo(arg)),
        b"MAIL" => strip_prefix_ci(arg, "FROM:")
            .map(Command::Mail)
            .ok_or(reply::SYNTAX),
        b"RCPT" => strip_prefix_ci(arg, "TO:")
            .map(Command::Rcpt)
            .ok_or(reply::SYNTAX),
        b"DATA" => no_arg(Command::Data),
        b"BDAT" => parse_bdat(arg),
        b"RSET" => no_arg(Command::Rset),
        b"NOOP" => Ok(Command::Noop),
        b"QUIT" => no_arg(Command::Quit),
        b"HELP" => Ok(Command::Help),
        b"VRFY" => non_empty(arg).map(|_| Command::Vrfy),
        b"EXPN" => non_empty(arg).map(|_| Command::Expn),
        b"STARTTLS" => no_arg(Command::StartTls),
        b"AUTH" => parse_auth(arg),
        b"ETRN" => non_empty(arg).map(|domain| Command::Etrn(domain.trim())),
        b"ATRN" => Ok(Command::Atrn(arg.trim())),
        _ if NOT_OFFERED.iter().any(|v| v.as_bytes() == verb) => Ok(Command::NotImplemented),
        _ => Err(reply::UNRECOGNIZED),
    }
}

fn non_empty(arg: &str) -> Result<&str, Static> {
    if arg.trim().is_empty() {
        Err(reply::SYNTAX)
    } else {
        Ok(arg)
    }
}

/// "FROM:" / "TO:" case-insensitively; a space after the colon is tolerated (common in the wild).
fn strip_prefix_ci<'a>(arg: &'a str, prefix: &str) -> Option<&'a str> {
    let head = arg.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        Some(arg[prefix.len()..].trim_start_matches(' '))
    } else {
        None
    }
}

/// "BDAT" SP chunk-size [ SP "LAST" ] (RFC 3030).
fn parse_bdat(arg: &str) -> Result<Command<'static>, Static> {
    let mut words = arg.split(' ');
    let size = words.next().unwrap_or("");
    if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reply::SYNTAX);
    }
    let size: u64 = size.parse().map_err(|_| reply::SYNTAX)?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(reply::SYNTAX),
    };
    if words.next().is_some() {
        return Err(reply::SYNTAX);
    }
    Ok(Command::Bdat { size, last })
}

/// "AUTH" SP mechanism [ SP initial-response ] (RFC 4954).
fn parse_auth(arg: &str) -> Result<Command<'_>, Static> {
    let mut words = arg.split(' ');
    let mechanism = words.next().unwrap_or("");
    if mechanism.is_empty() {
        return Err(reply::SYNTAX);
    }
    let initial = words.next();
    if initial == Some("") || words.next().is_some() {
        return Err(reply::SYNTAX);
    }
    Ok(Command::Auth { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        #[rustfmt::skip]
        let cases: &[(&[u8], Result<Command, Static>)] = &[
            // Verbs are case-insensitive.
            (b"ehlo client.example", Ok(Command::Ehlo("client.example"))),
            (b"QuIt", Ok(Command::Quit)),
            (b"mail from:<a@b.c>", Ok(Command::Mail("<a@b.c>"))),
            (b"RCPT TO: <a@b.c>", Ok(Command::Rcpt("<a@b.c>"))),
            // Unknown and not offered.
            (b"FOO", Err(reply::UNRECOGNIZED)),
            (b"", Err(reply::UNRECOGNIZED)),
            (b"AVERYLONGVERBINDEED", Err(reply::UNRECOGNIZED)),
            (b"TURN", Ok(Command::NotImplemented)),
            // Arguments where none are allowed (or one is missing).
            (b"DATA x", Err(reply::SYNTAX)),
            (b"RSET x", Err(reply::SYNTAX)),
            (b"MAIL TO:<a@b>", Err(reply::SYNTAX)),
            (b"VRFY", Err(reply::SYNTAX)),
            // BDAT forms.
            (b"BDAT 10", Ok(Command::Bdat { size: 10, last: false })),
            (b"BDAT 0 LAST", Ok(Command::Bdat { size: 0, last: true })),
            (b"bdat 5 last", Ok(Command::Bdat { size: 5, last: true })),
            (b"BDAT", Err(reply::SYNTAX)),
            (b"BDAT -1", Err(reply::SYNTAX)),
            (b"BDAT 1 FIRST", Err(reply::SYNTAX)),
            (b"BDAT 99999999999999999999", Err(reply::SYNTAX)),
            // AUTH forms.
            (b"AUTH PLAIN AGEAYg==", Ok(Command::Auth { mechanism: "PLAIN", initial: Some("AGEAYg==") })),
            (b"AUTH LOGIN", Ok(Command::Auth { mechanism: "LOGIN", initial: None })),
            (b"AUTH", Err(reply::SYNTAX)),
            // The argument must be UTF-8.
            (b"MAIL FROM:<\xff@b>", Err(reply::INVALID_UTF8)),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), *expected, "{}", String::from_utf8_lossy(line));
        }
    }
}
