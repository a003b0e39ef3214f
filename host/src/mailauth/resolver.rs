//! mail-auth's DNS client, built from the server's `[dns]` settings (name servers as
//! address:port, timeout, attempts), so tests serve their zones on loopback.
//!
//! mail-auth 0.13 has no resolver trait: it owns a hickory `TokioResolver`, which we configure
//! here the same way the rest of the server configures its own.

use crate::config::dns::DnsConfig;
use mail_auth::MessageAuthenticator;

pub fn authenticator(dns: &DnsConfig) -> anyhow::Result<MessageAuthenticator> {
    let resolver = crate::dns::builder(dns)
        .build()
        .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?;
    Ok(MessageAuthenticator(resolver))
}
