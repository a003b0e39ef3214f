//! SPF macro strings (RFC 7208 §7): parsed once with the record, expanded per evaluation.
//!
//! ```text
//! macro-string = *( macro-expand / macro-literal )
//! macro-expand = ( "%{" macro-letter transformers *delimiter "}" ) / "%%" / "%_" / "%-"
//! transformers = *DIGIT [ "r" ]
//! delimiter    = "." / "-" / "+" / "," / "/" / "_" / "="
//! ```

use std::net::IpAddr;

/// A parsed macro string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString(pub Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Macro(Macro),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macro {
    /// The letter, lower-cased (`s l o d i p h v`, and `c r t` in explanations).
    pub letter: char,
    /// An upper-case letter asks for the value URL-escaped (§7.3).
    pub escape: bool,
    /// Keep only this many right-hand parts (never 0).
    pub keep: Option<usize>,
    pub reverse: bool,
    /// Characters that split the value; "." when none are given.
    pub delimiters: String,
}

/// Where a macro string appears: the letters `c`, `r` and `t` are allowed only in explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Domain,
    Explanation,
}

/// The values macros expand to, for one `check_host()` evaluation.
pub struct Values<'a> {
    pub sender: &'a str,
    pub domain: &'a str,
    pub ip: IpAddr,
    pub helo: &'a str,
    /// The `p` macro's validated name; looked up only when a string uses it.
    pub validated_name: Option<&'a str>,
    /// The receiving host (`r`).
    pub receiver: &'a str,
    /// Seconds since the epoch (`t`).
    pub now: u64,
}

impl MacroString {
    /// Parses `text`; `Err` is a syntax error (the record's result is then permerror).
    pub fn parse(text: &str, context: Context) -> Result<MacroString, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                // macro-literal = %x21-24 / %x26-7E; explanations also carry spaces.
                let allowed =
                    matches!(c, '\x21'..='\x7e') || (c == ' ' && context == Context::Explanation);
                if !allowed {
                    return Err(format!("character {c:?} not allowed"));
                }
                literal.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => literal.push('%'),
                Some('_') => literal.push(' '),
                Some('-') => literal.push_str("%20"),
                Some('{') => {
                    let mut body = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => body.push(c),
                            None => return Err("unterminated macro".into()),
                        }
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Macro(Macro::parse(&body, context)?));
                }
                other => return Err(format!("'%' followed by {other:?}")),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(MacroString(pieces))
    }

    /// Whether the string ends in a macro expansion (a `domain-end` of its own).
    pub fn ends_with_macro(&self) -> bool {
        matches!(self.0.last(), Some(Piece::Macro(_)))
    }

    /// The literal text at the end, if the string ends in one.
    pub fn trailing_literal(&self) -> Option<&str> {
        match self.0.last() {
            Some(Piece::Literal(text)) => Some(text),
            _ => None,
        }
    }

    pub fn uses(&self, letter: char) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, Piece::Macro(m) if m.letter == letter))
    }

    pub fn expand(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Macro(m) => out.push_str(&m.expand(values)),
            }
        }
        out
    }
}

impl Macro {
    fn parse(body: &str, context: Context) -> Result<Macro, String> {
        let mut chars = body.chars();
        let letter = chars.next().ok_or("empty macro")?;
        let lower = letter.to_ascii_lowercase();
        let allowed = match lower {
            's' | 'l' | 'o' | 'd' | 'i' | 'p' | 'h' | 'v' => true,
            'c' | 'r' | 't' => context == Context::Explanation,
            _ => false,
        };
        if !allowed {
            return Err(format!("macro letter {letter:?} not allowed here"));
        }
        let rest: &str = chars.as_str();
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let keep = if digits_end > 0 {
            let n: usize = rest[..digits_end]
                .parse()
                .map_err(|_| "macro transformer out of range".to_string())?;
            if n == 0 {
                return Err("macro transformer 0".into());
            }
            Some(n)
        } else {
            None
        };
        let mut rest = &rest[digits_end..];
        let reverse = rest.starts_with(['r', 'R']);
        if reverse {
            rest = &rest[1..];
        }
        if let Some(bad) = rest.chars().find(|c| !".-+,/_=".contains(*c)) {
            return Err(format!("macro delimiter {bad:?} not allowed"));
        }
        Ok(Macro {
            letter: lower,
            escape: letter.is_ascii_uppercase(),
            keep,
            reverse,
            delimiters: rest.to_string(),
        })
    }

