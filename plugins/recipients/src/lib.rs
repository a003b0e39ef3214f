//! `recipients`: local domains, mailboxes, aliases and catch-alls, decided at RCPT.
//!
//! For a recipient in one of the configured local `domains` the plugin accepts known mailboxes,
//! rewrites aliases (and sub-addresses, and catch-alls) to their target, and refuses the rest with
//! 550 5.1.1. Recipients in other domains get no opinion: relaying stays the host's decision.

mod table;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, log};
use table::{Lookup, Settings};

struct Recipients;

impl RcptHook for Recipients {
    fn on_rcpt(_session: SessionInfo, _from: ReversePath, recipient: Recipient) -> RcptResult {
        // Parsed once per instance (one SMTP session), so a reload applies from the next session on.
        let settings = match config::cached_with(Settings::validated) {
            Ok(settings) => settings,
            Err(error) => {
                log::error(&format!("recipients: {error}"));
                return Verdict::misconfigured("recipients").into();
            }
        };
        match settings.lookup(&recipient.address) {
            Lookup::NotLocal => Verdict::Continue.into(),
            Lookup::Mailbox => settings.known_verdict().into(),
            Lookup::Rewrite(target) => RcptResult {
                verdict: settings.known_verdict(),
                rewrite: Some(target),
            },
            Lookup::Unknown => RcptResult {
                verdict: Verdict::reject(
                    550,
                    "5.1.1",
                    format!("<{}>: no such mailbox here", recipient.address),
                ),
                rewrite: None,
            },
        }
    }
}

mailwit_plugin::export!(Recipients: rcpt);
