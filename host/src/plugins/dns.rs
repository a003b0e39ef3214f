//! The resolver behind the plugins' `dns` import (the server's shared
//! `[dns]` resolver, see [`crate::dns`]), each bounded by a timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use crate::plugins::bindings::mailwit::plugin::dns::DnsError;

/// Most answers handed to a plugin per lookup.
const MAX_ANSWERS: usize = 64;

/// Where the resolver sends queries.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// Name servers (port 53); empty means the system configuration (/etc/resolv.conf).
    pub nameservers: Vec<IpAddr>,
    /// Bound on one lookup as the plugin sees it.
    pub timeout: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The plugins' view of the resolver: the server's shared one, or (tests, `check-config`) one of
/// its own built lazily on the first lookup, so plugins that never use DNS (and hosts without a
/// resolv.conf) pay nothing.
pub struct Dns {
    options: DnsOptions,
    resolver: tokio::sync::OnceCell<Result<Arc<crate::dns::Resolver>, String>>,
}

impl Dns {
    pub fn new(options: DnsOptions) -> Self {
        Dns {
            options,
            resolver: tokio::sync::OnceCell::new(),
        }
    }

    /// Lookups through the server's shared resolver.
    pub fn shared(resolver: Arc<crate::dns::Resolver>) -> Self {
        Dns {
            options: DnsOptions::default(),
            resolver: tokio::sync::OnceCell::new_with(Some(Ok(resolver))),
        }
    }

    pub(crate) async fn resolver(&self) -> Result<&TokioResolver, DnsError> {
        let built = self.resolver.get_or_init(|| async { self.build() }).await;
        built
            .as_ref()
            .map(|r| r.hickory())
            .map_err(|e| DnsError::Other(format!("no resolver: {e}")))
    }

    fn build(&self) -> Result<Arc<crate::dns::Resolver>, String> {
        let config = crate::config::dns::DnsConfig {
            nameservers: (self.options.nameservers.iter())
                .map(|ip| SocketAddr::new(*ip, 53))
                .collect(),
            timeout: self.options.timeout,
            ..Default::default()
        };
        crate::dns::Resolver::from_config(&config)
    }

    /// Runs a lookup with the timeout and maps its records with `pick`.
    pub(crate) async fn lookup<T>(
        &self,
        query: impl std::future::Future<
            Output = Result<hickory_resolver::lookup::Lookup, hickory_resolver::net::NetError>,
        >,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Vec<T>, DnsError> {
        let lookup = match tokio::time::timeout(self.options.timeout, query).await {
            Err(_) => return Err(DnsError::Timeout),
            Ok(Err(e)) if e.is_nx_domain() => return Err(DnsError::Nxdomain),
            Ok(Err(e)) if e.is_no_records_found() => return Err(DnsError::NoRecords),
            Ok(Err(e)) => return Err(DnsError::Other(e.to_string())),
            Ok(Ok(lookup)) => lookup,
        };
        let found: Vec<T> = lookup
            .answers()
            .iter()
            .filter_map(|r| pick(&r.data))
            .take(MAX_ANSWERS)
            .collect();
        if found.is_empty() {
            return Err(DnsError::NoRecords);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver pointed at a loopback name server (normally nothing listens there) reports an
    /// error within its timeout instead of hanging the plugin.
    #[tokio::test]
    async fn unreachable_nameserver_is_an_error_not_a_hang() {
        let dns = Dns::new(DnsOptions {
            nameservers: vec!["127.0.0.1".parse().unwrap()],
            timeout: Duration::from_millis(300),
        });
        let resolver = dns.resolver().await.expect("resolver builds");
        let result = dns
            .lookup(resolver.ipv4_lookup("mailwit.example.test."), |d| match d {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .await;
        // Timeout or refused, or NXDOMAIN if something does answer there: never records.
        assert!(result.is_err(), "{result:?}");
    }
}
