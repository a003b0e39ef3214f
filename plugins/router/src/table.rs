//! The route table and its lookup: pure logic, tested natively.

use std::collections::BTreeMap;

use mailwit_plugin::address::{domain_matches, domain_of, normalize};
use mailwit_plugin::types::{RelayTarget, RouteDecision, TlsPolicy};
use serde::Deserialize;

/// A route written as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Word {
    /// The recipient's own local Maildir.
    Maildir,
    /// The recipient domain's MX hosts.
    Mx,
    Discard,
    /// Keep in the queue for ODMR collection (ATRN), via the `route-hold` hook.
    Hold,
    /// No opinion (the next plugin, then the server's route table).
    Continue,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    None,
    #[default]
    Opportunistic,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: Tls,
    /// The name of a credentials entry in the server's configuration.
    pub credentials: Option<String>,
}

fn default_port() -> u16 {
    25
}

/// A route written as a table with one key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// The local Maildir of this mailbox address.
    Maildir(String),
    /// LMTP to "host:port" or a unix socket path.
    Lmtp(String),
    Relay(Relay),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Word(Word),
    Target(Target),
}

/// The plugin's `config` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Key: a recipient address, a domain, ".domain" for its subdomains, or "*" for the rest.
    /// The most specific key wins: address, then domain, then the longest ".domain", then "*".
    pub routes: BTreeMap<String, Route>,
}

pub struct Table {
    addresses: BTreeMap<String, Route>,
    domains: BTreeMap<String, Route>,
    /// (".suffix", route), longest suffix first.
    suffixes: Vec<(String, Route)>,
    fallback: Option<Route>,
}

impl Table {
    pub fn new(settings: Settings) -> Result<Table, String> {
        let mut table = Table {
            addresses: BTreeMap::new(),
            domains: BTreeMap::new(),
            suffixes: Vec::new(),
            fallback: None,
        };
        for (key, route) in settings.routes {
            if let Route::Target(Target::Relay(relay)) = &route
                && (relay.host.is_empty() || relay.port == 0)
            {
                return Err(format!("route {key:?}: a relay needs a host and a port"));
            }
            if key == "*" {
                table.fallback = Some(route);
            } else if key.starts_with('.') {
                table.suffixes.push((key.to_ascii_lowercase(), route));
            } else if key.contains('@') {
                table.addresses.insert(normalize(&key, true), route);
            } else if !key.is_empty() {
                table.domains.insert(key.to_ascii_lowercase(), route);
            } else {
                return Err("a route key is empty".into());
            }
        }
        table
            .suffixes
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Ok(table)
    }

    /// Whether the recipient's route is `"hold"` (the `route-hold` hook's answer).
    pub fn holds(&self, recipient: &str) -> bool {
        self.lookup(recipient) == Some(&Route::Word(Word::Hold))
    }

    /// The `route` hook's answer. A `"hold"` route is no opinion here: the host asks
    /// [`Table::holds`] first and never gets this far for a held recipient.
    pub fn route(&self, recipient: &str) -> RouteDecision {
        match self.lookup(recipient) {
            None | Some(Route::Word(Word::Continue | Word::Hold)) => RouteDecision::Continue,
            Some(Route::Word(Word::Maildir)) => RouteDecision::Maildir(recipient.to_string()),
            Some(Route::Word(Word::Mx)) => RouteDecision::Mx,
            Some(Route::Word(Word::Discard)) => RouteDecision::Discard,
            Some(Route::Target(Target::Maildir(mailbox))) => {
                RouteDecision::Maildir(mailbox.clone())
            }
            Some(Route::Target(Target::Lmtp(address))) => RouteDecision::Lmtp(address.clone()),
            Some(Route::Target(Target::Relay(relay))) => RouteDecision::Relay(RelayTarget {
                host: relay.host.clone(),
                port: relay.port,
                tls: match relay.tls {
                    Tls::None => TlsPolicy::None,
                    Tls::Opportunistic => TlsPolicy::Opportunistic,
                    Tls::Required => TlsPolicy::Required,
                },
                credentials: relay.credentials.clone(),
            }),
        }
    }

