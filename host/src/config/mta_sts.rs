//! Configuration of MTA-STS (RFC 8461) for outbound delivery (`[mta_sts]`).
//!
//! ```toml
//! [mta_sts]
//! enabled = true          # look up and apply the policies of destination domains
//! timeout = "10s"         # policy fetch (connect, TLS, request, body), each attempt
//! ca_file = "ca.pem"      # CA certificates trusted besides the system roots (policy host and
//!                         # MX certificates); for private PKI and tests
//! https_port = 443        # port of mta-sts.<domain> (other values are for tests)
//! refresh_interval = "1h" # how often cached policies are checked in the background: a
//!                         # changed id is fetched, one past half its max_age refetched; 0: off
//! ```

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaStsConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::queue::duration")]
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub https_port: u16,
    #[serde(deserialize_with = "super::queue::duration")]
    pub refresh_interval: Duration,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        MtaStsConfig {
            enabled: true,
            timeout: Duration::from_secs(10),
            ca_file: None,
            https_port: 443,
            refresh_interval: Duration::from_secs(3600),
        }
    }
}
