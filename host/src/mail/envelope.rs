//! The SMTP envelope: MAIL FROM and RCPT TO with their ESMTP parameters (RFC 5321, RFC 6152
//! BODY, RFC 6531 SMTPUTF8, RFC 3461 DSN). The spool stores these types as they are.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DsnRet {
    Full,
    Hdrs,
}

/// RFC 3461 NOTIFY. `None` on a recipient means the client did not say; all false means NEVER.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// MAIL FROM with its parameters. `address` is empty for the null reverse-path `<>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversePath {
    pub address: String,
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    pub ret: Option<DsnRet>,
    pub envid: Option<String>,
}

/// RCPT TO with its parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub notify: Option<Notify>,
    /// ORCPT as given, e.g. "rfc822;bob@example.test".
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub reverse_path: ReversePath,
    pub recipients: Vec<Recipient>,
}
