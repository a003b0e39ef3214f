//! The plugin's pure logic: its settings, the request headers Rspamd's MTA integrations send, and
//! what a `/checkv2` reply means for the message (verdict and header changes).

use std::collections::BTreeMap;

use mailwit_plugin::types::{Modification, Verdict};
use serde::Deserialize;

/// `[plugins.rspamd] config = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Rspamd's normal worker (or its proxy); the plugin posts to `{url}/checkv2`. The server's
    /// `http.allow` must list this authority.
    pub url: String,
    /// When Rspamd cannot be asked or answers nonsense: "tempfail" (451 4.7.1, the sender
    /// retries) or "continue" (accept unscanned).
    pub on_error: OnError,
    /// Messages larger than this are not scanned (accepted as they are).
    pub max_size: u64,
    /// Scan mail of authenticated (submission) sessions too.
    pub scan_authenticated: bool,
    /// The header set to "Yes" when Rspamd says "add header" or "rewrite subject" (Rspamd's own
    /// `spam_header` default).
    pub spam_header: String,
    /// Add `X-Spam-Score`, `X-Spam-Action` and `X-Spam-Symbols` to every scanned message.
    pub score_headers: bool,
    /// Apply the header changes Rspamd asks for in its `milter` block (milter_headers module).
    pub milter_headers: bool,
    /// The reply text of a "reject" when Rspamd gives none.
    pub reject_message: String,
    /// The reply text of a "soft reject" or "greylist" when Rspamd gives none.
    pub tempfail_message: String,
    /// Sent as `Settings-ID` (Rspamd settings selected per MTA integration), when set.
    pub settings_id: Option<String>,
    /// Sent as `MTA-Tag`, when set.
    pub mta_tag: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            url: "http://127.0.0.1:11333".into(),
            on_error: OnError::Tempfail,
            max_size: 20 * 1024 * 1024,
            scan_authenticated: true,
            spam_header: "X-Spam".into(),
            score_headers: true,
            milter_headers: true,
            reject_message: "Spam message rejected".into(),
            tempfail_message: "Try again later".into(),
            settings_id: None,
            mta_tag: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    Tempfail,
    Continue,
}

/// What the plugin knows of the transaction, for the request headers.
pub struct Transaction<'a> {
    pub client_ip: &'a str,
    pub helo: Option<&'a str>,
    pub from: &'a str,
    pub recipients: Vec<&'a str>,
    pub user: Option<&'a str>,
    pub session_id: &'a str,
    pub tls: Option<(&'a str, &'a str)>,
}

/// The request headers of Rspamd's protocol, as its Postfix/Exim/Haraka integrations send them.
pub fn request_headers<'a>(
    settings: &'a Settings,
    tx: &'a Transaction<'a>,
) -> Vec<(&'static str, &'a str)> {
    let mut headers = vec![
        ("Content-Type", "message/rfc822"),
        ("IP", tx.client_ip),
        // Rspamd's `From` is the envelope sender ("" for the null reverse-path).
        ("From", tx.from),
        // No queue id exists before the message is accepted; the session id is what ties
        // Rspamd's log line to mailwit's.
        ("Queue-Id", tx.session_id),
        ("Pass", "all"),
    ];
    if let Some(helo) = tx.helo {
        headers.push(("Helo", helo));
    }
    for rcpt in &tx.recipients {
        headers.push(("Rcpt", rcpt));
    }
    if let Some(user) = tx.user {
        headers.push(("User", user));
    }
    if let Some((version, cipher)) = tx.tls {
        headers.push(("TLS-Version", version));
        headers.push(("TLS-Cipher", cipher));
    }
    if let Some(id) = &settings.settings_id {
        headers.push(("Settings-ID", id));
    }
    if let Some(tag) = &settings.mta_tag {
        headers.push(("MTA-Tag", tag));
    }
    headers
}

/// The part of Rspamd's `/checkv2` reply the plugin uses.
#[derive(Debug, Deserialize)]
pub struct CheckReply {
    pub action: String,
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub required_score: f64,
    #[serde(default)]
    pub symbols: BTreeMap<String, Symbol>,
    #[serde(default)]
    pub messages: BTreeMap<String, serde_json::Value>,
    /// The rewritten subject ("rewrite subject").
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub milter: Option<Milter>,
}

#[derive(Debug, Deserialize)]
pub struct Symbol {
    #[serde(default)]
    pub score: f64,
}

