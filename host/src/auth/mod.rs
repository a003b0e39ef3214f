//! The built-in credential backend: a users file of `user:argon2-PHC-hash` lines, and
//! `user:{CRAM-MD5}hex` lines for CRAM-MD5 (see [`cram`]; a user may have one of each).
//!
//! It answers only when no auth plugin knew the user (`AuthResult::Unknown`), so the quickstart
//! works without plugins; for CRAM-MD5 the plugins asked first are those that export
//! `auth-challenge`. Hashes are argon2 PHC strings (`$argon2id$v=19$m=...`), made with
//! `mailwit hash-password`. Verification is deliberately slow (argon2), so it runs on tokio's
//! blocking pool, and unknown users are verified against a dummy hash so that the time taken
//! does not reveal which users exist.

pub mod cram;

pub use cram::CramSecret;

use crate::policy::{AuthResult, Credentials};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Users and their password hashes. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct UserDb {
    users: Arc<HashMap<String, String>>,
    /// CRAM-MD5 secrets (HMAC-MD5 contexts), for users that have one.
    cram: Arc<HashMap<String, CramSecret>>,
}

impl std::fmt::Debug for UserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDb")
            .field("users", &self.users.len())
            .finish()
    }
}

impl UserDb {
    /// Reads a users file.
    pub fn load(path: &Path) -> anyhow::Result<UserDb> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read users file: {e}", path.display()))?;
        Self::parse(text.lines()).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
    }

    /// Parses `user:hash` lines; blank lines and `#` comments are skipped. User names compare
    /// case-insensitively. Errors are `line: message`.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> anyhow::Result<UserDb> {
        let mut users = HashMap::new();
        let mut cram = HashMap::new();
        for (n, line) in lines.into_iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                anyhow::bail!("{}: expected user:argon2-hash", n + 1);
            };
            if hash.starts_with(cram::SCHEME) {
                let Some(secret) = CramSecret::parse(hash) else {
                    anyhow::bail!("{}: {user}: {{CRAM-MD5}} needs 64 hex digits", n + 1);
                };
                cram.insert(user.to_ascii_lowercase(), secret);
                continue;
            }
            if PasswordHash::new(hash).is_err() {
                anyhow::bail!("{}: {user}: not a PHC password hash", n + 1);
            }
            users.insert(user.to_ascii_lowercase(), hash.to_string());
        }
        Ok(UserDb {
            users: Arc::new(users),
            cram: Arc::new(cram),
        })
    }

    /// Users with a password hash, a CRAM-MD5 secret or both.
    pub fn len(&self) -> usize {
        self.users.len()
            + self
                .cram
                .keys()
                .filter(|u| !self.users.contains_key(*u))
                .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// CRAM-MD5: `secret` is the client's hex digest of `challenge`. `Unknown` for a user
    /// without a CRAM-MD5 line (another backend may know it), `Invalid` for a wrong digest.
    pub fn check_cram(&self, user: &str, challenge: &str, digest: &str) -> AuthResult {
        let user = user.to_ascii_lowercase();
        match self.cram.get(&user) {
            None => AuthResult::Unknown,
            Some(secret) if secret.verify(challenge.as_bytes(), digest) => AuthResult::Ok(user),
            Some(_) => AuthResult::Invalid,
        }
    }

    /// Checks credentials: `Ok(identity)`, `Invalid` for a wrong password or a foreign authzid,
    /// `Unknown` for a user not in the file.
    pub async fn check(&self, credentials: &Credentials) -> AuthResult {
        if let Some(challenge) = &credentials.challenge {
            return self.check_cram(&credentials.authcid, challenge, &credentials.secret);
        }
        let user = credentials.authcid.to_ascii_lowercase();
        let known = self.users.get(&user).cloned();
        // Acting as someone else (authzid) is not something the users file can grant.
        let foreign_authzid = !credentials.authzid.is_empty()
            && !credentials
                .authzid
                .eq_ignore_ascii_case(&credentials.authcid);
        let secret = credentials.secret.clone();
        let hash = known.clone().unwrap_or_else(|| dummy_hash().to_string());
        let verified = tokio::task::spawn_blocking(move || verify_password(&secret, &hash))
            .await
            .unwrap_or(false);
        match known {
            None => AuthResult::Unknown,
            Some(_) if verified && !foreign_authzid => AuthResult::Ok(user),
            Some(_) => AuthResult::Invalid,
        }
    }
}

/// Whether `password` matches the PHC `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Hashes a password with argon2id (default parameters) and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// A hash of nothing anyone knows, so an unknown user costs as much time as a known one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("\u{0}mailwit-dummy\u{0}").expect("argon2 hashes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(authzid: &str, user: &str, secret: &str) -> Credentials {
        Credentials {
            mechanism: "PLAIN".into(),
            authzid: authzid.into(),
            authcid: user.into(),
            secret: secret.into(),
            challenge: None,
        }
    }

    #[tokio::test]
    async fn cram_md5_lines_answer_challenges() {
        let secret = CramSecret::from_password("tanstaaftanstaaf");
        let text = format!("tim:{}\n", secret.encode());
        let db = UserDb::parse(text.lines()).unwrap();
        assert_eq!(db.len(), 1);
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        let cram = |user: &str, digest: &str| Credentials {
            mechanism: "CRAM-MD5".into(),
            authzid: String::new(),
            authcid: user.into(),
            secret: digest.into(),
            challenge: Some(challenge.into()),
        };
        assert_eq!(
            db.check(&cram("Tim", "b913a602c7eda7a495b4e6e7334d3890"))
                .await,
            AuthResult::Ok("tim".into())
        );
        assert_eq!(
            db.check(&cram("tim", "00000000000000000000000000000000"))
                .await,
            AuthResult::Invalid
        );
        assert_eq!(
            db.check(&cram("carol", "b913a602c7eda7a495b4e6e7334d3890"))
                .await,
            AuthResult::Unknown
        );
        assert!(UserDb::parse(["tim:{CRAM-MD5}00"]).is_err());
    }

    #[tokio::test]
    async fn users_file_checks_passwords() {
        let hash = hash_password("s3cret").unwrap();
        let line = format!("# comment\n\nAlice@Example.test:{hash}\n");
        let db = UserDb::parse(line.lines()).unwrap();
        assert_eq!(db.len(), 1);
        assert_eq!(
            db.check(&creds("", "alice@example.test", "s3cret")).await,
            AuthResult::Ok("alice@example.test".into())
        );
        assert_eq!(
            db.check(&creds("", "alice@example.test", "wrong")).await,
            AuthResult::Invalid
        );
        assert_eq!(
            db.check(&creds("bob@example.test", "alice@example.test", "s3cret"))
                .await,
            AuthResult::Invalid
        );
        assert_eq!(
            db.check(&creds("", "carol@example.test", "s3cret")).await,
            AuthResult::Unknown
        );
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(UserDb::parse(["alice"]).is_err());
        assert!(UserDb::parse(["alice:plaintext"]).is_err());
    }

    #[test]
    fn quickstart_users_verify() {
        let db = UserDb::parse(crate::config::QUICKSTART_USERS.lines()).unwrap();
        let hash = db.users.get("alice@example.test").unwrap();
        assert!(verify_password("alice-secret", hash));
    }
}
