//! Mailbox addresses as the envelope carries them ("local@domain", RFC 5321 §4.1.2): splitting
//! and the normal form of the domain. Parsing a path off the wire is `smtp::address`'s job.

/// ("local", "domain") at the last "@" that is not inside a quoted local part, or None without
/// one (so `"user@remote"@local` is local, and `"user@remote"` has no domain).
pub fn split(address: &str) -> Option<(&str, &str)> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut at = None;
    for (i, c) in address.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '@' if !in_quotes => at = Some(i),
            _ => {}
        }
    }
    at.map(|i| (&address[..i], &address[i + 1..]))
}

/// The domain in its normal form for comparisons and routing: lowercase, without a trailing dot;
/// empty when the address has none.
pub fn domain(address: &str) -> String {
    split(address)
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_the_last_at_sign_and_normalise_the_domain() {
        assert_eq!(
            split("\"a@b\"@Example.TEST"),
            Some(("\"a@b\"", "Example.TEST"))
        );
        assert_eq!(split("postmaster"), None);
        assert_eq!(split("\"a@b\"@c.test"), Some(("\"a@b\"", "c.test")));
        assert_eq!(split("nodomain"), None);
        assert_eq!(split("\"user@remote\""), None);
        assert_eq!(split("\"a\\\"@b\"@c"), Some(("\"a\\\"@b\"", "c")));
        assert_eq!(domain("bob@Example.TEST."), "example.test");
        assert_eq!(domain("postmaster"), "");
    }
}