#[derive(Debug, Default, Deserialize)]
pub struct Milter {
    /// Header name -> a value, `{ "value": ..., "order": N }`, or a list of those.
    #[serde(default)]
    pub add_headers: BTreeMap<String, serde_json::Value>,
    /// Header name -> which occurrence (0: all).
    #[serde(default)]
    pub remove_headers: BTreeMap<String, serde_json::Value>,
}

/// The outcome of one scan.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub modifications: Vec<Modification>,
}

impl CheckReply {
    pub fn parse(body: &[u8]) -> Result<CheckReply, String> {
        serde_json::from_slice(body).map_err(|e| format!("unreadable /checkv2 reply: {e}"))
    }

    fn smtp_message(&self) -> Option<String> {
        match self.messages.get("smtp_message")? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(one_line(s)),
            _ => None,
        }
    }

    /// "SYM_A(1.00), SYM_B(-0.10)", by name.
    pub fn symbols_text(&self) -> String {
        self.symbols
            .iter()
            .map(|(name, s)| format!("{name}({:.2})", s.score))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What Rspamd's action means for the message.
    pub fn apply(&self, settings: &Settings) -> Outcome {
        let mut modifications = Vec::new();
        // Whatever the sender put in our headers goes first.
        if settings.score_headers {
            for name in ["X-Spam-Score", "X-Spam-Action", "X-Spam-Symbols"] {
                modifications.push(Modification::remove_header(name));
            }
        }
        if !settings.spam_header.is_empty() {
            modifications.push(Modification::remove_header(&settings.spam_header));
        }
        if settings.milter_headers
            && let Some(milter) = &self.milter
        {
            milter_changes(milter, settings, &mut modifications);
        }
        if settings.score_headers {
            modifications.push(Modification::add_header(
                "X-Spam-Score",
                format!("{:.2} / {:.2}", self.score, self.required_score),
            ));
            modifications.push(Modification::add_header("X-Spam-Action", &self.action));
            if !self.symbols.is_empty() {
                modifications.push(Modification::add_header(
                    "X-Spam-Symbols",
                    self.symbols_text(),
                ));
            }
        }
        let spam_flag = |modifications: &mut Vec<Modification>| {
            if !settings.spam_header.is_empty() {
                modifications.push(Modification::add_header(&settings.spam_header, "Yes"));
            }
        };
        let verdict = match self.action.as_str() {
            "reject" => Verdict::reject(
                554,
                "5.7.1",
                self.smtp_message()
                    .unwrap_or_else(|| settings.reject_message.clone()),
            ),
            "soft reject" | "greylist" => Verdict::tempfail(
                451,
                "4.7.1",
                self.smtp_message()
                    .unwrap_or_else(|| settings.tempfail_message.clone()),
            ),
            "rewrite subject" => {
                if let Some(subject) = &self.subject {
                    modifications.push(Modification::replace_header("Subject", one_line(subject)));
                }
                spam_flag(&mut modifications);
                Verdict::Continue
            }
            "add header" => {
                spam_flag(&mut modifications);
                Verdict::Continue
            }
            // "no action", and any action a newer Rspamd may add.
            _ => Verdict::Continue,
        };
        if matches!(verdict, Verdict::Reject(_) | Verdict::Tempfail(_)) {
            // A refused message is not stored: its header changes do not matter.
            modifications.clear();
        }
        Outcome {
            verdict,
            modifications,
        }
    }
}

/// Rspamd's `milter` block: headers to remove, then headers to add.
fn milter_changes(milter: &Milter, settings: &Settings, out: &mut Vec<Modification>) {
    for name in milter.remove_headers.keys() {
        // The headers this plugin manages itself are already removed above.
        if !name.eq_ignore_ascii_case(&settings.spam_header) {
            out.push(Modification::remove_header(name));
        }
    }
    for (name, value) in &milter.add_headers {
        let values: Vec<&serde_json::Value> = match value {
            serde_json::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            let text = match value {
                serde_json::Value::String(s) => Some(s.as_str()),
                serde_json::Value::Object(o) => o.get("value").and_then(|v| v.as_str()),
                _ => None,
            };
            if let Some(text) = text {
                out.push(Modification::add_header(name, one_line(text)));
            }
        }
    }
}

