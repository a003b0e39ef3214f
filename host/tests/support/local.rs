//! The `[local]` routing the queue tests need, from the real [`LocalConfig`] (which the server
//! itself hands to the queue) instead of hand-written `LocalDomains` stubs.

use std::sync::Arc;

use mailwit::config::server::LocalConfig;
use mailwit::queue::LocalDomains;

/// `example.test` as the one local domain, with these mailboxes and aliases (an alias key is a
/// full address, or a bare local part for every local domain).
pub fn example_test(mailboxes: &[&str], aliases: &[(&str, &str)]) -> Arc<dyn LocalDomains> {
    Arc::new(LocalConfig {
        domains: vec!["example.test".into()],
        mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
        aliases: aliases
            .iter()
            .map(|(a, t)| (a.to_string(), t.to_string()))
            .collect(),
    })
}
