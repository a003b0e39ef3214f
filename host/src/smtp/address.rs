//! RFC 5321 §4.1.2 paths: `"<" [ A-d-l ":" ] Mailbox ">"`, with RFC 6531 UTF-8 where allowed.
//!
//! The result is the mailbox as the client wrote it (quoted local parts stay quoted, the domain keeps
//! its case); a source route is accepted and stripped (RFC 5321 §3.6.1, Appendix C). Relay control
//! is the engine's job: this module only guarantees the address is well-formed, so tricks like a
//! trailing dot, an empty label or an unbalanced quote never reach it.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Syntax,
    /// Non-ASCII where SMTPUTF8 was not given.
    Utf8NotPermitted,
}

/// A parsed path and what follows it on the line (the ESMTP parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPath<'a> {
    /// Empty for the null path `<>`.
    pub address: String,
    /// The address has non-ASCII characters.
    pub utf8: bool,
    pub rest: &'a str,
}

pub const MAX_DOMAIN: usize = 255;

/// Parses a path at the start of `s`. `null_ok` allows `<>` (MAIL); `postmaster_ok` allows the
/// domain-less `<Postmaster>` (RCPT, RFC 5321 §4.5.1). Non-ASCII is reported in `utf8`; the caller
/// decides whether SMTPUTF8 permits it.
pub fn parse_path(
    s: &str,
    null_ok: bool,
    postmaster_ok: bool,
) -> Result<ParsedPath<'_>, PathError> {
    let body = s.strip_prefix('<').ok_or(PathError::Syntax)?;
    let end = find_path_end(body).ok_or(PathError::Syntax)?;
    let inner = &body[..end];
    let rest = &body[end + 1..];
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return Err(PathError::Syntax);
    }
    let rest = rest.trim_start_matches(' ');

    if inner.is_empty() {
        return if null_ok {
            Ok(ParsedPath {
                address: String::new(),
                utf8: false,
                rest,
            })
        } else {
            Err(PathError::Syntax)
        };
    }
    if postmaster_ok && inner.eq_ignore_ascii_case("postmaster") {
        return Ok(ParsedPath {
            address: inner.to_string(),
            utf8: false,
            rest,
        });
    }
    let mailbox = strip_source_route(inner)?;
    parse_mailbox(mailbox)?;
    Ok(ParsedPath {
        address: mailbox.to_string(),
        utf8: !mailbox.is_ascii(),
        rest,
    })
}

/// Index of the closing '>' in `body`, skipping quoted strings.
fn find_path_end(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `@a,@b:user@d` → `user@d`, checking each route domain.
fn strip_source_route(inner: &str) -> Result<&str, PathError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(PathError::Syntax)?;
    for hop in inner[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or(PathError::Syntax)?;
        if !is_domain(domain) {
            return Err(PathError::Syntax);
        }
    }
    Ok(&inner[colon + 1..])
}

/// `Local-part "@" ( Domain / address-literal )`.
pub fn parse_mailbox(mailbox: &str) -> Result<(), PathError> {
    let at = local_part_end(mailbox)?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if local.is_empty() {
        return Err(PathError::Syntax);
    }
    if domain.starts_with('[') {
        if is_address_literal(domain) {
            Ok(())
        } else {
            Err(PathError::Syntax)
        }
    } else if is_domain(domain) {
        Ok(())
    } else {
        Err(PathError::Syntax)
    }
}

/// Validates the local part and returns the index of the '@' after it.
fn local_part_end(mailbox: &str) -> Result<usize, PathError> {
    let bytes = mailbox.as_bytes();
    if bytes.first() == Some(&b'"') {
        // Quoted-string: qtextSMTP / quoted-pairSMTP (RFC 6531 adds UTF-8).
        let mut i = 1;
        loop {
            match bytes.get(i) {
                None => return Err(PathError::Syntax),
                Some(b'"') => break,
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(&c) if (32..=126).contains(&c) => i += 2,
                    _ => return Err(PathError::Syntax),
                },
                Some(&c) if c == 32 || c == 33 || (35..=126).contains(&c) || c >= 0x80 => i += 1,
                Some(_) => return Err(PathError::Syntax),
            }
        }
        if bytes.get(i + 1) == Some(&b'@') {
            Ok(i + 1)
        } else {
            Err(PathError::Syntax)
        }
    } else {
        // Dot-string: atoms separated by single dots.
        let at = mailbox.rfind('@').ok_or(PathError::Syntax)?;
        let local = &mailbox[..at];
        if local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
        {
            Ok(at)
        } else {
            Err(PathError::Syntax)
        }
    }
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// `sub-domain *("." sub-domain)`; sub-domains are LDH labels (or U-labels, RFC 6531). No empty
/// label, so no leading or trailing dot.
pub fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN
        && domain.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        })
}

