//! `auth-static`: AUTH PLAIN/LOGIN against a table of users and argon2 password hashes held in the
//! plugin's configuration (plugins have no filesystem):
//!
//! ```toml
//! [plugins.auth.config]
//! users = { "alice@example.test" = "$argon2id$v=19$m=19456,t=2,p=1$…" }
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

mailwit_plugin::export!(AuthStatic: auth);
