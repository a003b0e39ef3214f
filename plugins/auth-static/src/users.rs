//! The users table and the credential checks (PLAIN/LOGIN against argon2 hashes, CRAM-MD5
//! against `{CRAM-MD5}` secrets): pure logic, tested natively.

use std::collections::BTreeMap;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use mailwit_plugin::cram_md5::{self, CramSecret};
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
    /// user name -> its secrets: an argon2 PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`)
    /// for PLAIN and LOGIN, a `{CRAM-MD5}` secret for CRAM-MD5, or a list holding one of each.
    pub users: BTreeMap<String, Secrets>,
    pub on_unknown_user: OnUnknownUser,
    /// Whether user names compare case-insensitively (they are returned as configured).
    #[serde(default = "yes")]
    pub case_insensitive: bool,
}

fn yes() -> bool {
    true
}

/// One user's entry: a single secret or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Secrets {
    One(String),
    Many(Vec<String>),
}

impl Secrets {
    fn all(&self) -> &[String] {
        match self {
            Secrets::One(s) => std::slice::from_ref(s),
            Secrets::Many(list) => list,
        }
    }
}

/// A user's checked secrets.
struct Entry {
    name: String,
    argon2: Option<String>,
    cram: Option<CramSecret>,
}

pub struct Users {
    settings: Settings,
    entries: Vec<Entry>,
}

impl Users {
    /// Checks every secret once, so a typo fails the configuration rather than one user's login.
    pub fn new(settings: Settings) -> Result<Users, String> {
        let mut entries = Vec::new();
        for (user, secrets) in &settings.users {
            let mut entry = Entry {
                name: user.clone(),
                argon2: None,
                cram: None,
            };
            for secret in secrets.all() {
                if secret.starts_with(cram_md5::SCHEME) {
                    let parsed = CramSecret::parse(secret).ok_or_else(|| {
                        format!(
                            "the CRAM-MD5 secret of {user:?} is not {{CRAM-MD5}} and 64 hex digits"
                        )
                    })?;
                    if entry.cram.replace(parsed).is_some() {
                        return Err(format!("{user:?} has two CRAM-MD5 secrets"));
                    }
                    continue;
                }
                PasswordHash::new(secret).map_err(|e| {
                    format!("the password hash of {user:?} is not an argon2 PHC string: {e}")
                })?;
                if !secret.starts_with("$argon2") {
                    return Err(format!(
                        "the password hash of {user:?} is not an argon2 hash"
                    ));
                }
                if entry.argon2.replace(secret.clone()).is_some() {
                    return Err(format!("{user:?} has two password hashes"));
                }
            }
            entries.push(entry);
        }
        Ok(Users { settings, entries })
    }

    fn find(&self, authcid: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| {
            if self.settings.case_insensitive {
                entry.name.eq_ignore_ascii_case(authcid)
            } else {
                entry.name == authcid
            }
        })
    }

    /// A user not in the table, or without a secret for the mechanism asked.
    fn unknown(&self) -> AuthResult {
        match self.settings.on_unknown_user {
            OnUnknownUser::Invalid => AuthResult::Invalid,
            OnUnknownUser::Unknown => AuthResult::Unknown,
        }
    }

    /// CRAM-MD5: `response` must be the HMAC-MD5 of `challenge` under the user's stored secret.
    pub fn check_cram(&self, authcid: &str, challenge: &str, response: &str) -> AuthResult {
        match self.find(authcid) {
            Some(Entry {
                name,
                cram: Some(secret),
                ..
            }) => {
                if secret.verify(challenge, response) {
                    AuthResult::Ok(name.clone())
                } else {
                    AuthResult::Invalid
                }
            }
            _ => self.unknown(),
        }
    }

    /// `authzid` must be empty or name the same user: this backend grants no proxy rights.
    pub fn check(&self, authzid: &str, authcid: &str, secret: &str) -> AuthResult {
        let found = self
            .find(authcid)
            .and_then(|entry| Some((entry.name.as_str(), entry.argon2.as_deref()?)));
        let Some((user, phc)) = found else {
            // Spend the same work as for a known user, so response time does not tell which
            // user names exist.
            if let Some(phc) = self.entries.iter().find_map(|e| e.argon2.as_deref()) {
                let _ = verify(phc, "\u{0}not-a-password");
            }
            return self.unknown();
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
    fn cram_md5_secrets_answer_challenges() {
        let cram = CramSecret::from_password("tanstaaftanstaaf").encode();
        let text = format!(
            "users = {{ \"tim\" = \"{cram}\", \"alice@example.test\" = [\"{}\", \"{cram}\"] }}",
            hash("wonderland")
        );
        let u = Users::new(mailwit_plugin::config::parse(&text).unwrap()).unwrap();
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        let digest = "b913a602c7eda7a495b4e6e7334d3890";
        assert_eq!(
            u.check_cram("Tim", challenge, digest),
            AuthResult::Ok("tim".into())
        );
        assert_eq!(
            u.check_cram("tim", challenge, "b913a602c7eda7a495b4e6e7334d3891"),
            AuthResult::Invalid
        );
        // alice has both; tim has no password hash, so PLAIN does not know him.
        assert_eq!(
            u.check_cram("alice@example.test", challenge, digest),
            AuthResult::Ok("alice@example.test".into())
        );
        assert_eq!(
            u.check("", "alice@example.test", "wonderland"),
            AuthResult::Ok("alice@example.test".into())
        );
        assert_eq!(u.check("", "tim", "tanstaaftanstaaf"), AuthResult::Invalid);
        assert_eq!(u.check_cram("bob", challenge, digest), AuthResult::Invalid);
        let bad = mailwit_plugin::config::parse::<Settings>("users = { \"a\" = \"{CRAM-MD5}00\" }")
            .unwrap();
        assert!(Users::new(bad).err().unwrap().contains("CRAM-MD5"));
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
