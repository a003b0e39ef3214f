//! `router`: a route table from recipient addresses and domains to delivery methods (route hook):
//!
//! ```toml
//! [plugins.router.config.routes]
//! "example.test" = "maildir"                      # local Maildir of the recipient
//! "postmaster@example.test" = { maildir = "alice@example.test" }
//! "lists.example.test" = { lmtp = "127.0.0.1:24" }
//! ".partner.test" = { relay = { host = "mx.partner.test", port = 25, tls = "required" } }
//! "void.example.test" = "discard"
//! "odmr.test" = "hold"                            # kept for ATRN collection (route-hold hook)
//! "*" = "mx"
//! ```

mod table;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, log};
use table::Table;

struct Router;

impl RouteHook for Router {
    fn on_route(_from: ReversePath, recipient: Recipient) -> RouteDecision {
        match config::cached_with(Table::new) {
            Ok(table) => table.route(&recipient.address),
            Err(error) => {
                // No opinion: the configuration's own route table still applies.
                log::error(&format!("router: {error}"));
                RouteDecision::Continue
            }
        }
    }
}

impl RouteHoldHook for Router {
    fn on_route_hold(_from: ReversePath, recipient: Recipient) -> bool {
        // An unusable table holds nothing; `on_route` logs why.
        matches!(config::cached_with(Table::new), Ok(table) if table.holds(&recipient.address))
    }
}

mailwit_plugin::export!(Router: route, route_hold);
