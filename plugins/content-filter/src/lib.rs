//! `content-filter`: rules on header fields and the body, the GTUBE test string, a list of refused
//! words, and a spam score reported in `X-Spam-Score` / `X-Spam-Status`.

mod rules;

use mailwit_plugin::headers::MessageExt;
use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, log};
use rules::Filter;

struct ContentFilter;

impl DataHook for ContentFilter {
    fn on_data(
        _session: SessionInfo,
        _envelope: Envelope,
        message: &Message,
        _authentication: Authentication,
    ) -> DataResult {
        // Compiled once per instance (one SMTP session); a reload applies from the next session on.
        let filter = match config::cached_with(Filter::new) {
            Ok(filter) => filter,
            Err(error) => {
                log::error(&format!("content-filter: {error}"));
                return Verdict::misconfigured("content-filter").into();
            }
        };
        let headers = message.headers();
        let body = message.body(filter.max_scan_bytes());
        let outcome = filter.scan(&headers, &body);
        if !outcome.hits.is_empty() {
            log::info(&format!(
                "content-filter: score {:.1}, tests {}",
                outcome.score,
                outcome.hits.join(",")
            ));
        }
        DataResult {
            modifications: filter.modifications(&outcome),
            verdict: outcome.verdict,
        }
    }
}

mailwit_plugin::export!(ContentFilter: data);
