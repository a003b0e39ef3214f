//! The outcome of verifying one inbound message, as structured data (what the data hook's host
//! side reads, and what a WIT record will carry) and as the `Authentication-Results` header
//! (RFC 8601). Also removes inbound `Authentication-Results` fields that claim our authserv-id.

/// A result keyword as RFC 8601 section 2.7 spells it (`pass`, `fail`, `softfail`, `neutral`,
/// `none`, `temperror`, `permerror`, `policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthStatus {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl AuthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStatus::Pass => "pass",
            AuthStatus::Fail => "fail",
            AuthStatus::SoftFail => "softfail",
            AuthStatus::Neutral => "neutral",
            AuthStatus::None => "none",
            AuthStatus::TempError => "temperror",
            AuthStatus::PermError => "permerror",
        }
    }
}

/// One SPF check (RFC 7208): of the HELO identity or of the MAIL FROM identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpfCheck {
    pub result: AuthStatus,
    /// The domain checked (the HELO name, or the MAIL FROM domain; the HELO name for `<>`).
    pub domain: String,
    /// The identity as it goes into the header: `postmaster@helo` for a null reverse path.
    pub identity: String,
    /// The domain's explanation (exp=) on fail, when it published one.
    pub explanation: Option<String>,
}

/// One DKIM signature's verification (RFC 6376).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DkimCheck {
    pub result: AuthStatus,
    /// d= (empty when the signature could not be parsed).
    pub domain: String,
    /// s=
    pub selector: String,
    /// a=, e.g. `rsa-sha256`, `ed25519-sha256`.
    pub algorithm: String,
    /// The first 8 characters of b=, which tell two signatures of one domain apart (RFC 6008).
    pub signature_prefix: String,
    /// Why it did not pass (empty on pass).
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The DMARC evaluation (RFC 7489 / RFC 9989) of the RFC 5322.From domain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DmarcCheck {
    pub result: AuthStatus,
    /// The RFC 5322.From domain.
    pub from_domain: String,
    /// The policy the domain owner asks for, for this message (sp= for subdomains, lowered one
    /// level by t=y). `None` when no record was found.
    pub policy: DmarcPolicy,
    /// Whether a DMARC record was found.
    pub record: bool,
    /// SPF passed for a MAIL FROM domain aligned with From.
    pub spf_aligned: bool,
    /// A DKIM signature passed with a d= aligned with From.
    pub dkim_aligned: bool,
    /// The record as published (for aggregate reports: its tags and `rua=`).
    #[serde(skip)]
    pub published: Option<std::sync::Arc<mail_auth::dmarc::Dmarc>>,
}

/// ARC chain validation (RFC 8617).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArcCheck {
    /// `none` (no ARC sets), `pass` or `fail` (the chain's cv).
    pub result: AuthStatus,
    /// Number of ARC sets (the highest i=).
    pub sets: u32,
    pub reason: String,
}

/// Everything verified for one message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthResults {
    pub authserv_id: String,
    pub spf_helo: Option<SpfCheck>,
    pub spf_mail_from: SpfCheck,
    pub dkim: Vec<DkimCheck>,
    /// None when the From header has no single domain to evaluate.
    pub dmarc: Option<DmarcCheck>,
    pub arc: ArcCheck,
    /// The RFC 5322.From domain (empty if none could be read).
    pub from_domain: String,
}

impl AuthResults {
    /// The `Authentication-Results` header field, folded, ending in CRLF.
    pub fn header(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.dkim.is_empty() {
            parts.push("dkim=none".into());
        }
        for d in &self.dkim {
            let mut p = format!("dkim={}", d.result.as_str());
            if !d.reason.is_empty() && d.result != AuthStatus::Pass {
                p.push_str(&format!(" ({})", comment(&d.reason)));
            }
            if !d.domain.is_empty() {
                p.push_str(&format!(" header.d={}", d.domain));
            }
            if !d.selector.is_empty() {
                p.push_str(&format!(" header.s={}", d.selector));
            }
            if !d.algorithm.is_empty() {
                p.push_str(&format!(" header.a={}", d.algorithm));
            }
            if !d.signature_prefix.is_empty() {
                p.push_str(&format!(" header.b={}", d.signature_prefix));
            }
            parts.push(p);
        }
        let spf = &self.spf_mail_from;
        parts.push(format!(
            "spf={} smtp.mailfrom={}",
            spf.result.as_str(),
            value(&spf.identity)
        ));
        if let Some(helo) = &self.spf_helo {
            parts.push(format!(
                "spf={} smtp.helo={}",
                helo.result.as_str(),
                value(&helo.domain)
            ));
        }
        match &self.dmarc {
            Some(d) => parts.push(format!(
                "dmarc={} (p={}) header.from={}",
                d.result.as_str(),
                d.policy.as_str(),
                value(&d.from_domain)
            )),
            None => parts.push("dmarc=none".into()),
        }
        parts.push(format!("arc={}", self.arc.result.as_str()));
        let mut out = format!("Authentication-Results: {};", self.authserv_id);
        for (i, part) in parts.iter().enumerate() {
            out.push_str("\r\n\t");
            out.push_str(part);
            if i + 1 < parts.len() {
                out.push(';');
            }
        }
        out.push_str("\r\n");
        out
    }
}

