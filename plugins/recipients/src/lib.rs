//! `recipients`: local domains, mailboxes, aliases and catch-alls, decided at RCPT.
//!
//! For a recipient in one of the configured local `domains` the plugin accepts known mailboxes,
//! rewrites aliases (and sub-addresses, and catch-alls) to their target, and refuses the rest with
//! 550 5.1.1. Recipients in other domains get no opinion: relaying stays the host's decision.

mod table;

use std::sync::OnceLock;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, log, reply};
use table::{Lookup, Settings};

struct Recipients;

/// Parsed once per instance (one SMTP session), so a reload applies from the next session on.
fn settings() -> &'static Result<Settings, String> {
    static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        config::load::<Settings>()
            .map_err(|e| e.to_string())
            .and_then(Settings::validated)
    })
}

impl RcptHook for Recipients {
    fn on_rcpt(_session: SessionInfo, _from: ReversePath, recipient: Recipient) -> RcptResult {
        let settings = match settings() {
            Ok(settings) => settings,
            Err(error) => {
                log::error(&format!("recipients: {error}"));
                return RcptResult {
                    verdict: reply::misconfigured("recipients"),
                    rewrite: None,
                };
            }
        };
        match settings.lookup(&recipient.address) {
            Lookup::NotLocal => RcptResult {
                verdict: Verdict::Continue,
                rewrite: None,
            },
            Lookup::Mailbox => RcptResult {
                verdict: settings.known_verdict(),
                rewrite: None,
            },
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
