//! The recipient table and its lookup: pure logic, tested natively.

use std::collections::BTreeMap;

use mailwit_plugin::address::{domain_matches, domain_of, normalize, strip_subaddress};
use mailwit_plugin::types::Verdict;
use serde::Deserialize;

/// Alias chains longer than this are a configuration loop.
const MAX_ALIAS_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnKnown {
    /// A known mailbox ends the rcpt chain with "accept" (later rcpt plugins are skipped).
    #[default]
    Accept,
    /// A known mailbox passes on to the next rcpt plugin and the core's defaults.
    Continue,
}

/// The plugin's `config` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Domains whose mailboxes this plugin knows (exact names; ".example.test" for subdomains).
    pub domains: Vec<String>,
    /// Mailbox addresses, `local@domain`.
    pub mailboxes: Vec<String>,
    /// `alias = target`; the target may be another alias or an address elsewhere.
    pub aliases: BTreeMap<String, String>,
    /// Per domain, the address that receives mail for unknown local parts.
    pub catch_all: BTreeMap<String, String>,
    /// Sub-address delimiter, e.g. "+" so that alice+news@ reaches alice@.
    pub subaddress_delimiter: Option<char>,
    /// Whether local parts are case-sensitive (RFC 5321 allows it; almost no site wants it).
    pub case_sensitive: bool,
    pub on_known: OnKnown,
    /// Accept postmaster@ of every local domain even when not listed (RFC 5321 section 4.5.1).
    #[serde(default = "yes")]
    pub implicit_postmaster: bool,
}

fn yes() -> bool {
    true
}

/// What the table says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not one of our domains: no opinion.
    NotLocal,
    Mailbox,
    /// An alias, sub-address or catch-all: deliver to this address instead.
    Rewrite(String),
    Unknown,
}

impl Settings {
    /// Normalizes the keys once (so lookups compare like with like) and checks alias loops.
    pub fn validated(mut self) -> Result<Settings, String> {
        let fold = !self.case_sensitive;
        self.mailboxes = self.mailboxes.iter().map(|m| normalize(m, fold)).collect();
        self.aliases = self
            .aliases
            .iter()
            .map(|(alias, target)| (normalize(alias, fold), target.clone()))
            .collect();
        self.catch_all = self
            .catch_all
            .iter()
            .map(|(domain, target)| (domain.to_ascii_lowercase(), target.clone()))
            .collect();
        for address in self.mailboxes.iter().chain(self.aliases.keys()) {
            let local = domain_of(address).is_some_and(|d| self.is_local_domain(d));
            if !local {
                return Err(format!(
                    "{address:?} is not in one of the local domains {:?}",
                    self.domains
                ));
            }
        }
        for alias in self.aliases.keys() {
            self.resolve_alias(alias).ok_or_else(|| {
                format!("alias {alias:?} loops or nests deeper than {MAX_ALIAS_DEPTH}")
            })?;
        }
        Ok(self)
    }

    fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| domain_matches(domain, d))
    }

    /// Follows an alias chain to its end; `None` on a loop.
    fn resolve_alias(&self, alias: &str) -> Option<String> {
        let fold = !self.case_sensitive;
        let mut current = self.aliases.get(alias)?.clone();
        for _ in 0..MAX_ALIAS_DEPTH {
            match self.aliases.get(&normalize(&current, fold)) {
                Some(next) => current = next.clone(),
                None => return Some(current),
            }
        }
        None
    }

    pub fn known_verdict(&self) -> Verdict {
        match self.on_known {
            OnKnown::Accept => Verdict::Accept,
            OnKnown::Continue => Verdict::Continue,
        }
    }

    pub fn lookup(&self, address: &str) -> Lookup {
        let Some(domain) = domain_of(address) else {
            return Lookup::NotLocal;
        };
        if !self.is_local_domain(domain) {
            return Lookup::NotLocal;
        }
        let key = normalize(address, !self.case_sensitive);
        if let Some(found) = self.exact(&key) {
            return found;
        }
        if let Some(delimiter) = self.subaddress_delimiter {
            let base = strip_subaddress(&key, delimiter);
            if base != key {
                match self.exact(&base) {
                    Some(Lookup::Mailbox) => return Lookup::Rewrite(base),
                    Some(found) => return found,
                    None => {}
                }
            }
        }
        if let Some(target) = self.catch_all.get(&domain.to_ascii_lowercase()) {
            return Lookup::Rewrite(target.clone());
        }
        if self.implicit_postmaster
            && key
                .split('@')
                .next()
                .is_some_and(|l| l.eq_ignore_ascii_case("postmaster"))
        {
            return Lookup::Mailbox;
        }
        Lookup::Unknown
    }

    fn exact(&self, key: &str) -> Option<Lookup> {
        if self.mailboxes.iter().any(|m| m == key) {
            return Some(Lookup::Mailbox);
        }
        self.resolve_alias(key).map(Lookup::Rewrite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Settings {
        mailwit_plugin::config::parse::<Settings>(toml)
            .unwrap()
            .validated()
            .unwrap()
    }

    const EXAMPLE: &str = r#"
        domains = ["example.test", ".lists.test"]
        mailboxes = ["alice@example.test", "Bob@Example.Test", "news@a.lists.test"]
        aliases = { "info@example.test" = "bob@example.test", "sales@example.test" = "info@example.test", "ext@example.test" = "carol@elsewhere.test" }
        subaddress_delimiter = "+"
    "#;

    #[test]
    fn known_mailboxes_are_found_case_insensitively() {
        let s = settings(EXAMPLE);
        assert_eq!(s.lookup("alice@example.test"), Lookup::Mailbox);
        assert_eq!(s.lookup("ALICE@EXAMPLE.TEST"), Lookup::Mailbox);
        assert_eq!(s.lookup("bob@example.test"), Lookup::Mailbox);
        assert_eq!(s.lookup("news@a.lists.test"), Lookup::Mailbox);
        assert_eq!(s.known_verdict(), Verdict::Accept);
    }

    #[test]
    fn unknown_local_mailboxes_are_unknown_and_others_not_ours() {
        let s = settings(EXAMPLE);
        assert_eq!(s.lookup("mallory@example.test"), Lookup::Unknown);
        assert_eq!(s.lookup("x@b.lists.test"), Lookup::Unknown);
        assert_eq!(s.lookup("alice@elsewhere.test"), Lookup::NotLocal);
        assert_eq!(s.lookup("alice@lists.test"), Lookup::NotLocal);
        assert_eq!(s.lookup(""), Lookup::NotLocal);
    }

    #[test]
    fn aliases_resolve_through_chains_and_to_other_domains() {
        let s = settings(EXAMPLE);
        assert_eq!(
            s.lookup("info@example.test"),
            Lookup::Rewrite("bob@example.test".into())
        );
        assert_eq!(
            s.lookup("Sales@example.test"),
            Lookup::Rewrite("bob@example.test".into())
        );
        assert_eq!(
            s.lookup("ext@example.test"),
            Lookup::Rewrite("carol@elsewhere.test".into())
        );
    }

    #[test]
    fn subaddresses_reach_their_mailbox_or_alias() {
        let s = settings(EXAMPLE);
        assert_eq!(
            s.lookup("alice+news@example.test"),
            Lookup::Rewrite("alice@example.test".into())
        );
        assert_eq!(
            s.lookup("info+x@example.test"),
            Lookup::Rewrite("bob@example.test".into())
        );
        assert_eq!(s.lookup("nobody+x@example.test"), Lookup::Unknown);
    }

    #[test]
    fn catch_all_and_postmaster() {
        let s = settings(
            r#"
            domains = ["example.test", "other.test"]
            mailboxes = ["alice@example.test"]
            catch_all = { "Example.test" = "alice@example.test" }
            on_known = "continue"
        "#,
        );
        assert_eq!(
            s.lookup("anything@example.test"),
            Lookup::Rewrite("alice@example.test".into())
        );
        assert_eq!(s.lookup("postmaster@other.test"), Lookup::Mailbox);
        assert_eq!(s.lookup("x@other.test"), Lookup::Unknown);
        assert_eq!(s.known_verdict(), Verdict::Continue);
        let strict = settings("domains = [\"d.test\"]\nimplicit_postmaster = false");
        assert_eq!(strict.lookup("postmaster@d.test"), Lookup::Unknown);
    }

    #[test]
    fn case_sensitive_local_parts_when_asked() {
        let s = settings(
            "domains = [\"d.test\"]\nmailboxes = [\"Alice@D.test\"]\ncase_sensitive = true",
        );
        assert_eq!(s.lookup("Alice@d.test"), Lookup::Mailbox);
        assert_eq!(s.lookup("alice@d.test"), Lookup::Unknown);
    }

    #[test]
    fn bad_tables_are_refused() {
        let parse = |t: &str| {
            mailwit_plugin::config::parse::<Settings>(t)
                .map_err(|e| e.0)
                .and_then(Settings::validated)
        };
        let looping = parse(
            "domains = [\"d.test\"]\naliases = { \"a@d.test\" = \"b@d.test\", \"b@d.test\" = \"a@d.test\" }",
        );
        assert!(looping.unwrap_err().contains("loops"));
        let foreign = parse("domains = [\"d.test\"]\nmailboxes = [\"a@e.test\"]");
        assert!(
            foreign
                .unwrap_err()
                .contains("not in one of the local domains")
        );
        assert!(
            parse("domain = [\"d.test\"]")
                .unwrap_err()
                .contains("domain")
        );
    }
}
