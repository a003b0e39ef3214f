//! What the peer's EHLO (or LHLO) response offers.

use super::reply::ServerReply;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// True after EHLO/LHLO; false when we fell back to HELO (no extensions at all).
    pub esmtp: bool,
    pub pipelining: bool,
    pub eight_bit_mime: bool,
    pub binary_mime: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    pub dsn: bool,
    pub enhanced_status_codes: bool,
    pub starttls: bool,
    /// RFC 8689.
    pub requiretls: bool,
    /// `SIZE n` with n > 0: the largest message the peer takes. `SIZE` or `SIZE 0`: no limit
    /// stated, but the SIZE parameter is understood.
    pub size: Option<Option<u64>>,
    /// SASL mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the extension lines (all but the first) of an EHLO/LHLO reply. Unknown keywords are
    /// ignored; malformed parameters disable that extension rather than fail the session.
    pub fn from_ehlo(reply: &ServerReply) -> Capabilities {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "BINARYMIME" => caps.binary_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "CHUNKING" => caps.chunking = true,
                "DSN" => caps.dsn = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "STARTTLS" => caps.starttls = true,
                "REQUIRETLS" => caps.requiretls = true,
                "SIZE" => {
                    caps.size = match words.next().map(str::parse::<u64>) {
                        None | Some(Ok(0)) => Some(None),
                        Some(Ok(n)) => Some(Some(n)),
                        Some(Err(_)) => None,
                    }
                }
                "AUTH" => caps.auth.extend(
                    words
                        .map(|w| w.to_ascii_uppercase())
                        .filter(|w| !w.is_empty()),
                ),
                _ => {}
            }
        }
        caps
    }

    /// The largest message the peer announced it takes, if any.
    pub fn max_size(&self) -> Option<u64> {
        self.size.flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_extensions() {
        let reply = ServerReply::from_lines(
            250,
            [
                "mx.test greets you",
                "PIPELINING",
                "size 1000",
                "8BITMIME",
                "AUTH PLAIN login",
                "STARTTLS",
                "DSN",
                "CHUNKING",
                "SMTPUTF8",
            ]
            .map(String::from)
            .to_vec(),
        );
        let caps = Capabilities::from_ehlo(&reply);
        assert!(caps.pipelining && caps.eight_bit_mime && caps.starttls && caps.dsn);
        assert!(caps.chunking && caps.smtputf8 && !caps.binary_mime);
        assert_eq!(caps.max_size(), Some(1000));
        assert_eq!(caps.auth, vec!["PLAIN", "LOGIN"]);
    }

    #[test]
    fn size_without_limit_and_bad_size() {
        let caps = |l: &str| {
            Capabilities::from_ehlo(&ServerReply::from_lines(250, vec!["x".into(), l.into()]))
        };
        assert_eq!(caps("SIZE").size, Some(None));
        assert_eq!(caps("SIZE 0").size, Some(None));
        assert_eq!(caps("SIZE lots").size, None);
    }
}
