//! Configuration of SMTP TLS reporting (RFC 8460) for outbound delivery (`[tls_rpt]`).
//!
//! ```toml
//! [tls_rpt]
//! enabled = true                 # record outbound TLS results and send daily reports
//! interval = "1d"                # report period (periods start at multiples of it, UTC)
//! organization = "Example Org"   # "organization-name" of the reports
//! contact = "tls-reports@example.org"   # "contact-info"; default postmaster@<hostname>
//! from = "tls-reports@example.org"      # From of report mail; default contact
//! submitter = "mail.example.org" # TLS-Report-Submitter; default [server] hostname
//! timeout = "30s"                # HTTPS report upload (connect, TLS, request, response)
//! retry_for = "1d"               # a failed upload (or queueing) is retried, with backoff from
//!                                # min(interval/2, 60s) doubling to 1h, for this long
//! ca_file = "ca.pem"             # CA certificates trusted for https: report URIs besides the
//!                                # system roots (private PKI, tests)
//! ```

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsRptConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::queue::duration")]
    pub interval: Duration,
    pub organization: Option<String>,
    pub contact: Option<String>,
    pub from: Option<String>,
    pub submitter: Option<String>,
    #[serde(deserialize_with = "super::queue::duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "super::queue::duration")]
    pub retry_for: Duration,
    pub ca_file: Option<PathBuf>,
}

impl Default for TlsRptConfig {
    fn default() -> Self {
        TlsRptConfig {
            enabled: false,
            interval: Duration::from_secs(86_400),
            organization: None,
            contact: None,
            from: None,
            submitter: None,
            timeout: Duration::from_secs(30),
            retry_for: Duration::from_secs(86_400),
            ca_file: None,
        }
    }
}

impl TlsRptConfig {
    /// The reporting period: at least one second.
    pub fn period_secs(&self) -> u64 {
        self.interval.as_secs().max(1)
    }
}
