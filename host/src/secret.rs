//! A string that must never be printed: a smarthost password, from the configuration file to the
//! AUTH command. `Debug` shows `"<redacted>"`, so logging a config or a client config cannot leak
//! it; `expose()` is the one way to the text, and its callers are the places that send it.

use serde::Deserialize;
use std::fmt;

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Secret(text.to_string())
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Secret(text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Credentials {
        password: Secret,
    }

    #[test]
    fn debug_never_shows_the_text() {
        let parsed: Credentials = toml::from_str("password = \"s3cret pw\"").unwrap();
        assert_eq!(parsed.password.expose(), "s3cret pw");
        assert_eq!(
            format!("{parsed:?}"),
            "Credentials { password: \"<redacted>\" }"
        );
    }
}
