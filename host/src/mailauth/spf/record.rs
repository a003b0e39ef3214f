//! An SPF record (RFC 7208 §4.5, §5, §6, §12) parsed whole before anything is evaluated: a
//! syntax error anywhere makes the result permerror (§4.6), whatever an earlier term would have
//! matched.

use super::macros::{Context, MacroString};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(MacroString),
    A(Hosts),
    Mx(Hosts),
    Ptr(Option<MacroString>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(MacroString),
}

/// The argument of `a` and `mx` (§5.3, §5.4): `[":" domain-spec] [dual-cidr-length]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    /// None: the current domain.
    pub domain: Option<MacroString>,
    pub cidr4: u8,
    pub cidr6: u8,
}

impl Mechanism {
    /// Mechanisms that query DNS count towards the limit of 10 (§4.6.4).
    pub fn queries_dns(&self) -> bool {
        !matches!(
            self,
            Mechanism::All | Mechanism::Ip4(..) | Mechanism::Ip6(..)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub directives: Vec<Directive>,
    pub redirect: Option<MacroString>,
    pub exp: Option<MacroString>,
}

/// Whether a TXT string is an SPF record at all (`v=spf1` alone or followed by a space, §4.5).
pub fn is_spf(text: &str) -> bool {
    let lower = text.as_bytes();
    lower.len() >= 6
        && lower[..6].eq_ignore_ascii_case(b"v=spf1")
        && (lower.len() == 6 || lower[6] == b' ')
}

impl Record {
    /// Parses a record that [`is_spf`]; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Record, String> {
        let mut record = Record::default();
        // terms = *( 1*SP ( directive / modifier ) ), record = version terms *SP
        for term in text[6..].split(' ').filter(|t| !t.is_empty()) {
            if let Some((name, value)) = modifier(term) {
                match name.to_ascii_lowercase().as_str() {
                    "redirect" => {
                        if record.redirect.is_some() {
                            return Err("two redirect modifiers".into());
                        }
                        record.redirect = Some(domain_spec(value)?);
                    }
                    "exp" => {
                        if record.exp.is_some() {
                            return Err("two exp modifiers".into());
                        }
                        record.exp = Some(domain_spec(value)?);
                    }
                    // Unknown modifiers are ignored (§6), but must still be well-formed.
                    _ => {
                        MacroString::parse(value, Context::Domain)?;
                    }
                }
            } else {
                record.directives.push(directive(term)?);
            }
        }
        Ok(record)
    }
}

/// `name "=" macro-string` with `name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )`.
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() {
        // "=foo" is no mechanism either: a syntax error reported by `directive`.
        return None;
    }
    chars
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        .then_some((name, value))
}

fn directive(term: &str) -> Result<Directive, String> {
    let (qualifier, rest) = match term.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, &term[1..]),
        Some(b'-') => (Qualifier::Fail, &term[1..]),
        Some(b'~') => (Qualifier::SoftFail, &term[1..]),
        Some(b'?') => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let name = rest[..name_end].to_ascii_lowercase();
    let args = &rest[name_end..];
    let mechanism = match name.as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(domain_spec(colon(args)?)?),
        "exists" => Mechanism::Exists(domain_spec(colon(args)?)?),
        "a" => Mechanism::A(hosts(args)?),
        "mx" => Mechanism::Mx(hosts(args)?),
        "ptr" => Mechanism::Ptr(match args {
            "" => None,
            args => Some(domain_spec(colon(args)?)?),
        }),
        "ip4" => {
            let (addr, len) = network(args, "ip4", 32)?;
            Mechanism::Ip4(addr, len)
        }
        "ip6" => {
            let (addr, len) = network(args, "ip6", 128)?;
            Mechanism::Ip6(addr, len)
        }
        _ => return Err(format!("unknown or malformed mechanism {term:?}")),
    };
    Ok(Directive {
        qualifier,
        mechanism,
    })
}

/// The value after a mechanism's ':' (which must be there and must not be empty).
fn colon(args: &str) -> Result<&str, String> {
    match args.strip_prefix(':') {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("expected ':value', got {args:?}")),
    }
}

/// `[":" domain-spec] [dual-cidr-length]`, the argument of `a` and `mx`.
fn hosts(args: &str) -> Result<Hosts, String> {
    let (spec, cidr4, cidr6) = dual_cidr(args)?;
    let domain = match spec {
        "" => None,
        spec => Some(domain_spec(colon(spec)?)?),
    };
    Ok(Hosts {
        domain,
        cidr4,
        cidr6,
    })
}

