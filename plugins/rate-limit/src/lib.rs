//! `rate-limit`: fixed-window counters on the plugin's kv store, per client IP (connections and
//! messages), per authenticated user and per sender domain.
//!
//! Over a connection limit the client hears 421 4.7.0 and is disconnected; over a message limit
//! MAIL gets 451 4.7.1 and the client may retry later. A kv failure fails open (logged).

mod limits;

use limits::{Settings, Stage};
use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, kv, log};

struct RateLimit;

fn decide(stage: Stage, session: &SessionInfo, sender: Option<&str>) -> Verdict {
    match config::cached::<Settings>() {
        Ok(settings) => settings.decide(stage, session, sender, &mut |key, window_ms| {
            kv::count(key, window_ms).map_err(|error| {
                log::warn(&format!("rate-limit: kv failed, not limiting: {error}"));
            })
        }),
        Err(error) => {
            log::error(&format!("rate-limit: {error}"));
            Verdict::misconfigured("rate-limit")
        }
    }
}

impl ConnectHook for RateLimit {
    fn on_connect(session: SessionInfo) -> Verdict {
        decide(Stage::Connect, &session, None)
    }
}

impl MailHook for RateLimit {
    fn on_mail(session: SessionInfo, from: ReversePath) -> Verdict {
        decide(Stage::Mail, &session, Some(&from.address))
    }
}

mailwit_plugin::export!(RateLimit: connect, mail);
