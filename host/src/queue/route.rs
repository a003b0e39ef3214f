//! Per-recipient routing: ODMR domains are held (the core decides: the operator's contract with
//! the customer, not a policy question); then the route hook decides (a plugin's `route-hold`
//! may hold a recipient the same way); on `Continue` the route table applies (local domains ->
//! Maildir, listed domains -> their entry, the rest -> smarthost or MX).

use crate::config::queue::RoutesConfig;
use crate::delivery::Destination;
use crate::mail::address;
use crate::policy::{QueueHooks, Recipient, Reply, ReversePath, RouteDecision};

/// The local domains and mailboxes, as the engine's `[local]` configuration knows them.
pub trait LocalDomains: Send + Sync {
    fn is_local_domain(&self, domain: &str) -> bool;
    /// Resolves aliases to a mailbox address, or None when the address names no mailbox.
    fn resolve(&self, address: &str) -> Option<String>;
}

/// No local domains (every domain is remote).
pub struct NoLocalDomains;

impl LocalDomains for NoLocalDomains {
    fn is_local_domain(&self, _domain: &str) -> bool {
        false
    }
    fn resolve(&self, _address: &str) -> Option<String> {
        None
    }
}

/// Where one recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    To(Destination),
    /// Accepted and dropped (counts as delivered).
    Discard,
    /// Undeliverable as addressed.
    Fail(Reply),
    /// Kept in the queue for this ODMR domain until its customer collects it (ATRN).
    Hold(String),
}

/// The deferral a held recipient gets on each scheduled attempt; the summary recognises a
/// hold decided by a route plugin by it (the `[routes]` holds are known from the config).
pub fn hold_reply(domain: &str) -> Reply {
    Reply::new(451, "4.4.0", format!("held for {domain} {HOLD_UNTIL}"))
}

const HOLD_UNTIL: &str = "until collected with ATRN (ODMR)";

/// Whether a recipient's last reply is [`hold_reply`].
pub fn is_hold_reply(code: u16, enhanced: &str, text: &str) -> bool {
    code == 451
        && enhanced == "4.4.0"
        && text.starts_with("held for ")
        && text.ends_with(HOLD_UNTIL)
}

pub async fn route(
    hooks: &dyn QueueHooks,
    routes: &RoutesConfig,
    local: &dyn LocalDomains,
    from: &ReversePath,
    rcpt: &Recipient,
) -> Routed {
    let domain = address::domain(&rcpt.address);
    if routes.is_odmr(&domain) {
        return Routed::Hold(domain);
    }
    match hooks.route(from, rcpt).await {
        RouteDecision::Maildir(mailbox) => return Routed::To(Destination::Maildir(mailbox)),
        RouteDecision::Lmtp(target) => return Routed::To(Destination::Lmtp(target)),
        RouteDecision::Relay(target) => return Routed::To(Destination::Relay(target)),
        RouteDecision::Mx => return Routed::To(Destination::Mx(domain)),
        RouteDecision::Discard => return Routed::Discard,
        // Held for the recipient domain's ATRN customer (a route plugin's `route-hold`); an
        // address without a domain has no customer and fails in the table below.
        RouteDecision::Hold if !domain.is_empty() => return Routed::Hold(domain),
        RouteDecision::Hold => {}
        RouteDecision::Continue => {}
    }
    table_route(routes, local, &rcpt.address)
}

/// The route table alone (no hooks).
pub fn table_route(routes: &RoutesConfig, local: &dyn LocalDomains, address: &str) -> Routed {
    let domain = address::domain(address);
    if domain.is_empty() {
        return Routed::Fail(Reply::new(550, "5.1.3", "recipient address has no domain"));
    }
    if local.is_local_domain(&domain) {
        return match local.resolve(address) {
            Some(mailbox) => Routed::To(Destination::Maildir(mailbox)),
            None => Routed::Fail(Reply::new(550, "5.1.1", "no such local mailbox")),
        };
    }
    if let Some(entry) = routes.lookup(&domain) {
        if let Some(lmtp) = &entry.lmtp {
            return Routed::To(Destination::Lmtp(lmtp.clone()));
        }
        if let Some(relay) = &entry.relay {
            return Routed::To(Destination::Relay(relay.target()));
        }
        if entry.discard {
            return Routed::Discard;
        }
        if entry.odmr && routes.is_odmr(&domain) {
            return Routed::Hold(domain);
        }
        return Routed::To(Destination::Mx(domain));
    }
    match &routes.smarthost {
        Some(relay) => Routed::To(Destination::Relay(relay.target())),
        None => Routed::To(Destination::Mx(domain)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Local;
    impl LocalDomains for Local {
        fn is_local_domain(&self, d: &str) -> bool {
            d == "example.test"
        }
        fn resolve(&self, a: &str) -> Option<String> {
            match a.to_ascii_lowercase().as_str() {
                "bob@example.test" => Some("bob@example.test".into()),
                "postmaster@example.test" => Some("alice@example.test".into()),
                _ => None,
            }
        }
    }

    /// A route plugin that holds every recipient.
    struct HoldAll;
    #[async_trait::async_trait]
    impl QueueHooks for HoldAll {
        async fn route(&self, _from: &ReversePath, _rcpt: &Recipient) -> RouteDecision {
            RouteDecision::Hold
        }
    }

    #[tokio::test]
    async fn a_hook_hold_is_a_hold_for_the_recipient_domain() {
        let rcpt = |address: &str| Recipient {
            address: address.into(),
            ..Default::default()
        };
        let routes = RoutesConfig::default();
        let from = ReversePath::default();
        assert_eq!(
            route(&HoldAll, &routes, &Local, &from, &rcpt("carol@Hook.Test")).await,
            Routed::Hold("hook.test".into())
        );
        // No domain, no customer to collect it: the table's failure stands.
        assert!(matches!(
            route(&HoldAll, &routes, &Local, &from, &rcpt("carol")).await,
            Routed::Fail(r) if r.enhanced == "5.1.3"
        ));
        let held = hold_reply("hook.test");
        assert!(is_hold_reply(held.code, &held.enhanced, &held.text));
        assert!(!is_hold_reply(451, "4.4.0", "connection refused"));
    }

    #[test]
    fn table_routes_local_listed_and_default() {
        let routes: RoutesConfig = toml::from_str(
            "smarthost = { host = \"127.0.0.1\", port = 2626 }\n[domains.\"lmtp.test\"]\nlmtp = \"127.0.0.1:24\"\n[domains.\"direct.test\"]\nmx = true\n",
        )
        .unwrap();
        assert_eq!(
            table_route(&routes, &Local, "Postmaster@Example.Test"),
            Routed::To(Destination::Maildir("alice@example.test".into()))
        );
        assert!(
            matches!(table_route(&routes, &Local, "nobody@example.test"), Routed::Fail(r) if r.enhanced == "5.1.1")
        );
        assert_eq!(
            table_route(&routes, &Local, "x@lmtp.test"),
            Routed::To(Destination::Lmtp("127.0.0.1:24".into()))
        );
        assert_eq!(
            table_route(&routes, &Local, "x@direct.test"),
            Routed::To(Destination::Mx("direct.test".into()))
        );
        assert!(matches!(
            table_route(&routes, &Local, "x@elsewhere.org"),
            Routed::To(Destination::Relay(t)) if t.port == 2626
        ));
        let no_smarthost = RoutesConfig::default();
        assert_eq!(
            table_route(&no_smarthost, &Local, "x@elsewhere.org."),
            Routed::To(Destination::Mx("elsewhere.org".into()))
        );
    }
}
