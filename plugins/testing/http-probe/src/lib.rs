//! A test plugin that, at MAIL, sends `GET {url}` (the plugin config's `url`, or the MAIL FROM's
//! local part as a path when `url` ends in "/") and refuses the MAIL with what came back:
//! `status=200 bytes=N body=...` or `error=HttpRequestDenied`. It is how the tests see what the
//! "http" grant lets through.

use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, http};

#[derive(serde::Deserialize)]
struct Settings {
    url: String,
}

struct HttpProbe;

impl MailHook for HttpProbe {
    fn on_mail(_session: SessionInfo, from: ReversePath) -> Verdict {
        let settings = match config::load::<Settings>() {
            Ok(s) => s,
            Err(e) => return Verdict::reject(554, "5.3.0", format!("config: {e}")),
        };
        let url = if settings.url.ends_with('/') {
            let local = from.address.split('@').next().unwrap_or_default();
            format!("{}{local}", settings.url)
        } else {
            settings.url
        };
        let text = match http::get(&url, &[("accept", "text/plain")]) {
            Ok(response) => {
                let body = response.text();
                let shown: String = body.chars().take(60).collect();
                format!(
                    "status={} bytes={} body={}",
                    response.status,
                    response.body.len(),
                    shown.trim()
                )
            }
            Err(e) => format!("error={e}"),
        };
        Verdict::reject(550, "5.7.1", &text)
    }
}

mailwit_plugin::export!(HttpProbe: mail);
