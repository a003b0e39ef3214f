//! The `Received:` trace header the server prepends (RFC 5321 4.4), with the protocol keyword of
//! RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA; SMTP after HELO) and the TLS version and cipher.

use crate::policy::TlsInfo;
use std::net::IpAddr;

/// What the Received header says about one transaction.
pub struct Trace<'a> {
    /// The name the client gave in EHLO/HELO.
    pub helo: Option<&'a str>,
    pub client_ip: IpAddr,
    /// This server's host name.
    pub hostname: &'a str,
    /// EHLO (true) or HELO (false).
    pub extended: bool,
    pub tls: Option<&'a TlsInfo>,
    pub authenticated: bool,
    /// A per-transaction id for correlating with logs.
    pub id: &'a str,
    /// Named in a `for` clause only when there is exactly one (RFC 5321 7.2: do not reveal Bcc).
    pub single_recipient: Option<&'a str>,
    pub date: chrono::DateTime<chrono::FixedOffset>,
}

/// RFC 3848 "with" keyword.
pub fn protocol(extended: bool, tls: bool, authenticated: bool) -> &'static str {
    match (extended, tls, authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

impl Trace<'_> {
    /// The complete header field, folded, ending in CRLF.
    pub fn header(&self) -> String {
        let helo = self.helo.map(sanitize).unwrap_or_else(|| "unknown".into());
        let ip = match self.client_ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPv6:{v6}"),
        };
        let mut h = format!(
            "Received: from {helo} ([{ip}])\r\n\tby {host} (mailwit) with {with}",
            host = self.hostname,
            with = protocol(self.extended, self.tls.is_some(), self.authenticated),
        );
        if let Some(tls) = self.tls {
            h.push_str(&format!(
                "\r\n\t(using {} with cipher {})",
                sanitize(&tls.version),
                sanitize(&tls.cipher)
            ));
        }
        h.push_str(&format!("\r\n\tid {}", self.id));
        if let Some(rcpt) = self.single_recipient {
            h.push_str(&format!("\r\n\tfor <{}>", sanitize(rcpt)));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", self.date.to_rfc2822()));
        h
    }
}

/// Keeps client-supplied text from breaking the header: printable ASCII without parentheses
/// or angle brackets that would unbalance comments or paths.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '(' | ')' | '<' | '>' | '\\' => '_',
            c if c.is_ascii_graphic() => c,
            c if !c.is_ascii() && !c.is_control() => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_follow_rfc3848() {
        assert_eq!(protocol(true, false, false), "ESMTP");
        assert_eq!(protocol(true, true, false), "ESMTPS");
        assert_eq!(protocol(true, false, true), "ESMTPA");
        assert_eq!(protocol(true, true, true), "ESMTPSA");
        assert_eq!(protocol(false, true, true), "SMTP");
    }

    #[test]
    fn header_names_tls_and_stays_well_formed() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        };
        let trace = Trace {
            helo: Some("evil\r\nX-Injected: yes (x)"),
            client_ip: "127.0.0.1".parse().unwrap(),
            hostname: "mail.example.test",
            extended: true,
            tls: Some(&tls),
            authenticated: true,
            id: "s1.1",
            single_recipient: Some("bob@example.test"),
            date: chrono::DateTime::parse_from_rfc2822("Sat, 28 Nov 2026 14:00:00 +0000").unwrap(),
        };
        let h = trace.header();
        assert!(
            h.starts_with("Received: from evil__X-Injected:_yes__x_ ([127.0.0.1])\r\n"),
            "{h}"
        );
        assert!(
            h.contains("with ESMTPSA\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)")
        );
        assert!(h.contains("for <bob@example.test>;"));
        assert!(h.ends_with("+0000\r\n"));
        // Every line but the first is a continuation line.
        assert!(
            h.trim_end()
                .split("\r\n")
                .skip(1)
                .all(|l| l.starts_with('\t'))
        );
    }
}
