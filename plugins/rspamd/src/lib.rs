//! `rspamd`: sends each message with its envelope to Rspamd's `/checkv2` (through the `http`
//! grant) and applies the action Rspamd picked: reject → 554 5.7.1 with Rspamd's message, soft
//! reject or greylist → 451 4.7.1, add header → `X-Spam: Yes`, rewrite subject → the subject
//! Rspamd gave; every scanned message gets `X-Spam-Score`, `X-Spam-Action` and
//! `X-Spam-Symbols`. When Rspamd cannot be asked, `on_error` decides (tempfail or continue).

mod scan;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, http, log};
use scan::{CheckReply, Settings, Transaction};

struct Rspamd;

impl DataHook for Rspamd {
    fn on_data(
        session: SessionInfo,
        envelope: Envelope,
        message: &Message,
        _authentication: Authentication,
    ) -> DataResult {
        let settings = match config::cached::<Settings>() {
            Ok(settings) => settings,
            Err(error) => {
                log::error(&format!("rspamd: {error}"));
                return Verdict::misconfigured("rspamd").into();
            }
        };
        let unscanned: DataResult = Verdict::Continue.into();
        if session.authenticated.is_some() && !settings.scan_authenticated {
            return unscanned;
        }
        if message.size() > settings.max_size {
            log::info(&format!(
                "rspamd: message of {} octets not scanned (max_size {})",
                message.size(),
                settings.max_size
            ));
            return unscanned;
        }
        let tx = Transaction {
            client_ip: &session.client_ip,
            helo: session.helo.as_deref(),
            from: &envelope.reverse_path.address,
            recipients: envelope
                .recipients
                .iter()
                .map(|r| r.address.as_str())
                .collect(),
            user: session.authenticated.as_deref(),
            session_id: &session.id,
            tls: session
                .tls
                .as_ref()
                .map(|t| (t.version.as_str(), t.cipher.as_str())),
        };
        let headers = scan::request_headers(settings, &tx);
        let body = message.raw(settings.max_size);
        let url = format!("{}/checkv2", settings.url.trim_end_matches('/'));
        let answer = http::post(&url, &headers, &body)
            .map_err(|e| format!("{url}: {e}"))
            .and_then(|response| match response.status {
                200 => CheckReply::parse(&response.body),
                status => Err(format!("{url}: HTTP {status}: {}", response.text().trim())),
            });
        match answer {
            Ok(check) => {
                log::debug(&format!(
                    "rspamd: {} (score {:.2} / {:.2}) {}",
                    check.action,
                    check.score,
                    check.required_score,
                    check.symbols_text()
                ));
                let outcome = check.apply(settings);
                DataResult {
                    verdict: outcome.verdict,
                    modifications: outcome.modifications,
                }
            }
            Err(error) => {
                log::warn(&format!("rspamd: scan failed, on_error applies: {error}"));
                scan::on_error(settings).into()
            }
        }
    }
}

mailwit_plugin::export!(Rspamd: data);
