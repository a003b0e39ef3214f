//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, with or without an initial
//! response, and CRAM-MD5 (RFC 2195) where the listener enables it. The session decodes the
//! exchange; the engine checks the credentials.
//!
//! Offered only where allowed: PLAIN and LOGIN in plaintext only with `auth_plaintext` (else 538
//! 5.7.11). CRAM-MD5 never sends the password, so a listener with `cram_md5` offers it without
//! TLS too (it is weak all the same: see `crate::auth::cram`). Its challenge is
//! `<seed.attempt@hostname>`, the seed unique per session (from the engine: no clocks or
//! randomness in here). A cancelled exchange (`*`) gets 501 5.7.0, bad base64 501 5.5.2. Each
//! refused attempt with a 5xx counts; at `max_auth_failures` the session ends with 421 4.7.0.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::events::Credentials;
use super::events::{Answer, Event};
use super::reply::{self, push_reply};
use super::session::{Pending, Phase, SaslStep, Session};

/// "Username:" and "Password:" in base64, the de-facto LOGIN prompts.
const LOGIN_USERNAME_PROMPT: &[u8] = b"334 VXNlcm5hbWU6\r\n";
const LOGIN_PASSWORD_PROMPT: &[u8] = b"334 UGFzc3dvcmQ6\r\n";

impl Session {
    pub(super) fn cmd_auth(&mut self, mechanism: &str, initial: Option<&str>) -> Option<Event> {
        let cram = mechanism.eq_ignore_ascii_case("CRAM-MD5");
        // Not offered: CRAM-MD5 is then unknown here (504), any other mechanism needs TLS (538).
        let (offered, not_offered) = if cram {
            (self.cram_offered(), reply::AUTH_UNKNOWN_MECHANISM)
        } else {
            (self.auth_offered(), reply::ENCRYPTION_REQUIRED)
        };
        self.guard(&[
            (!self.config.auth, reply::NOT_IMPLEMENTED),
            (self.helo.is_none(), reply::SEND_HELO_FIRST),
            (!offered, not_offered),
            (self.authenticated.is_some(), reply::ALREADY_AUTHENTICATED),
            (self.transaction.is_some(), reply::AUTH_IN_TRANSACTION),
        ])?;
        if mechanism.eq_ignore_ascii_case("PLAIN") {
            match initial {
                Some(response) => self.plain_response(response.as_bytes()),
                None => {
                    // RFC 4954 §4: an empty challenge is "334 " with a space.
                    self.output.extend_from_slice(b"334 \r\n");
                    self.phase = Phase::Sasl(SaslStep::PlainResponse);
                    None
                }
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            match initial {
                Some(username) => self.login_username(username.as_bytes()),
                None => {
                    self.output.extend_from_slice(LOGIN_USERNAME_PROMPT);
                    self.phase = Phase::Sasl(SaslStep::LoginUsername);
                    None
                }
            }
        } else if cram {
            // RFC 2195: the server speaks first; an initial response is a protocol error.
            self.guard(&[(initial.is_some(), reply::AUTH_MALFORMED)])?;
            self.cram_attempts += 1;
            let challenge = format!(
                "<{}.{}@{}>",
                self.cram_seed, self.cram_attempts, self.config.hostname
            );
            self.output.extend_from_slice(b"334 ");
            self.output
                .extend_from_slice(BASE64.encode(challenge.as_bytes()).as_bytes());
            self.output.extend_from_slice(b"\r\n");
            self.phase = Phase::Sasl(SaslStep::CramResponse { challenge });
            None
        } else {
            self.fail(reply::AUTH_UNKNOWN_MECHANISM);
            None
        }
    }

    /// CRAM-MD5: base64 of "username SP 32-hex-digest".
    fn cram_response(&mut self, challenge: String, response: &[u8]) -> Option<Event> {
        let text = self.decode_text(response)?;
        let Some((user, digest)) = text.rsplit_once(' ') else {
            self.fail(reply::AUTH_MALFORMED);
            return None;
        };
        if user.is_empty() || digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.fail(reply::AUTH_MALFORMED);
            return None;
        }
        self.submit(Credentials {
            mechanism: "CRAM-MD5".into(),
            authzid: String::new(),
            authcid: user.into(),
            secret: digest.to_ascii_lowercase(),
            challenge: Some(challenge),
        })
    }