/// A property value as a token, or quoted when it is not one.
fn value(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>,;:\\\"[]?=".contains(&b) || b == b'@')
    {
        v.to_string()
    } else {
        let escaped: String = v
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

/// Text for a comment: no parentheses, backslashes or control characters.
fn comment(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\'))
        .take(80)
        .collect()
}

/// Removes every `Authentication-Results` field whose authserv-id is ours (RFC 8601 section 5:
/// they were forged or left by an earlier hop claiming our name). None when there was none.
pub fn strip_forged(message: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let header_end = header_end(message);
    let mut out = Vec::with_capacity(message.len());
    let mut removed = false;
    let mut pos = 0;
    while pos < header_end {
        // One field: this line and its continuation lines.
        let mut end = next_line(message, pos);
        while end < header_end && matches!(message[end], b' ' | b'\t') {
            end = next_line(message, end);
        }
        let field = &message[pos..end];
        if is_ours(field, authserv_id) {
            removed = true;
        } else {
            out.extend_from_slice(field);
        }
        pos = end;
    }
    if !removed {
        return None;
    }
    out.extend_from_slice(&message[header_end..]);
    Some(out)
}

fn is_ours(field: &[u8], authserv_id: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &field[..colon];
    if !name
        .trim_ascii()
        .eq_ignore_ascii_case(b"Authentication-Results")
    {
        return false;
    }
    let value = String::from_utf8_lossy(&field[colon + 1..]);
    let value = strip_comments(&value);
    let id = value
        .split(';')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("");
    id.eq_ignore_ascii_case(authserv_id)
}

fn strip_comments(value: &str) -> String {
    let mut depth = 0u32;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Offset of the first body octet's blank line (or the end, when there is no body).
fn header_end(message: &[u8]) -> usize {
    let mut pos = 0;
    while pos < message.len() {
        if message[pos..].starts_with(b"\r\n") || message[pos..].starts_with(b"\n") {
            return pos;
        }
        pos = next_line(message, pos);
    }
    message.len()
}

fn next_line(message: &[u8], pos: usize) -> usize {
    memchr::memchr(b'\n', &message[pos..]).map_or(message.len(), |i| pos + i + 1)
}

impl AuthResults {
    /// The plugin-facing summary the data hook receives (contract 0.2 `authentication`).
    pub fn to_policy(&self) -> crate::policy::AuthenticationResults {
        use crate::policy::{DkimResult, DmarcResult, SpfResult};
        crate::policy::AuthenticationResults {
            spf: Some(SpfResult {
                result: self.spf_mail_from.result.as_str().to_string(),
                domain: self.spf_mail_from.domain.clone(),
            }),
            dkim: self
                .dkim
                .iter()
                .map(|d| DkimResult {
                    result: d.result.as_str().to_string(),
                    domain: d.domain.clone(),
                    selector: d.selector.clone(),
                })
                .collect(),
            dmarc: self.dmarc.as_ref().map(|d| DmarcResult {
                result: d.result.as_str().to_string(),
                policy: d.policy.as_str().to_string(),
                aligned: d.spf_aligned || d.dkim_aligned,
            }),
            arc: Some(self.arc.result.as_str().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_with_our_id_are_removed_others_kept() {
        let message = b"Received: x\r\n\
            Authentication-Results: MX.example.test; dkim=pass\r\n\
            Authentication-Results: (comment) mx.example.test (c)\r\n\
            \tspf=pass\r\n\
            Authentication-Results: other.example; spf=fail\r\n\
            Subject: hi\r\n\r\n\
            Authentication-Results: mx.example.test; in the body\r\n";
        let out = strip_forged(message, "mx.example.test").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Received: x\r\nAuthentication-Results: other.example; spf=fail\r\n\
             Subject: hi\r\n\r\nAuthentication-Results: mx.example.test; in the body\r\n"
        );
        assert!(strip_forged(b"Subject: a\r\n\r\nb", "mx.example.test").is_none());
    }

    #[test]
    fn header_lists_each_method() {
        let results = AuthResults {
            authserv_id: "mx.example.test".into(),
            spf_helo: None,
            spf_mail_from: SpfCheck {
                result: AuthStatus::Pass,
                domain: "example.org".into(),
                identity: "a@example.org".into(),
                explanation: None,
            },
            dkim: vec![DkimCheck {
                result: AuthStatus::Fail,
                domain: "example.org".into(),
                selector: "s1".into(),
                algorithm: "rsa-sha256".into(),
                signature_prefix: "abcdefgh".into(),
                reason: "body hash (mismatch)".into(),
            }],
            dmarc: None,
            arc: ArcCheck {
                result: AuthStatus::None,
                sets: 0,
                reason: String::new(),
            },
            from_domain: String::new(),
        };
        assert_eq!(
            results.header(),
            "Authentication-Results: mx.example.test;\r\n\
             \tdkim=fail (body hash mismatch) header.d=example.org header.s=s1 header.a=rsa-sha256 header.b=abcdefgh;\r\n\
             \tspf=pass smtp.mailfrom=a@example.org;\r\n\
             \tdmarc=none;\r\n\
             \tarc=none\r\n"
        );
    }
}
