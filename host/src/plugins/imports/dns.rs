//! `dns`: A, AAAA, MX, TXT and PTR lookups through the host's resolver ([`crate::plugins::dns`]),
//! each bounded by a timeout and counted in the server's metrics.

use std::net::IpAddr;

use hickory_resolver::proto::rr::{IntoName, Name, RData, RecordType};

use crate::plugins::bindings::mailwit::plugin::dns::{DnsError, Host, MxRecord};
use crate::plugins::state::HostState;

impl HostState {
    /// Looks `name` up for `record` through the plugin's resolver, keeps what `pick` takes from
    /// the records, and counts the lookup.
    async fn lookup<T>(
        &mut self,
        name: impl IntoName,
        record: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Vec<T>, DnsError> {
        let dns = self.ctx.dns.clone();
        let result = match dns.resolver().await {
            Ok(resolver) => dns.lookup(resolver.lookup(name, record), pick).await,
            Err(e) => Err(e),
        };
        self.counted(record, result)
    }

    /// Counts a lookup by record type and outcome in the server's metrics.
    fn counted<T>(&self, record: RecordType, result: Result<T, DnsError>) -> Result<T, DnsError> {
        let r#type = match record {
            RecordType::A => "a",
            RecordType::AAAA => "aaaa",
            RecordType::MX => "mx",
            RecordType::TXT => "txt",
            RecordType::PTR => "ptr",
            _ => "other",
        };
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
            .get_or_create(&crate::metrics::DnsLabels { r#type, outcome })
            .inc();
        result
    }
}

impl Host for HostState {
    async fn lookup_a(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        self.lookup(name.as_str(), RecordType::A, |d| match d {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .await
    }

    async fn lookup_aaaa(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        self.lookup(name.as_str(), RecordType::AAAA, |d| match d {
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .await
    }

    async fn lookup_mx(&mut self, name: String) -> Result<Vec<MxRecord>, DnsError> {
        self.lookup(name.as_str(), RecordType::MX, |d| match d {
            RData::MX(mx) => Some(MxRecord {
                preference: mx.preference,
                exchange: mx.exchange.to_string(),
            }),
            _ => None,
        })
        .await
    }

    async fn lookup_txt(&mut self, name: String) -> Result<Vec<String>, DnsError> {
        self.lookup(name.as_str(), RecordType::TXT, crate::dns::txt_text)
            .await
    }

    async fn lookup_ptr(&mut self, ip: String) -> Result<Vec<String>, DnsError> {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            let refused = Err(DnsError::Other(format!("not an IP address: {ip:?}")));
            return self.counted(RecordType::PTR, refused);
        };
        self.lookup(Name::from(addr), RecordType::PTR, |d| match d {
            RData::PTR(ptr) => Some(ptr.0.to_string()),
            _ => None,
        })
        .await
    }
}
