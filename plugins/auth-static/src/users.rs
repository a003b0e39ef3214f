//! The users table and the credential check: pure logic, tested natively.

use std::collections::BTreeMap;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use mailwit_plugin::types::AuthResult;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnknownUser {
    /// A user not in the table fails authentication (535 5.7.8).
    #[default]
    Invalid,
    /// A user not in the table is left to the next auth backend.
    Unknown,
}

/// The plugin's `config` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// user name -> argon2 PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub users: BTreeMap<String, String>,
    pub on_unknown_user: OnUnknownUser,
    /// Whether user names compare case-insensitively (they are returned as configured).
    #[serde(default = "yes")]
    pub case_insensitive: bool,
}

fn yes() -> bool {
    true
}

pub struct Users {
    settings: Settings,
}

impl Users {
    /// Checks every hash once, so a typo fails the configuration rather than one user's login.
    pub fn new(settings: Settings) -> Result<Users, String> {
        for (user, phc) in &settings.users {
            PasswordHash::new(phc).map_err(|e| {
                format!("the password hash of {user:?} is not an argon2 PHC string: {e}")
            })?;
            if !phc.starts_with("$argon2") {
                return Err(format!(
                    "the password hash of {user:?} is not an argon2 hash"
                ));
            }
        }
        Ok(Users { settings })
    }

    fn find(&self, authcid: &str) -> Option<(&str, &str)> {
        self.settings
            .users
            .iter()
            .find(|(user, _)| {
                if self.settings.case_insensitive {
                    user.eq_ignore_ascii_case(authcid)
                } else {
                    *user == authcid
                }
            })
            .map(|(user, phc)| (user.as_str(), phc.as_str()))
    }

    /// `authzid` must be empty or name the same user: this backend grants no proxy rights.
    pub fn check(&self, authzid: &str, authcid: &str, secret: &str) -> AuthResult {
        let Some((user, phc)) = self.find(authcid) else {
            // Spend the same work as for a known user, so response time does not tell which
            // user names exist.
            if let Some(phc) = self.settings.users.values().next() {
                let _ = verify(phc, "\u{0}not-a-password");
            }
            return match self.settings.on_unknown_user {
                OnUnknownUser::Invalid => AuthResult::Invalid,
                OnUnknownUser::Unknown => AuthResult::Unknown,
            };
        };
        let same_user = authzid.is_empty()
            || authzid == authcid
            || (self.settings.case_insensitive && authzid.eq_ignore_ascii_case(authcid));
        let proxy = !same_user;
        if verify(phc, secret) && !proxy {
            AuthResult::Ok(user.to_string())
        } else {
            AuthResult::Invalid
        }
    }
}

fn verify(phc: &str, secret: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{Algorithm, Params, PasswordHasher, Version};

    /// A cheap hash (8 MiB is too slow for a unit test in debug builds; 64 KiB is plenty here).
    fn hash(password: &str) -> String {
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        argon
            .hash_password_with_salt(password.as_bytes(), b"saltsaltsaltsalt")
            .unwrap()
            .to_string()
    }

    fn users(extra: &str) -> Users {
        let text = format!(
            "users = {{ \"alice@example.test\" = \"{}\" }}\n{extra}",
            hash("wonderland")
        );
        Users::new(mailwit_plugin::config::parse(&text).unwrap()).unwrap()
    }

    #[test]
    fn right_password_authenticates_as_the_configured_name() {
        let u = users("");
        assert_eq!(
            u.check("", "alice@example.test", "wonderland"),
            AuthResult::Ok("alice@example.test".into())
        );
        assert_eq!(
            u.check("", "Alice@Example.Test", "wonderland"),
            AuthResult::Ok("alice@example.test".into())
        );
        assert_eq!(
            u.check("alice@example.test", "alice@example.test", "wonderland"),
            AuthResult::Ok("alice@example.test".into())
        );
    }

    #[test]
    fn wrong_password_proxy_and_unknown_users_fail() {
        let u = users("");
        assert_eq!(
            u.check("", "alice@example.test", "Wonderland"),
            AuthResult::Invalid
        );
        assert_eq!(u.check("", "alice@example.test", ""), AuthResult::Invalid);
        assert_eq!(
            u.check("bob@example.test", "alice@example.test", "wonderland"),
            AuthResult::Invalid
        );
        assert_eq!(
            u.check("", "bob@example.test", "wonderland"),
            AuthResult::Invalid
        );
        let passing = users("on_unknown_user = \"unknown\"");
        assert_eq!(
            passing.check("", "bob@example.test", "x"),
            AuthResult::Unknown
        );
        let strict = users("case_insensitive = false");
        assert_eq!(
            strict.check("", "Alice@example.test", "wonderland"),
            AuthResult::Invalid
        );
    }

    #[test]
    fn malformed_hashes_fail_the_configuration() {
        let bad =
            mailwit_plugin::config::parse::<Settings>("users = { \"a\" = \"plaintext\" }").unwrap();
        assert!(Users::new(bad).err().unwrap().contains("\"a\""));
        let bcrypt = mailwit_plugin::config::parse::<Settings>(
            "users = { \"a\" = \"$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW\" }",
        )
        .unwrap();
        assert!(Users::new(bcrypt).is_err());
    }
}
