//! `dns`: A, AAAA, MX, TXT and PTR lookups through the host's resolver (the server's shared
//! `[dns]` resolver, see [`crate::dns`]), each bounded by a timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use crate::plugins::bindings::mailwit::plugin::dns::{DnsError, Host, MxRecord};
use crate::plugins::state::HostState;

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

    async fn resolver(&self) -> Result<&TokioResolver, DnsError> {
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
    async fn lookup<T>(
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

impl HostState {
    async fn lookup_a_uncounted(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        let dns = self.ctx.dns.clone();
        let resolver = dns.resolver().await?;
        dns.lookup(resolver.ipv4_lookup(name.as_str()), |d| match d {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .await
    }

    async fn lookup_aaaa_uncounted(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        let dns = self.ctx.dns.clone();
        let resolver = dns.resolver().await?;
        dns.lookup(resolver.ipv6_lookup(name.as_str()), |d| match d {
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .await
    }

    async fn lookup_mx_uncounted(&mut self, name: String) -> Result<Vec<MxRecord>, DnsError> {
        let dns = self.ctx.dns.clone();
        let resolver = dns.resolver().await?;
        dns.lookup(resolver.mx_lookup(name.as_str()), |d| match d {
            RData::MX(mx) => Some(MxRecord {
                preference: mx.preference,
                exchange: mx.exchange.to_string(),
            }),
            _ => None,
        })
        .await
    }

    async fn lookup_txt_uncounted(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        let dns = self.ctx.dns.clone();
        let resolver = dns.resolver().await?;
        dns.lookup(resolver.txt_lookup(name.as_str()), |d| match d {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect::<String>(),
            ),
            _ => None,
        })
        .await
    }

    async fn lookup_ptr_uncounted(&mut self, ip: String) -> Result<Vec<String>, DnsError> {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            return Err(DnsError::Other(format!("not an IP address: {ip:?}")));
        };
        let dns = self.ctx.dns.clone();
        let resolver = dns.resolver().await?;
        let name = hickory_resolver::proto::rr::Name::from(addr);
        dns.lookup(resolver.reverse_lookup(name), |d| match d {
            RData::PTR(ptr) => Some(ptr.0.to_string()),
            _ => None,
        })
        .await
    }

    /// Counts a lookup by record type and outcome in the server's metrics.
    fn counted<T>(&self, record: &'static str, result: Result<T, DnsError>) -> Result<T, DnsError> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(DnsError::Nxdomain) => "nxdomain",
            Err(DnsError::NoRecords) => "no_records",
            Err(DnsError::Timeout) => "timeout",
            Err(DnsError::Other(_)) => "error",
        };
        self.ctx
            .metrics
            .dns_lookups
            .get_or_create(&crate::metrics::DnsLabels {
                r#type: record,
                outcome,
            })
            .inc();
        result
    }
}

impl Host for HostState {
    async fn lookup_a(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        let result = self.lookup_a_uncounted(name).await;
        self.counted("a", result)
    }

    async fn lookup_aaaa(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        let result = self.lookup_aaaa_uncounted(name).await;
        self.counted("aaaa", result)
    }

    async fn lookup_mx(&mut self, name: String) -> Result<Vec<MxRecord>, DnsError> {
        let result = self.lookup_mx_uncounted(name).await;
        self.counted("mx", result)
    }

    async fn lookup_txt(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        let result = self.lookup_txt_uncounted(name).await;
        self.counted("txt", result)
    }

    async fn lookup_ptr(&mut self, ip: String) -> Result<Vec<String>, DnsError> {
        let result = self.lookup_ptr_uncounted(ip).await;
        self.counted("ptr", result)
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