/// Rspamd's texts may carry line breaks; replies and header values take one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a failed scan means, per `on_error`.
pub fn on_error(settings: &Settings) -> Verdict {
    match settings.on_error {
        OnError::Tempfail => {
            Verdict::tempfail(451, "4.7.1", "spam scanner unavailable, try again later")
        }
        OnError::Continue => Verdict::Continue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(json: &str) -> CheckReply {
        CheckReply::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn reject_uses_rspamds_message_and_drops_header_changes() {
        let out = reply(
            r#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject",
               "symbols":{"GTUBE":{"name":"GTUBE","score":0.0}},
               "messages":{"smtp_message":"Gtube pattern"}}"#,
        )
        .apply(&Settings::default());
        assert_eq!(out.verdict, Verdict::reject(554, "5.7.1", "Gtube pattern"));
        assert!(out.modifications.is_empty());
        let out = reply(r#"{"action":"reject","score":20}"#).apply(&Settings::default());
        assert_eq!(
            out.verdict,
            Verdict::reject(554, "5.7.1", "Spam message rejected")
        );
    }

    #[test]
    fn soft_reject_and_greylist_are_tempfails() {
        for action in ["soft reject", "greylist"] {
            let out = reply(&format!(r#"{{"action":"{action}"}}"#)).apply(&Settings::default());
            assert_eq!(
                out.verdict,
                Verdict::tempfail(451, "4.7.1", "Try again later")
            );
        }
    }

    #[test]
    fn add_header_and_rewrite_subject_mark_the_message() {
        let out = reply(
            r#"{"action":"add header","score":8.5,"required_score":15,
               "symbols":{"B":{"score":2.5},"A":{"score":-0.1}},
               "milter":{"remove_headers":{"X-Spam":0},"add_headers":{"X-Extra":{"value":"1","order":0}}}}"#,
        )
        .apply(&Settings::default());
        assert_eq!(out.verdict, Verdict::Continue);
        assert!(
            out.modifications
                .contains(&Modification::add_header("X-Spam-Score", "8.50 / 15.00"))
        );
        assert!(out.modifications.contains(&Modification::add_header(
            "X-Spam-Symbols",
            "A(-0.10), B(2.50)"
        )));
        assert!(
            out.modifications
                .contains(&Modification::add_header("X-Spam", "Yes"))
        );
        assert!(
            out.modifications
                .contains(&Modification::add_header("X-Extra", "1"))
        );
        assert!(
            out.modifications
                .contains(&Modification::remove_header("X-Spam"))
        );

        let out = reply(r#"{"action":"rewrite subject","subject":"***SPAM*** hi"}"#)
            .apply(&Settings::default());
        assert!(
            out.modifications
                .contains(&Modification::replace_header("Subject", "***SPAM*** hi"))
        );
        assert!(
            out.modifications
                .contains(&Modification::add_header("X-Spam", "Yes"))
        );
    }

    #[test]
    fn no_action_only_reports_the_score() {
        let out = reply(r#"{"action":"no action","score":0.4,"required_score":15}"#)
            .apply(&Settings::default());
        assert_eq!(out.verdict, Verdict::Continue);
        assert!(
            !out.modifications
                .contains(&Modification::add_header("X-Spam", "Yes"))
        );
        assert!(
            out.modifications
                .contains(&Modification::add_header("X-Spam-Action", "no action"))
        );
    }

    #[test]
    fn request_headers_follow_rspamds_protocol() {
        let settings = Settings {
            settings_id: Some("inbound".into()),
            ..Settings::default()
        };
        let tx = Transaction {
            client_ip: "192.0.2.1",
            helo: Some("mx.example.test"),
            from: "a@example.test",
            recipients: vec!["b@example.test", "c@example.test"],
            user: Some("alice"),
            session_id: "S1",
            tls: Some(("TLSv1.3", "TLS13_AES_128_GCM_SHA256")),
        };
        let headers = request_headers(&settings, &tx);
        let rcpts: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| *n == "Rcpt")
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(rcpts, ["b@example.test", "c@example.test"]);
        for want in [
            ("IP", "192.0.2.1"),
            ("Helo", "mx.example.test"),
            ("From", "a@example.test"),
            ("User", "alice"),
            ("Queue-Id", "S1"),
            ("Settings-ID", "inbound"),
            ("TLS-Version", "TLSv1.3"),
        ] {
            assert!(headers.contains(&want), "{want:?} missing from {headers:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_and_settings_parse() {
        assert!(CheckReply::parse(b"<html>").is_err());
        let s: Settings = mailwit_plugin::config::parse(
            "url = \"http://127.0.0.1:1\"\non_error = \"continue\"\nspam_header = \"X-Spam-Flag\"",
        )
        .unwrap();
        assert_eq!(s.on_error, OnError::Continue);
        assert_eq!(on_error(&s), Verdict::Continue);
    }
}