    /// The most specific route for the recipient: address, domain, longest ".domain", "*".
    fn lookup(&self, recipient: &str) -> Option<&Route> {
        let domain = domain_of(recipient).unwrap_or("").to_ascii_lowercase();
        self.addresses
            .get(&normalize(recipient, true))
            .or_else(|| self.domains.get(&domain))
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(suffix, _)| domain_matches(&domain, suffix))
                    .map(|(_, route)| route)
            })
            .or(self.fallback.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml: &str) -> Table {
        Table::new(mailwit_plugin::config::parse(toml).unwrap()).unwrap()
    }

    const EXAMPLE: &str = r#"
        [routes]
        "example.test" = "maildir"
        "Postmaster@Example.test" = { maildir = "alice@example.test" }
        "lists.example.test" = { lmtp = "127.0.0.1:24" }
        ".partner.test" = { relay = { host = "mx.partner.test", tls = "required", credentials = "partner" } }
        ".eu.partner.test" = { lmtp = "/run/lmtp.sock" }
        "void.example.test" = "discard"
        "undecided.test" = "continue"
        "*" = "mx"
    "#;

    #[test]
    fn most_specific_key_wins() {
        let t = table(EXAMPLE);
        assert_eq!(
            t.route("bob@example.test"),
            RouteDecision::Maildir("bob@example.test".into())
        );
        assert_eq!(
            t.route("postmaster@example.test"),
            RouteDecision::Maildir("alice@example.test".into())
        );
        assert_eq!(
            t.route("x@Lists.Example.test"),
            RouteDecision::Lmtp("127.0.0.1:24".into())
        );
        assert_eq!(
            t.route("y@mx1.partner.test"),
            RouteDecision::Relay(RelayTarget {
                host: "mx.partner.test".into(),
                port: 25,
                tls: TlsPolicy::Required,
                credentials: Some("partner".into())
            })
        );
        assert_eq!(
            t.route("y@a.eu.partner.test"),
            RouteDecision::Lmtp("/run/lmtp.sock".into())
        );
        assert_eq!(t.route("z@void.example.test"), RouteDecision::Discard);
        assert_eq!(t.route("z@undecided.test"), RouteDecision::Continue);
        assert_eq!(t.route("z@elsewhere.test"), RouteDecision::Mx);
        // ".partner.test" is for subdomains only.
        assert_eq!(t.route("z@partner.test"), RouteDecision::Mx);
    }

    #[test]
    fn hold_is_answered_by_holds_and_is_no_opinion_for_route() {
        let t = table(
            "[routes]\n\"odmr.test\" = \"hold\"\n\"keep@odmr.test\" = \"mx\"\n\"*\" = \"mx\"",
        );
        assert!(t.holds("someone@ODMR.test"));
        assert_eq!(t.route("someone@odmr.test"), RouteDecision::Continue);
        // The most specific key still wins: this address is not held.
        assert!(!t.holds("keep@odmr.test"));
        assert_eq!(t.route("keep@odmr.test"), RouteDecision::Mx);
        assert!(!t.holds("a@other.test"));
    }

    #[test]
    fn no_fallback_means_no_opinion() {
        let t = table("[routes]\n\"example.test\" = \"maildir\"");
        assert_eq!(t.route("a@other.test"), RouteDecision::Continue);
        assert_eq!(table("").route("a@example.test"), RouteDecision::Continue);
    }

    #[test]
    fn bad_routes_are_refused() {
        assert!(
            mailwit_plugin::config::parse::<Settings>("[routes]\n\"a.test\" = \"teleport\"")
                .is_err()
        );
        assert!(
            mailwit_plugin::config::parse::<Settings>("[routes]\n\"a.test\" = { smtp = \"x\" }")
                .is_err()
        );
        let no_host = mailwit_plugin::config::parse::<Settings>(
            "[routes]\n\"a.test\" = { relay = { host = \"\" } }",
        )
        .unwrap();
        assert!(Table::new(no_host).err().unwrap().contains("needs a host"));
    }
}
