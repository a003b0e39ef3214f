//! `dnsbl`: looks the client's IP up in the configured DNS block lists (through the host's
//! resolver, `dns` grant) and refuses listed clients with 554 5.7.1 naming the list.
//!
//! Put it in a pipeline's `connect` list (refuse before the greeting) or its `rcpt` list (refuse
//! each recipient, so the log shows sender and recipients); the lookup runs once per session.

mod lists;

use std::sync::OnceLock;

use lists::{Answer, Settings};
use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, dns, log};

struct Dnsbl;

/// The verdict for this session's client, decided once.
fn verdict(session: &SessionInfo) -> Verdict {
    static VERDICT: OnceLock<Verdict> = OnceLock::new();
    VERDICT
        .get_or_init(|| match config::cached::<Settings>() {
            Ok(settings) => settings.check(&session.client_ip, &mut |name| {
                let answer = match dns::lookup_a(name) {
                    Ok(addresses) => Answer::Addresses(addresses),
                    Err(dns::DnsError::Nxdomain | dns::DnsError::NoRecords) => Answer::NotListed,
                    Err(error) => Answer::Failed(format!("{error:?}")),
                };
                if let Answer::Failed(error) = &answer {
                    log::warn(&format!("dnsbl: lookup of {name} failed: {error}"));
                }
                answer
            }),
            Err(error) => {
                log::error(&format!("dnsbl: {error}"));
                Verdict::misconfigured("dnsbl")
            }
        })
        .clone()
}

impl ConnectHook for Dnsbl {
    fn on_connect(session: SessionInfo) -> Verdict {
        verdict(&session)
    }
}

impl RcptHook for Dnsbl {
    fn on_rcpt(session: SessionInfo, _from: ReversePath, _recipient: Recipient) -> RcptResult {
        verdict(&session).into()
    }
}

mailwit_plugin::export!(Dnsbl: connect, rcpt);