    /// A response line during the exchange.
    pub(super) fn sasl_line(&mut self, line: &[u8]) -> Option<Event> {
        let Phase::Sasl(step) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return None;
        };
        if line == b"*" {
            self.fail(reply::AUTH_CANCELLED);
            return None;
        }
        match step {
            SaslStep::PlainResponse => self.plain_response(line),
            SaslStep::LoginUsername => self.login_username(line),
            SaslStep::LoginPassword { username } => {
                let password = self.decode_text(line)?;
                self.submit(Credentials {
                    mechanism: "LOGIN".into(),
                    authzid: String::new(),
                    authcid: username,
                    secret: password,
                    challenge: None,
                })
            }
            SaslStep::CramResponse { challenge } => self.cram_response(challenge, line),
        }
    }

    /// PLAIN: base64 of "authzid NUL authcid NUL passwd"; "=" is an empty response.
    fn plain_response(&mut self, response: &[u8]) -> Option<Event> {
        if response == b"*" {
            self.fail(reply::AUTH_CANCELLED);
            return None;
        }
        let decoded = self.decode(response)?;
        let mut fields = decoded.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            self.fail(reply::AUTH_MALFORMED);
            return None;
        };
        let (Ok(authzid), Ok(authcid), Ok(secret)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(authcid),
            std::str::from_utf8(secret),
        ) else {
            self.fail(reply::AUTH_MALFORMED);
            return None;
        };
        if authcid.is_empty() {
            self.fail(reply::AUTH_MALFORMED);
            return None;
        }
        self.submit(Credentials {
            mechanism: "PLAIN".into(),
            authzid: authzid.into(),
            authcid: authcid.into(),
            secret: secret.into(),
            challenge: None,
        })
    }

    fn login_username(&mut self, response: &[u8]) -> Option<Event> {
        if response == b"*" {
            self.fail(reply::AUTH_CANCELLED);
            return None;
        }
        let username = self.decode_text(response)?;
        if username.is_empty() {
            self.fail(reply::AUTH_MALFORMED);
            return None;
        }
        self.output.extend_from_slice(LOGIN_PASSWORD_PROMPT);
        self.phase = Phase::Sasl(SaslStep::LoginPassword { username });
        None
    }

    fn decode(&mut self, response: &[u8]) -> Option<Vec<u8>> {
        if response == b"=" {
            return Some(Vec::new());
        }
        match BASE64.decode(response) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                self.fail(reply::AUTH_BAD_BASE64);
                None
            }
        }
    }

    fn decode_text(&mut self, response: &[u8]) -> Option<String> {
        let bytes = self.decode(response)?;
        match String::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => Some(text),
            _ => {
                self.fail(reply::AUTH_MALFORMED);
                None
            }
        }
    }

    fn submit(&mut self, credentials: Credentials) -> Option<Event> {
        self.phase = Phase::Pending(Pending::Auth {
            authcid: credentials.authcid.clone(),
        });
        Some(Event::Auth(credentials))
    }

    pub(super) fn auth_answered(&mut self, authcid: String, answer: Answer) {
        match answer {
            Answer::Authenticated(identity) => {
                self.authenticated = Some(identity);
                reply::push_static(&mut self.output, reply::AUTH_OK);
            }
            Answer::Accept => {
                self.authenticated = Some(authcid);
                reply::push_static(&mut self.output, reply::AUTH_OK);
            }
            Answer::Refuse(reply) => {
                push_reply(&mut self.output, &reply);
                if reply.code >= 500 {
                    self.auth_failed();
                }
            }
            // Not an answer to AUTH: fail closed.
            Answer::AcceptAs(_) | Answer::Queued(_) | Answer::Disconnect(_) => {
                reply::push_static(&mut self.output, reply::AUTH_FAILED);
                self.auth_failed();
            }
        }
    }

    fn auth_failed(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            self.push_with_host(reply::TOO_MANY_AUTH_FAILURES);
            self.close();
        }
    }
}
