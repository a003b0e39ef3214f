//! Configuration of the server's DNS resolver (`[dns]`), shared by every lookup the server makes:
//! MX and address lookups, DANE (TLSA), MTA-STS and TLS-RPT discovery, SPF/DKIM/DMARC/ARC
//! verification and the plugins' `dns` import.
//!
//! ```toml
//! [dns]
//! nameservers = ["127.0.0.1:5353"]  # address:port; empty: the system's (/etc/resolv.conf)
//! timeout = "5s"                    # per query
//! attempts = 2                      # tries per name server
//! dnssec = false                    # validate DNSSEC (needed for DANE)
//! trust_anchors = "root.key"        # DNSKEY records (zone-file form) to trust instead of the root's
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers to ask (UDP, TCP on truncation and for DNSSEC). Empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Per-query timeout.
    #[serde(deserialize_with = "super::queue::duration")]
    pub timeout: Duration,
    /// Tries per name server before a lookup fails temporarily.
    pub attempts: usize,
    /// Validate answers with DNSSEC; answers then carry secure / insecure / bogus.
    pub dnssec: bool,
    /// A file of DNSKEY records (zone-file syntax) used as trust anchors instead of the root's.
    /// Relative to the configuration file.
    pub trust_anchors: Option<PathBuf>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            dnssec: false,
            trust_anchors: None,
        }
    }
}
