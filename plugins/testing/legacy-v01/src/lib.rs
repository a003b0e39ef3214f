//! A plugin built against `mailwit:plugin@0.1.0` as released (the frozen copy in
//! `wit/compat/0.1.0`), exporting the hooks whose shape 0.2.0 changed (`data`, `delivery`) and
//! some it kept (`mail`, `rcpt`, `route`). The host must load it and call every hook.
//!
//! mail: refuses `legacy-reject@` senders with "legacy 0.1". rcpt: rewrites `legacy-alias@D` to
//! `bob@D`. data: adds `X-Legacy: 0.1 <subject>`. route: sends `bob@D` to the Maildir of
//! `alice@D`. delivery: counts outcomes in kv (`delivered`, `deferred`,
//! `bounced`), remembers the last queue id under `last-id` and logs
//! "legacy delivery <queue id> <recipient> <outcome> (#n)".

wit_bindgen::generate!({
    inline: "
        package mailwit-test:legacy;
        world legacy {
            import mailwit:plugin/log@0.1.0;
            import mailwit:plugin/kv@0.1.0;
            export mailwit:plugin/mail@0.1.0;
            export mailwit:plugin/rcpt@0.1.0;
            export mailwit:plugin/data@0.1.0;
            export mailwit:plugin/route@0.1.0;
            export mailwit:plugin/delivery@0.1.0;
        }
    ",
    path: "../../../wit/compat/0.1.0",
    generate_all,
});

use exports::mailwit::plugin::{data, delivery, mail, rcpt, route};
use mailwit::plugin::types::{Envelope, Recipient, Reply, ReversePath, SessionInfo, Verdict};
use mailwit::plugin::{kv, log};

struct Legacy;

impl mail::Guest for Legacy {
    fn on_mail(_session: SessionInfo, reverse_path: ReversePath) -> Verdict {
        if reverse_path.address.starts_with("legacy-reject@") {
            log::log(log::Level::Info, "legacy plugin refuses the sender");
            return Verdict::Reject(Reply {
                code: 550,
                enhanced: "5.7.1".into(),
                text: "legacy 0.1".into(),
            });
        }
        Verdict::Continue
    }
}

impl rcpt::Guest for Legacy {
    fn on_rcpt(_s: SessionInfo, _from: ReversePath, recipient: Recipient) -> rcpt::RcptResult {
        let rewrite = recipient
            .address
            .strip_prefix("legacy-alias@")
            .map(|domain| format!("bob@{domain}"));
        rcpt::RcptResult {
            verdict: Verdict::Continue,
            rewrite,
        }
    }
}

impl data::Guest for Legacy {
    fn on_data(_s: SessionInfo, _e: Envelope, message: &data::Message) -> data::DataResult {
        let subject = message.header("subject").unwrap_or_default();
        data::DataResult {
            verdict: Verdict::Continue,
            modifications: vec![data::Modification::AddHeader(data::HeaderField {
                name: "X-Legacy".into(),
                value: format!("0.1 {subject}"),
            })],
        }
    }
}

impl route::Guest for Legacy {
    fn on_route(_from: ReversePath, recipient: Recipient) -> route::RouteDecision {
        // bob's mail goes to alice's Maildir: shows the route hook decided.
        match recipient.address.split_once('@') {
            Some(("bob", domain)) => route::RouteDecision::Maildir(format!("alice@{domain}")),
            _ => route::RouteDecision::Continue,
        }
    }
}

impl delivery::Guest for Legacy {
    fn on_delivery(event: delivery::DeliveryEvent) {
        let key = match event.outcome {
            delivery::Outcome::Delivered => "delivered",
            delivery::Outcome::Deferred => "deferred",
            delivery::Outcome::Bounced => "bounced",
        };
        let n = kv::increment(key, 1, None).unwrap_or(0);
        let _ = kv::put("last-id", event.message_id.as_bytes(), None);
        log::log(
            log::Level::Info,
            &format!(
                "legacy delivery {} {} {key} (#{n})",
                event.message_id, event.recipient
            ),
        );
    }
}

export!(Legacy);
