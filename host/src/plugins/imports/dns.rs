//! `dns`: A, AAAA, MX, TXT and PTR lookups through the host's resolver ([`crate::plugins::dns`]),
//! each bounded by a timeout and counted in the server's metrics.

use std::net::IpAddr;

use hickory_resolver::proto::rr::RData;

use crate::plugins::bindings::mailwit::plugin::dns::{DnsError, Host, MxRecord};
use crate::plugins::state::HostState;

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
        dns.lookup(resolver.txt_lookup(name.as_str()), crate::dns::txt_text)
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
