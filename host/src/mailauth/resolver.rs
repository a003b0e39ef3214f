//! mail-auth's DNS client, built from the server's `[dns]` settings (name servers as
//! address:port, timeout, attempts), so tests serve their zones on loopback.
//!
//! mail-auth 0.13 has no resolver trait: it owns a hickory `TokioResolver`, which we configure
//! here the same way the rest of the server configures its own.

use crate::config::dns::DnsConfig;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::MessageAuthenticator;

pub fn authenticator(dns: &DnsConfig) -> anyhow::Result<MessageAuthenticator> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if dns.nameservers.is_empty() {
        match TokioResolver::builder(provider.clone()) {
            Ok(builder) => builder,
            // No /etc/resolv.conf: verification then yields temperror, mail still flows.
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration; SPF/DKIM/DMARC checks will temperror");
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(Vec::new()),
                    provider,
                )
            }
        }
    } else {
        let servers = dns
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let options = builder.options_mut();
    options.timeout = dns.timeout;
    options.attempts = dns.attempts.max(1);
    // Names are absolute; never try search domains.
    options.ndots = 0;
    let resolver = builder
        .build()
        .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?;
    Ok(MessageAuthenticator(resolver))
}