/// `[1.2.3.4]` or `[IPv6:…]`. General address literals (other tags) are refused: none is standardized.
fn is_address_literal(literal: &str) -> bool {
    let Some(inner) = literal.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if let Some(v6) = inner
        .get(..5)
        .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &inner[5..])
    {
        v6.parse::<Ipv6Addr>().is_ok()
    } else {
        inner.parse::<Ipv4Addr>().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Result<String, PathError> {
        parse_path(s, true, true).map(|p| p.address)
    }

    #[test]
    fn plain_and_null_paths() {
        assert_eq!(addr("<alice@example.test>").unwrap(), "alice@example.test");
        assert_eq!(addr("<>").unwrap(), "");
        assert_eq!(parse_path("<>", false, false), Err(PathError::Syntax));
        let p = parse_path("<a@b.c> SIZE=10", false, false).unwrap();
        assert_eq!(p.rest, "SIZE=10");
    }

    #[test]
    fn source_route_is_stripped() {
        assert_eq!(
            addr("<@a.example,@b.example:u@d.example>").unwrap(),
            "u@d.example"
        );
        assert_eq!(addr("<@a.example:u@d.example>").unwrap(), "u@d.example");
        assert_eq!(addr("<@:u@d.example>"), Err(PathError::Syntax));
        assert_eq!(addr("<@a..b:u@d.example>"), Err(PathError::Syntax));
    }

    #[test]
    fn quoted_local_parts() {
        for (path, address) in [
            ("<\"john doe\"@example.test>", "\"john doe\"@example.test"),
            ("<\"a@b\"@example.test>", "\"a@b\"@example.test"),
            ("<\"a>b\"@example.test>", "\"a>b\"@example.test"),
            ("<\"a\\\"b\"@example.test>", "\"a\\\"b\"@example.test"),
        ] {
            assert_eq!(addr(path).unwrap(), address, "{path}");
        }
        assert_eq!(
            addr("<\"unterminated@example.test>"),
            Err(PathError::Syntax)
        );
    }

    #[test]
    fn ip_literals() {
        assert_eq!(addr("<u@[192.0.2.1]>").unwrap(), "u@[192.0.2.1]");
        assert_eq!(
            addr("<u@[IPv6:2001:db8::1]>").unwrap(),
            "u@[IPv6:2001:db8::1]"
        );
        assert_eq!(addr("<u@[300.0.0.1]>"), Err(PathError::Syntax));
        assert_eq!(addr("<u@[tag:xyz]>"), Err(PathError::Syntax));
    }

    #[test]
    fn malformed_addresses() {
        for bad in [
            "alice@example.test",
            "<alice@example.test",
            "<alice>",
            "<@example.test>",
            "<alice@>",
            "<alice@example.test.>",
            "<alice@.example.test>",
            "<alice@exa mple.test>",
            "<a..b@example.test>",
            "<.a@example.test>",
            "<a b@example.test>",
            "<a@b@example.test>",
            "<alice@-x.test>",
            "<alice@example.test>junk",
        ] {
            assert_eq!(addr(bad), Err(PathError::Syntax), "{bad}");
        }
    }

    #[test]
    fn postmaster_only_where_allowed() {
        assert_eq!(addr("<Postmaster>").unwrap(), "Postmaster");
        assert_eq!(
            parse_path("<postmaster>", false, false),
            Err(PathError::Syntax)
        );
    }

    #[test]
    fn utf8_is_reported() {
        let p = parse_path("<jösé@bücher.example>", false, false).unwrap();
        assert!(p.utf8);
        assert_eq!(p.address, "jösé@bücher.example");
    }
}
