//! `dmarc`: applies the From domain's published DMARC policy (RFC 7489) to the authentication
//! results the host passes to the data hook: `p=reject` failures get 550 5.7.1, `p=quarantine`
//! failures are tagged, held or refused as configured, with operator overrides (allow lists of
//! From domains, forwarders' sender domains and client IPs) and the record's `pct=` honoured.
//!
//! The host does the evaluation (SPF, DKIM, alignment, the policy discovered); this plugin only
//! decides. Mail that was not evaluated (submission listeners, `[authentication] verify = false`)
//! carries no DMARC result and passes untouched.

mod policy;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{address, config, dns, log};
use policy::{Facts, Settings};

struct Dmarc;

impl DataHook for Dmarc {
    fn on_data(
        session: SessionInfo,
        envelope: Envelope,
        message: &Message,
        authentication: Authentication,
    ) -> DataResult {
        let settings = match config::cached::<Settings>() {
            Ok(settings) => settings,
            Err(error) => {
                log::error(&format!("dmarc: {error}"));
                return Verdict::misconfigured("dmarc").into();
            }
        };
        let Some(dmarc) = authentication.dmarc else {
            return Verdict::Continue.into();
        };
        let from = message.header("From");
        let message_id = message.header("Message-ID").unwrap_or_default();
        let facts = Facts {
            result: &dmarc.result,
            policy: &dmarc.policy,
            from_domain: from
                .as_deref()
                .and_then(address::mailbox_in_header)
                .and_then(address::domain_of),
            sender_domain: address::domain_of(&envelope.reverse_path.address),
            client_ip: &session.client_ip,
            sample: policy::sample(&[&session.id, &message_id, &message.size().to_string()]),
        };
        let decision = settings.decide(&facts, &mut |name| match dns::lookup_txt(name) {
            Ok(records) => Some(records),
            Err(dns::DnsError::Nxdomain | dns::DnsError::NoRecords) => None,
            Err(error) => {
                log::warn(&format!("dmarc: TXT lookup of {name} failed: {error:?}"));
                None
            }
        });
        if let Some(note) = &decision.note {
            log::info(note);
        }
        DataResult {
            verdict: decision.verdict,
            modifications: decision.modifications,
        }
    }
}

mailwit_plugin::export!(Dmarc: data);
