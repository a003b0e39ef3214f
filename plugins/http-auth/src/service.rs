//! The plugin's pure logic: settings, the JSON the account service receives and answers, and
//! what an answer means for AUTH and RCPT.

use blake2::Digest;
use mailwit_plugin::types::{AuthResult, Verdict};
use serde::{Deserialize, Serialize};

/// `[plugins.NAME] config = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where AUTH is checked: POST `{"user", "password", "client_ip", "mechanism", "authzid"}`.
    #[serde(default)]
    pub url: Option<String>,
    /// Where RCPT is checked: POST `{"recipient", "client_ip"}`.
    #[serde(default)]
    pub recipients_url: Option<String>,
    /// Sent as the `Authorization` header (e.g. "Bearer ..."), when set.
    #[serde(default)]
    pub authorization: Option<String>,
    /// How long an "ok" is reused without asking the service (0: never cached).
    #[serde(default = "Settings::default_ok_ms")]
    pub cache_ok_ms: u64,
    /// How long an "invalid" is reused (0: never cached).
    #[serde(default = "Settings::default_invalid_ms")]
    pub cache_invalid_ms: u64,
    /// How long a recipient's "exists" / "unknown" is reused (0: never cached).
    #[serde(default = "Settings::default_recipient_ms")]
    pub cache_recipient_ms: u64,
    /// Only recipients in these domains are checked (empty: all).
    #[serde(default)]
    pub recipient_domains: Vec<String>,
}

impl Settings {
    fn default_ok_ms() -> u64 {
        60_000
    }
    fn default_invalid_ms() -> u64 {
        10_000
    }
    fn default_recipient_ms() -> u64 {
        60_000
    }

    pub fn checks_recipient(&self, address: &str) -> bool {
        if self.recipients_url.is_none() {
            return false;
        }
        if self.recipient_domains.is_empty() {
            return true;
        }
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        self.recipient_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

#[derive(Debug, Serialize)]
pub struct AuthQuery<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub client_ip: &'a str,
    pub mechanism: &'a str,
    pub authzid: &'a str,
}

#[derive(Debug, Serialize)]
pub struct RecipientQuery<'a> {
    pub recipient: &'a str,
    pub client_ip: &'a str,
}

/// The service's answer: `{"result": "ok" | "invalid" | "unknown" | "tempfail",
/// "identity": "...", "message": "..."}` (AUTH) or `{"result": "exists" | "unknown" |
/// "tempfail"}` (RCPT).
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub result: String,
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Answer {
    pub fn parse(status: u16, body: &[u8]) -> Result<Answer, String> {
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}"))
    }

    /// For AUTH; `user` is the identity when the service names none.
    pub fn auth_result(&self, user: &str) -> Result<AuthResult, String> {
        Ok(match self.result.as_str() {
            "ok" => AuthResult::Ok(
                self.identity
                    .clone()
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| user.to_string()),
            ),
            "invalid" => AuthResult::Invalid,
            "unknown" => AuthResult::Unknown,
            "tempfail" => AuthResult::Tempfail(
                self.message
                    .clone()
                    .unwrap_or_else(|| "account service busy, try again later".into()),
            ),
            other => return Err(format!("unexpected result {other:?}")),
        })
    }

    /// For RCPT: whether the recipient exists.
    pub fn recipient_exists(&self) -> Result<Option<bool>, String> {
        match self.result.as_str() {
            "exists" | "ok" => Ok(Some(true)),
            "unknown" | "invalid" => Ok(Some(false)),
            "tempfail" => Ok(None),
            other => Err(format!("unexpected result {other:?}")),
        }
    }
}

/// The kv key of a (user, password) pair: a keyed hash, never the password itself.
pub fn credentials_key(user: &str, password: &str) -> String {
    let mut hasher = blake2::Blake2s256::new();
    hasher.update(b"mailwit-http-auth\0");
    hasher.update((user.len() as u64).to_le_bytes());
    hasher.update(user.as_bytes());
    hasher.update(password.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("auth:{hex}")
}

/// The verdict for a recipient the service does not know.
pub fn unknown_recipient(address: &str) -> Verdict {
    Verdict::reject(550, "5.1.1", format!("<{address}>: no such mailbox here"))
}

/// The verdict when the service cannot say.
pub fn recipient_tempfail() -> Verdict {
    Verdict::tempfail(451, "4.3.0", "recipient check unavailable, try again later")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_auth_results() {
        let a = |json: &str| Answer::parse(200, json.as_bytes()).unwrap();
        assert_eq!(
            a(r#"{"result":"ok","identity":"carol@example.test"}"#).auth_result("carol"),
            Ok(AuthResult::Ok("carol@example.test".into()))
        );
        assert_eq!(
            a(r#"{"result":"ok"}"#).auth_result("carol"),
            Ok(AuthResult::Ok("carol".into()))
        );
        assert_eq!(
            a(r#"{"result":"invalid"}"#).auth_result("c"),
            Ok(AuthResult::Invalid)
        );
        assert_eq!(
            a(r#"{"result":"unknown"}"#).auth_result("c"),
            Ok(AuthResult::Unknown)
        );
        assert!(matches!(
            a(r#"{"result":"tempfail"}"#).auth_result("c"),
            Ok(AuthResult::Tempfail(_))
        ));
        assert!(a(r#"{"result":"maybe"}"#).auth_result("c").is_err());
        assert!(Answer::parse(500, b"{}").is_err());
        assert!(Answer::parse(200, b"<html>").is_err());
        assert_eq!(
            a(r#"{"result":"exists"}"#).recipient_exists(),
            Ok(Some(true))
        );
        assert_eq!(
            a(r#"{"result":"unknown"}"#).recipient_exists(),
            Ok(Some(false))
        );
        assert_eq!(a(r#"{"result":"tempfail"}"#).recipient_exists(), Ok(None));
    }

    #[test]
    fn cache_keys_hide_the_password_and_differ_per_pair() {
        let k = credentials_key("carol", "secret");
        assert!(!k.contains("secret") && !k.contains("carol"));
        assert_ne!(k, credentials_key("carol", "secret2"));
        assert_ne!(credentials_key("a", "b\0c"), credentials_key("a\0b", "c"));
        assert_eq!(k, credentials_key("carol", "secret"));
    }

    #[test]
    fn recipient_domains_limit_the_check() {
        let s: Settings = mailwit_plugin::config::parse(
            "recipients_url = \"http://127.0.0.1:1/rcpt\"\nrecipient_domains = [\"example.test\"]",
        )
        .unwrap();
        assert!(s.checks_recipient("bob@Example.test"));
        assert!(!s.checks_recipient("bob@elsewhere.test"));
    }
}
