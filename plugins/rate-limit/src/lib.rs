//! `rate-limit`: fixed-window counters on the plugin's kv store, per client IP (connections and
//! messages), per authenticated user and per sender domain.
//!
//! Over a connection limit the client hears 421 4.7.0 and is disconnected; over a message limit
//! MAIL gets 451 4.7.1 and the client may retry later. A kv failure fails open (logged).

mod limits;

use std::sync::OnceLock;

use limits::{Settings, Stage};
use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, kv, log, reply};

struct RateLimit;

fn settings() -> &'static Result<Settings, String> {
    static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();
    SETTINGS.get_or_init(|| config::load::<Settings>().map_err(|e| e.to_string()))
}

fn decide(stage: Stage, session: &SessionInfo, sender: Option<&str>) -> Verdict {
    match settings() {
        Ok(settings) => settings.decide(stage, session, sender, &mut |key, window_ms| {
            kv::count(key, window_ms).map_err(|error| {
                log::warn(&format!("rate-limit: kv failed, not limiting: {error}"));
            })
        }),
        Err(error) => {
            log::error(&format!("rate-limit: {error}"));
            reply::misconfigured("rate-limit")
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
