//! delivery-log: told of every delivery outcome (the queue's `delivery` hook), it logs one line
//! per recipient and keeps per-domain counters in kv, e.g. `bounced:example.net`, so that other
//! tooling (or a future policy plugin sharing the store) can see which domains bounce.
//!
//! ```toml
//! [plugins.delivery-log]
//! builtin = "delivery-log"
//! grants = ["log", "kv"]
//! [pipelines.queue]
//! delivery = ["delivery-log"]
//! ```
//!
//! Log line: `delivery <queue id> <recipient> <outcome> attempts=<n> reply=<code> <enhanced>`.
//! Counters never expire; a bounce counter is what an operator reads after a bad day.

use mailwit_plugin::prelude::*;
use mailwit_plugin::{kv, log};

struct DeliveryLog;

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Deferred => "deferred",
        Outcome::Bounced => "bounced",
    }
}

impl DeliveryHook for DeliveryLog {
    fn on_delivery(event: DeliveryEvent) {
        let outcome = outcome_name(event.outcome);
        let domain = domain_of(&event.recipient)
            .unwrap_or("")
            .to_ascii_lowercase();
        let count = kv::increment(&format!("{outcome}:{domain}"), 1, None).unwrap_or(0);
        let reply = event
            .reply
            .as_ref()
            .map(|r| format!("{} {}", r.code, r.enhanced))
            .unwrap_or_else(|| "-".into());
        log::info(&format!(
            "delivery {} {} {outcome} attempts={} reply={reply} ({outcome} to {domain}: {count})",
            event.queue_id, event.recipient, event.attempts
        ));
    }
}

mailwit_plugin::export!(DeliveryLog: delivery);
