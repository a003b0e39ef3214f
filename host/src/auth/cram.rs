//! CRAM-MD5 (RFC 2195) secrets: the HMAC-MD5 precomputed state, never the password.
//!
//! HMAC-MD5(key, m) = MD5((key ^ opad) || MD5((key ^ ipad) || m)). The two 64-octet pad blocks
//! depend on the password only, so a users file keeps the MD5 chaining values after each of
//! them (the "inner" and "outer" contexts) and finishes both hashes per challenge. The stored
//! form is Dovecot's `{CRAM-MD5}` scheme: 64 hex digits, the outer context's four words then the
//! inner one's, each little-endian, so `doveadm pw -s CRAM-MD5` output works here too.
//!
//! Why this is weak, and offered only on the odmr listener by default: the stored contexts are
//! password-equivalent for CRAM-MD5 (whoever reads the users file can log in with them, unlike
//! an argon2 hash), MD5 contexts of a short password fall quickly to a dictionary once a
//! challenge and its response were sniffed, and the mechanism authenticates only the client,
//! not the server or the rest of the session. It exists because ODMR clients (fetchmail's
//! `protocol odmr`) speak nothing else.

use md5::Digest as _;
use md5::Md5;
use md5::digest::common::hazmat::SerializableState;

/// The precomputed HMAC-MD5 contexts of one password.
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

/// The prefix of the stored form in a users file.
pub const SCHEME: &str = "{CRAM-MD5}";

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

    /// Parses `{CRAM-MD5}` followed by 64 hex digits (the prefix is optional).
    pub fn parse(text: &str) -> Option<CramSecret> {
        let hex = text.strip_prefix(SCHEME).unwrap_or(text);
        let bytes = decode_hex(hex)?;
        let (outer, inner) = bytes.split_at(16);
        Some(CramSecret {
            inner: inner.try_into().ok()?,
            outer: outer.try_into().ok()?,
        })
    }

    /// The users-file form: `{CRAM-MD5}` and 64 hex digits.
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

    /// Whether `digest` (hex, any case) is the right response to `challenge`, compared in
    /// constant time.
    pub fn verify(&self, challenge: &[u8], digest: &str) -> bool {
        let expected = self.response(challenge);
        let given = digest.to_ascii_lowercase();
        expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// An MD5 hasher that has consumed exactly one 64-octet block whose chaining value is `words`.
/// The serialized state is the four state words, the block count, then the (empty) buffer; a
/// fresh hasher's serialization supplies the buffer part.
fn resume(words: &[u8; 16]) -> Md5 {
    let mut state = Md5::new().serialize();
    state[..16].copy_from_slice(words);
    state[16..24].copy_from_slice(&1u64.to_le_bytes());
    Md5::deserialize(&state).expect("a well-formed MD5 state")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2195 §2's example: tim / tanstaaftanstaaf.
    #[test]
    fn rfc2195_example() {
        let secret = CramSecret::from_password("tanstaaftanstaaf");
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(
            secret.response(challenge),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
        assert!(secret.verify(challenge, "B913A602C7EDA7A495B4E6E7334D3890"));
        assert!(!secret.verify(challenge, "b913a602c7eda7a495b4e6e7334d3891"));
        assert!(!secret.verify(challenge, "b913"));
    }

    /// RFC 2104's test vector 2 (key "Jefe") through the stored form.
    #[test]
    fn stored_form_round_trips() {
        let secret = CramSecret::from_password("Jefe");
        let stored = secret.encode();
        assert!(stored.starts_with(SCHEME) && stored.len() == SCHEME.len() + 64);
        let parsed = CramSecret::parse(&stored).unwrap();
        assert_eq!(parsed, secret);
        assert_eq!(
            parsed.response(b"what do ya want for nothing?"),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert!(CramSecret::parse("{CRAM-MD5}abc").is_none());
        assert!(CramSecret::parse(&"z".repeat(64)).is_none());
    }

    /// A fresh hasher and one that consumed one whole block have the same (empty) buffer part,
    /// which `resume` relies on.
    #[test]
    fn one_block_leaves_the_buffer_empty() {
        let fresh = Md5::new().serialize();
        let mut md5 = Md5::new();
        md5.update([0u8; 64]);
        let after = md5.serialize();
        assert_eq!(fresh[24..], after[24..]);
    }

    #[test]
    fn long_passwords_are_hashed_first() {
        let long = "x".repeat(100);
        let a = CramSecret::from_password(&long);
        assert_ne!(a, CramSecret::from_password(&"x".repeat(64)));
        assert_eq!(a.response(b"c").len(), 32);
    }
}
