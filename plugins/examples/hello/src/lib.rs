//! A complete mailwit plugin: refuses senders from the domains listed in its configuration and
//! stamps every accepted message with a header.

use mailwit_plugin::prelude::*;

/// This plugin's `[plugins.NAME.config]` table.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    blocked_domains: Vec<String>,
}

struct Hello;

impl MailHook for Hello {
    fn on_mail(_session: SessionInfo, from: ReversePath) -> Verdict {
        // Parsed once per plugin instance; an unusable table blocks nothing.
        let blocked_domains = mailwit_plugin::config::cached::<Settings>()
            .map(|settings| settings.blocked_domains.as_slice())
            .unwrap_or_default();
        let domain = domain_of(&from.address).unwrap_or_default();
        let blocked = blocked_domains
            .iter()
            .any(|b| b.eq_ignore_ascii_case(domain));
        if blocked {
            return Verdict::reject(550, "5.7.1", format!("mail from {domain} is not welcome"));
        }
        Verdict::Continue
    }
}

impl DataHook for Hello {
    fn on_data(
        session: SessionInfo,
        _envelope: Envelope,
        _message: &Message,
        _authentication: Authentication,
    ) -> DataResult {
        let stamp = format!("checked for {}", session.client_ip);
        DataResult {
            verdict: Verdict::Continue,
            modifications: vec![Modification::add_header("X-Hello", stamp)],
        }
    }
}

mailwit_plugin::export!(Hello: mail, data);
