//! `http-auth`: AUTH and recipient existence answered by the operator's HTTP account service.
//!
//! AUTH posts `{"user", "password", "client_ip", "mechanism", "authzid"}` as JSON to `url`; the
//! service answers `{"result": "ok" | "invalid" | "unknown" | "tempfail", "identity"?,
//! "message"?}`. "unknown" passes the user to the next backend (the next auth plugin, then the
//! server's users file); a service that cannot be reached or answers nonsense is a tempfail (454
//! 4.7.0). "ok" and "invalid" are cached in `kv` for a short while under a keyed hash of the
//! credentials (never the password itself). RCPT posts `{"recipient", "client_ip"}` to
//! `recipients_url`: "exists" continues, "unknown" is 550 5.1.1, anything else 451 4.3.0.
//!
//! The password reaches this plugin (and the service) only because the operator put it in the
//! auth pipeline and granted it "http" to that service.

mod service;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, http, kv, log};
use service::{Answer, AuthQuery, RecipientQuery, Settings};

struct HttpAuth;

/// POSTs `body` as JSON to `url` and reads the service's answer.
fn ask(settings: &Settings, url: &str, body: &impl serde::Serialize) -> Result<Answer, String> {
    let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json"),
    ];
    if let Some(value) = &settings.authorization {
        headers.push(("authorization", value.as_str()));
    }
    let response = http::post(url, &headers, &json).map_err(|e| format!("{url}: {e}"))?;
    Answer::parse(response.status, &response.body).map_err(|e| format!("{url}: {e}"))
}

fn cached(key: &str) -> Option<String> {
    kv::get_string(key).ok().flatten()
}

fn remember(key: &str, value: &str, ttl_ms: u64) {
    if ttl_ms > 0
        && let Err(e) = kv::put_str(key, value, Some(ttl_ms))
    {
        log::warn(&format!("http-auth: cannot cache: {e:?}"));
    }
}

impl AuthHook for HttpAuth {
    fn check(session: SessionInfo, credentials: Credentials) -> AuthResult {
        let settings = match config::cached::<Settings>() {
            Ok(s) => s,
            Err(e) => {
                log::error(&format!("http-auth: {e}"));
                return AuthResult::Tempfail("authentication backend misconfigured".into());
            }
        };
        let Some(url) = &settings.url else {
            return AuthResult::Unknown;
        };
        let key = service::credentials_key(&credentials.authcid, &credentials.secret);
        match cached(&key).as_deref() {
            Some("invalid") => return AuthResult::Invalid,
            Some(ok) if ok.starts_with("ok:") => return AuthResult::Ok(ok[3..].to_string()),
            _ => {}
        }
        let query = AuthQuery {
            user: &credentials.authcid,
            password: &credentials.secret,
            client_ip: &session.client_ip,
            mechanism: &credentials.mechanism,
            authzid: &credentials.authzid,
        };
        let result =
            ask(settings, url, &query).and_then(|answer| answer.auth_result(&credentials.authcid));
        match result {
            Ok(AuthResult::Ok(identity)) => {
                remember(&key, &format!("ok:{identity}"), settings.cache_ok_ms);
                AuthResult::Ok(identity)
            }
            Ok(AuthResult::Invalid) => {
                remember(&key, "invalid", settings.cache_invalid_ms);
                AuthResult::Invalid
            }
            Ok(other) => other,
            Err(e) => {
                log::warn(&format!("http-auth: account service failed: {e}"));
                AuthResult::Tempfail("authentication service unavailable, try again later".into())
            }
        }
    }
}

impl RcptHook for HttpAuth {
    fn on_rcpt(session: SessionInfo, _from: ReversePath, recipient: Recipient) -> RcptResult {
        let settings = match config::cached::<Settings>() {
            Ok(s) => s,
            Err(e) => {
                log::error(&format!("http-auth: {e}"));
                return Verdict::misconfigured("http-auth").into();
            }
        };
        let address = recipient.address.to_ascii_lowercase();
        if !settings.checks_recipient(&address) {
            return Verdict::Continue.into();
        }
        let key = format!("rcpt:{address}");
        match cached(&key).as_deref() {
            Some("exists") => return Verdict::Continue.into(),
            Some("unknown") => return service::unknown_recipient(&recipient.address).into(),
            _ => {}
        }
        let url = settings.recipients_url.as_deref().unwrap_or_default();
        let query = RecipientQuery {
            recipient: &address,
            client_ip: &session.client_ip,
        };
        match ask(settings, url, &query).and_then(|a| a.recipient_exists()) {
            Ok(Some(true)) => {
                remember(&key, "exists", settings.cache_recipient_ms);
                Verdict::Continue.into()
            }
            Ok(Some(false)) => {
                remember(&key, "unknown", settings.cache_recipient_ms);
                service::unknown_recipient(&recipient.address).into()
            }
            Ok(None) => service::recipient_tempfail().into(),
            Err(e) => {
                log::warn(&format!("http-auth: recipient check failed: {e}"));
                service::recipient_tempfail().into()
            }
        }
    }
}

mailwit_plugin::export!(HttpAuth: auth, rcpt);
