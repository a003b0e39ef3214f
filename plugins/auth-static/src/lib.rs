//! `auth-static`: AUTH PLAIN/LOGIN against a table of users and argon2 password hashes held in the
//! plugin's configuration (plugins have no filesystem), and AUTH CRAM-MD5 (the `auth_challenge`
//! hook) against `{CRAM-MD5}` secrets in the same table:
//!
//! ```toml
//! [plugins.auth.config]
//! users = { "alice@example.test" = ["$argon2id$v=19$m=19456,t=2,p=1$…", "{CRAM-MD5}…"] }
//! ```

mod users;

use std::sync::OnceLock;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{config, log};
use users::{Settings, Users};

struct AuthStatic;

/// Parsed (and every hash checked) once per instance, i.e. once per SMTP session.
fn users() -> &'static Result<Users, String> {
    static USERS: OnceLock<Result<Users, String>> = OnceLock::new();
    USERS.get_or_init(|| {
        config::load::<Settings>()
            .map_err(|e| e.to_string())
            .and_then(Users::new)
    })
}

impl AuthHook for AuthStatic {
    fn check(_session: SessionInfo, credentials: Credentials) -> AuthResult {
        match users() {
            Ok(users) => users.check(
                &credentials.authzid,
                &credentials.authcid,
                &credentials.secret,
            ),
            Err(error) => {
                log::error(&format!("auth-static: {error}"));
                AuthResult::Tempfail("auth-static: configuration error".into())
            }
        }
    }
}

impl AuthChallengeHook for AuthStatic {
    fn check_response(_session: SessionInfo, credentials: ChallengeResponse) -> ChallengeResult {
        if !credentials.mechanism.eq_ignore_ascii_case("CRAM-MD5") {
            return ChallengeResult::Unknown;
        }
        match users() {
            Ok(users) => match users.check_cram(
                &credentials.authcid,
                &credentials.challenge,
                &credentials.response,
            ) {
                AuthResult::Ok(identity) => ChallengeResult::Ok(identity),
                AuthResult::Invalid => ChallengeResult::Invalid,
                AuthResult::Unknown => ChallengeResult::Unknown,
                AuthResult::Tempfail(why) => ChallengeResult::Tempfail(why),
            },
            Err(error) => {
                log::error(&format!("auth-static: {error}"));
                ChallengeResult::Tempfail("auth-static: configuration error".into())
            }
        }
    }
}

mailwit_plugin::export!(AuthStatic: auth, auth_challenge);