/// `":" address [ "/" prefix-length ]`, the argument of `ip4` and `ip6` (`max` bits long, the
/// prefix length when none is given).
fn network<A: FromStr>(args: &str, mechanism: &str, max: u8) -> Result<(A, u8), String> {
    let value = colon(args)?;
    let (addr, len) = match value.split_once('/') {
        Some((addr, len)) => (addr, cidr(len, max)?),
        None => (value, max),
    };
    let addr = addr
        .parse::<A>()
        .map_err(|_| format!("bad {mechanism} address {addr:?}"))?;
    Ok((addr, len))
}

/// Splits `[":" domain-spec] [ "/" ip4-cidr ] [ "//" ip6-cidr ]` from the right. What does not
/// look like a prefix length stays in the domain-spec, whose own check then refuses it.
fn dual_cidr(args: &str) -> Result<(&str, u8, u8), String> {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut rest = args;
    let mut cidr6 = 128;
    let mut cidr4 = 32;
    if let Some(at) = rest.rfind("//")
        && all_digits(&rest[at + 2..])
    {
        cidr6 = cidr(&rest[at + 2..], 128)?;
        rest = &rest[..at];
    }
    if let Some(at) = rest.rfind('/')
        && all_digits(&rest[at + 1..])
    {
        cidr4 = cidr(&rest[at + 1..], 32)?;
        rest = &rest[..at];
    }
    Ok((rest, cidr4, cidr6))
}

/// A prefix length: "0" or digits without a leading zero, at most `max`.
fn cidr(digits: &str, max: u8) -> Result<u8, String> {
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && digits.len() <= 3;
    match digits.parse::<u16>() {
        Ok(n) if ok && n <= max as u16 => Ok(n as u8),
        _ => Err(format!("bad prefix length /{digits}")),
    }
}

/// `domain-spec = macro-string domain-end`, `domain-end = ( "." toplabel [ "." ] ) / macro-expand`.
fn domain_spec(text: &str) -> Result<MacroString, String> {
    let spec = MacroString::parse(text, Context::Domain)?;
    if spec.ends_with_macro() {
        return Ok(spec);
    }
    let tail = spec.trailing_literal().unwrap_or("");
    let tail = tail.strip_suffix('.').unwrap_or(tail);
    match tail.rsplit_once('.') {
        Some((_, top)) if toplabel(top) => Ok(spec),
        _ => Err(format!("{text:?} does not end in a valid top label")),
    }
}

/// `toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )`:
/// letters and digits, not all digits; inner hyphens.
fn toplabel(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && (bytes.iter().any(|b| b.is_ascii_alphabetic()) || bytes.contains(&b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Record, String> {
        assert!(is_spf(text), "{text}");
        Record::parse(text)
    }

    #[test]
    fn mechanisms_and_modifiers() {
        let r = parse("v=spf1 +a mx/24 -ip4:192.0.2.0/24 ~ip6:2001:db8::/32 ?include:_spf.example.com a:x.example.com/30//64 redirect=_spf.example.org exp=explain.%{d} foo=bar").unwrap();
        assert_eq!(r.directives.len(), 6);
        assert_eq!(
            r.directives[1].mechanism,
            Mechanism::Mx(Hosts {
                domain: None,
                cidr4: 24,
                cidr6: 128
            })
        );
        assert!(matches!(
            r.directives[5].mechanism,
            Mechanism::A(Hosts {
                cidr4: 30,
                cidr6: 64,
                ..
            })
        ));
        assert!(r.redirect.is_some() && r.exp.is_some());
    }

    #[test]
    fn syntax_errors_anywhere() {
        for bad in [
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/032",
            "v=spf1 ip4:1.2.3",
            "v=spf1 include:",
            "v=spf1 mx:example.123",
            "v=spf1 all:foo",
            "v=spf1 foo",
            "v=spf1 =bar",
            "v=spf1 redirect=a.example.com redirect=b.example.com",
            "v=spf1 exp=%{x}.example.com",
            "v=spf1 -all\tfoo",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn version_tag() {
        for (text, spf) in [
            ("v=spf1", true),
            ("V=SPF1 -all", true),
            ("v=spf10", false),
            ("v=spf1-all", false),
        ] {
            assert_eq!(is_spf(text), spf, "{text}");
        }
    }
}