    fn expand(&self, values: &Values<'_>) -> String {
        let raw = match self.letter {
            's' => values.sender.to_string(),
            'l' => values
                .sender
                .rsplit_once('@')
                .map_or("postmaster", |(l, _)| l)
                .to_string(),
            'o' => values
                .sender
                .rsplit_once('@')
                .map_or(values.sender, |(_, d)| d)
                .to_string(),
            'd' => values.domain.to_string(),
            'i' => dotted(values.ip),
            'p' => values.validated_name.unwrap_or("unknown").to_string(),
            'h' => values.helo.to_string(),
            'v' => match values.ip {
                IpAddr::V4(_) => "in-addr".into(),
                IpAddr::V6(_) => "ip6".into(),
            },
            'c' => values.ip.to_string(),
            'r' => values.receiver.to_string(),
            't' => values.now.to_string(),
            _ => String::new(),
        };
        let transformed = if self.keep.is_some() || self.reverse || !self.delimiters.is_empty() {
            let delimiters = if self.delimiters.is_empty() {
                "."
            } else {
                &self.delimiters
            };
            let mut parts: Vec<&str> = raw.split(|c| delimiters.contains(c)).collect();
            if self.reverse {
                parts.reverse();
            }
            if let Some(keep) = self.keep
                && keep < parts.len()
            {
                parts.drain(..parts.len() - keep);
            }
            parts.join(".")
        } else {
            raw
        };
        if self.escape {
            url_escape(&transformed)
        } else {
            transformed
        }
    }
}

/// `i`: dotted quad for IPv4; for IPv6 the 32 nibbles, dot-separated (§7.3).
fn dotted(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .map(|n| format!("{n:x}"))
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// RFC 3986 escaping of everything but the unreserved characters, as §7.3 asks for upper-case
/// macro letters.
fn url_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ip: &str) -> Values<'static> {
        Values {
            sender: "strong-bad@email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            helo: "mx.example.org",
            validated_name: None,
            receiver: "mx.example.net",
            now: 0,
        }
    }

    fn expand(text: &str, ip: &str) -> String {
        MacroString::parse(text, Context::Explanation)
            .unwrap()
            .expand(&values(ip))
    }

    /// The examples of RFC 7208 §7.4.
    #[test]
    fn rfc_examples() {
        let v4 = "192.0.2.3";
        assert_eq!(expand("%{s}", v4), "strong-bad@email.example.com");
        assert_eq!(expand("%{o}", v4), "email.example.com");
        assert_eq!(expand("%{d}", v4), "email.example.com");
        assert_eq!(expand("%{d4}", v4), "email.example.com");
        assert_eq!(expand("%{d3}", v4), "email.example.com");
        assert_eq!(expand("%{d2}", v4), "example.com");
        assert_eq!(expand("%{d1}", v4), "com");
        assert_eq!(expand("%{dr}", v4), "com.example.email");
        assert_eq!(expand("%{d2r}", v4), "example.email");
        assert_eq!(expand("%{l}", v4), "strong-bad");
        assert_eq!(expand("%{l-}", v4), "strong.bad");
        assert_eq!(expand("%{lr}", v4), "strong-bad");
        assert_eq!(expand("%{lr-}", v4), "bad.strong");
        assert_eq!(expand("%{l1r-}", v4), "strong");
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", v4),
            "3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(
            expand("%{lr-}.lp._spf.%{d2}", v4),
            "bad.strong.lp._spf.example.com"
        );
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01"),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
        assert_eq!(expand("%%%_%-", v4), "% %20");
        assert_eq!(expand("%{S}", v4), "strong-bad%40email.example.com");
    }

    #[test]
    fn syntax_errors() {
        for bad in ["%{x}", "%{d0}", "%{", "%a", "%{d2r;}", "a b"] {
            assert!(
                MacroString::parse(bad, Context::Domain).is_err(),
                "{bad} parsed"
            );
        }
        assert!(MacroString::parse("%{c}", Context::Domain).is_err());
        assert!(MacroString::parse("%{c} x", Context::Explanation).is_ok());
    }
}
