//! CRAM-MD5 (RFC 2195) secrets for a plugin that answers the `auth_challenge` hook: the
//! precomputed HMAC-MD5 state of a password, never the password itself, in the users file's
//! form `{CRAM-MD5}` + 64 hex digits (Dovecot's scheme; `mailwit hash-password --cram-md5` makes
//! it). With it a plugin checks a client's response itself, with no crypto of its own and no host
//! import: the secret stays in the plugin that owns it.
//!
//! ```
//! use mailwit_plugin::cram_md5::CramSecret;
//!
//! let stored = CramSecret::from_password("tanstaaftanstaaf").encode(); // what the config holds
//! let secret = CramSecret::parse(&stored).unwrap();
//! let challenge = "<1896.697170952@postoffice.reston.mci.net>";
//! assert!(secret.verify(challenge, "b913a602c7eda7a495b4e6e7334d3890"));
//! ```
//!
//! It is weak: the stored state is password-equivalent for CRAM-MD5 (whoever reads it can log
//! in), and a sniffed challenge and response allow an offline dictionary attack at MD5 speed.

use md5::Digest as _;
use md5::Md5;
use md5::digest::common::hazmat::SerializableState;

/// The prefix of the stored form.
pub const SCHEME: &str = "{CRAM-MD5}";

/// The precomputed HMAC-MD5 contexts (inner and outer) of one password.
#[derive(Clone, PartialEq, Eq)]
pub struct CramSecret {
    inner: [u8; 16],
    outer: [u8; 16],
}

impl std::fmt::Debug for CramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CramSecret(..)")
    }
}

impl CramSecret {
    /// The contexts for `password` (RFC 2104: keys longer than 64 octets are hashed first).
    pub fn from_password(password: &str) -> CramSecret {
        let mut key = [0u8; 64];
        let bytes = password.as_bytes();
        if bytes.len() > 64 {
            key[..16].copy_from_slice(&Md5::digest(bytes));
        } else {
            key[..bytes.len()].copy_from_slice(bytes);
        }
        let context = |pad: u8| {
            let block: Vec<u8> = key.iter().map(|b| b ^ pad).collect();
            let mut md5 = Md5::new();
            md5.update(&block);
            let state = md5.serialize();
            let mut words = [0u8; 16];
            words.copy_from_slice(&state[..16]);
            words
        };
        CramSecret {
            inner: context(0x36),
            outer: context(0x5c),
        }
    }

    /// `{CRAM-MD5}` followed by 64 hex digits (the prefix is optional): the outer context's
    /// four words, then the inner one's, each little-endian.
    pub fn parse(text: &str) -> Option<CramSecret> {
        let hex = text.strip_prefix(SCHEME).unwrap_or(text);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<_>>()?;
        let (outer, inner) = bytes.split_at(16);
        Some(CramSecret {
            inner: inner.try_into().ok()?,
            outer: outer.try_into().ok()?,
        })
    }

    /// The stored form: `{CRAM-MD5}` and 64 lowercase hex digits.
    pub fn encode(&self) -> String {
        let mut out = String::from(SCHEME);
        for b in self.outer.iter().chain(&self.inner) {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// HMAC-MD5 of `challenge`, as the 32 lowercase hex digits a client sends back.
    pub fn response(&self, challenge: &[u8]) -> String {
        let mut inner = resume(&self.inner);
        inner.update(challenge);
        let inner_digest = inner.finalize();
        let mut outer = resume(&self.outer);
        outer.update(inner_digest);
        outer
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `response` (hex, any case) answers `challenge`, compared in constant time.
    pub fn verify(&self, challenge: &str, response: &str) -> bool {
        let expected = self.response(challenge.as_bytes());
        let given = response.to_ascii_lowercase();
        expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Whether `stored` (the `{CRAM-MD5}` form) is well formed and `response` answers `challenge`.
pub fn verify(stored: &str, challenge: &str, response: &str) -> bool {
    CramSecret::parse(stored).is_some_and(|secret| secret.verify(challenge, response))
}

/// An MD5 hasher that has consumed one 64-octet block whose chaining value is `words`: the
/// serialized state is the four words, the block count, then the (empty) buffer, which a fresh
/// hasher's serialization supplies.
fn resume(words: &[u8; 16]) -> Md5 {
    let mut state = Md5::new().serialize();
    state[..16].copy_from_slice(words);
    state[16..24].copy_from_slice(&1u64.to_le_bytes());
    Md5::deserialize(&state).expect("a well-formed MD5 state")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2195 §2's example (tim / tanstaaftanstaaf) and RFC 2104's test vector 2, through the
    /// stored form; the same vectors as the host's users file (`host/src/auth/cram.rs`).
    #[test]
    fn rfc_vectors_through_the_stored_form() {
        let stored = CramSecret::from_password("tanstaaftanstaaf").encode();
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        assert!(verify(
            &stored,
            challenge,
            "b913a602c7eda7a495b4e6e7334d3890"
        ));
        assert!(verify(
            &stored,
            challenge,
            "B913A602C7EDA7A495B4E6E7334D3890"
        ));
        assert!(!verify(
            &stored,
            challenge,
            "b913a602c7eda7a495b4e6e7334d3891"
        ));
        assert!(!verify(&stored, challenge, "b913"));
        let jefe = CramSecret::parse(&CramSecret::from_password("Jefe").encode()).unwrap();
        assert_eq!(
            jefe.response(b"what do ya want for nothing?"),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert!(CramSecret::parse("{CRAM-MD5}abc").is_none());
        assert!(!verify(
            "plaintext",
            challenge,
            "b913a602c7eda7a495b4e6e7334d3890"
        ));
    }
}
