//! Address helpers on plain strings (no allocation unless the result must differ from the input).
//!
//! Addresses arrive as the host parsed them from the envelope: `local@domain` without angle brackets,
//! `""` for the null reverse-path. Domains compare case-insensitively; local parts are compared as
//! given unless a plugin's configuration says otherwise (most sites treat them case-insensitively).

/// The domain of `local@domain` (after the last `@`), or `None` for the null path and bare names.
pub fn domain_of(address: &str) -> Option<&str> {
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then_some(domain)
}

/// The local part of `local@domain` (before the last `@`); the whole string when there is no `@`.
pub fn local_part_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(local, _)| local)
}

/// The address with its domain lowercased and, with `case_insensitive_local`, its local part too:
/// the form to use as a table key.
pub fn normalize(address: &str, case_insensitive_local: bool) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) if case_insensitive_local => {
            format!("{}@{}", local.to_lowercase(), domain.to_ascii_lowercase())
        }
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None if case_insensitive_local => address.to_lowercase(),
        None => address.to_string(),
    }
}

/// Removes a sub-address: `strip_subaddress("alice+lists@example.test", '+')` is
/// `"alice@example.test"`. Addresses without the delimiter come back unchanged.
pub fn strip_subaddress(address: &str, delimiter: char) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => match local.split_once(delimiter) {
            Some((base, _)) if !base.is_empty() => format!("{base}@{domain}"),
            _ => address.to_string(),
        },
        None => address.to_string(),
    }
}

/// Whether `domain` equals `pattern` or, when `pattern` starts with a dot (`.example.test`), is a
/// subdomain of it. Case-insensitive.
pub fn domain_matches(domain: &str, pattern: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix('.') {
        domain.len() > suffix.len()
            && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.'
            && domain[domain.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    } else {
        domain.eq_ignore_ascii_case(pattern)
    }
}

/// The address inside a header value such as `"Alice" <alice@example.test>` or
/// `alice@example.test (Alice)`; the first one when the value lists several.
pub fn mailbox_in_header(value: &str) -> Option<&str> {
    if let Some(start) = value.find('<') {
        let rest = &value[start + 1..];
        let end = rest.find('>')?;
        let inner = rest[..end].trim();
        return (!inner.is_empty()).then_some(inner);
    }
    let first = value.split(',').next()?.trim();
    let bare = first.split_whitespace().find(|word| word.contains('@'))?;
    Some(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(domain_of("alice@Example.Test"), Some("Example.Test"));
        assert_eq!(domain_of(""), None);
        assert_eq!(domain_of("postmaster"), None);
        assert_eq!(domain_of("a@"), None);
        assert_eq!(domain_of("\"a@b\"@c.test"), Some("c.test"));
        assert_eq!(local_part_of("alice@example.test"), "alice");
        assert_eq!(local_part_of("postmaster"), "postmaster");
    }

    #[test]
    fn normalizes_and_strips() {
        assert_eq!(normalize("Alice@EXAMPLE.test", false), "Alice@example.test");
        assert_eq!(normalize("Alice@EXAMPLE.test", true), "alice@example.test");
        assert_eq!(
            strip_subaddress("alice+x@example.test", '+'),
            "alice@example.test"
        );
        assert_eq!(strip_subaddress("+x@example.test", '+'), "+x@example.test");
        assert_eq!(
            strip_subaddress("alice@example.test", '+'),
            "alice@example.test"
        );
    }

    #[test]
    fn matches_domains() {
        assert!(domain_matches("Example.TEST", "example.test"));
        assert!(domain_matches("mx.example.test", ".example.test"));
        assert!(!domain_matches("example.test", ".example.test"));
        assert!(!domain_matches("badexample.test", ".example.test"));
    }

    #[test]
    fn finds_mailbox_in_header_values() {
        assert_eq!(
            mailbox_in_header("\"Alice\" <alice@example.test>"),
            Some("alice@example.test")
        );
        assert_eq!(
            mailbox_in_header("alice@example.test (Alice)"),
            Some("alice@example.test")
        );
        assert_eq!(mailbox_in_header("a@x.test, b@y.test"), Some("a@x.test"));
        assert_eq!(mailbox_in_header("undisclosed-recipients:;"), None);
        assert_eq!(mailbox_in_header("<>"), None);
    }
}
