//! Sending the reports of ended periods (RFC 8460 §5): by mail through our own spool and queue
//! (`mailto:`), or HTTPS POST (`https:`, `application/tlsrpt+gzip`, any 2xx is success).
//!
//! Report mail leaves from the null reverse-path with NOTIFY=NEVER, like a DSN: a report that
//! cannot be delivered is dropped, never bounced back into a loop. A period's log is removed once
//! every domain in it was handled; a crash in between may send a report twice, never lose one.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::report::{Report, Rua, Submitter};
use super::{TlsRpt, aggregate, now_secs};
use crate::config::tls_rpt::TlsRptConfig;
use crate::dns::{LookupError, Resolver};
use crate::mail::{Envelope, Notify, Recipient, ReversePath};
use crate::spool::{Incoming, Spool};

pub struct Reporter {
    store: Arc<TlsRpt>,
    resolver: Arc<Resolver>,
    spool: Arc<Spool>,
    submitter: Submitter,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    /// DKIM-signs the report mail with the From domain's key (RFC 8460 §5.3), when there is one.
    signer: Option<Arc<dyn crate::queue::MessageSigner>>,
}

impl Reporter {
    /// Signs report mail with `signer` (the server's live `[[dkim.sign]]` keys).
    pub fn signed_by(mut self, signer: Arc<dyn crate::queue::MessageSigner>) -> Reporter {
        self.signer = Some(signer);
        self
    }

    pub fn new(
        store: Arc<TlsRpt>,
        resolver: Arc<Resolver>,
        spool: Arc<Spool>,
        config: &TlsRptConfig,
        hostname: &str,
    ) -> Result<Reporter, String> {
        let name = config.submitter.clone().unwrap_or(hostname.to_string());
        let contact = config
            .contact
            .clone()
            .unwrap_or(format!("postmaster@{hostname}"));
        let submitter = Submitter {
            organization: config.organization.clone().unwrap_or(name.clone()),
            from: config.from.clone().unwrap_or(contact.clone()),
            contact,
            name,
        };
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &config.ca_file {
            let extra = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls_rpt.ca_file: {}: {e}", path.display()))?;
            roots.add_parsable_certificates(extra);
        }
        let provider = crate::delivery::smtp_client::tls::provider();
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Reporter {
            store,
            resolver,
            spool,
            submitter,
            timeout: config.timeout,
            tls: Arc::new(tls),
            signer: None,
        })
    }

    /// Runs until the returned task is aborted: every tick, fsyncs the current log and reports
    /// the periods that have ended.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let tick = Duration::from_secs((self.store.period() / 2).clamp(1, 60));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                self.store.sync();
                self.report_ended().await;
            }
        })
    }

    /// Reports every period that has ended; returns how many reports went out.
    pub async fn report_ended(&self) -> usize {
        let mut sent = 0;
        let period = self.store.period();
        for (start, path) in self.store.ended(now_secs()) {
            let all = match aggregate(&path) {
                Ok(all) => all,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "TLS-RPT: unreadable period log");
                    continue;
                }
            };
            for (domain, policies) in &all {
                let ruas = match self.rua(domain).await {
                    Some(ruas) => ruas,
                    None => continue,
                };
                let report = Report::build(&self.submitter, start, period, policies);
                for rua in ruas {
                    let result = match &rua {
                        Rua::Mailto(address) => self.mail(&report, domain, address, start).await,
                        Rua::Https(url) => self.post(&report, url).await,
                    };
                    match result {
                        Ok(()) => {
                            sent += 1;
                            tracing::info!(%domain, rua = ?rua, report_id = %report.report_id, "TLS-RPT: report sent");
                        }
                        Err(e) => {
                            tracing::warn!(%domain, rua = ?rua, error = %e, "TLS-RPT: report not sent")
                        }
                    }
                }
            }
            self.store.finish(&path);
        }
        sent
    }

    /// The domain's reporting URIs, or None (no record: no report).
    async fn rua(&self, domain: &str) -> Option<Vec<Rua>> {
        match self.resolver.txt(&format!("_smtp._tls.{domain}")).await {
            Ok(answer) => match super::report::parse_txt(&answer.records) {
                Ok(ruas) => Some(ruas),
                Err(e) => {
                    tracing::info!(%domain, error = %e, "TLS-RPT: unusable _smtp._tls record");
                    None
                }
            },
            Err(LookupError::NxDomain(_) | LookupError::NoRecords(_)) => None,
            Err(e) => {
                tracing::info!(%domain, error = %e, "TLS-RPT: _smtp._tls lookup failed");
                None
            }
        }
    }

    async fn mail(
        &self,
        report: &Report,
        domain: &str,
        to: &str,
        start: u64,
    ) -> Result<(), String> {
        let message = report.mail(
            &self.submitter,
            domain,
            &[to.to_string()],
            start,
            self.store.period(),
        );
        let message = match &self.signer {
            Some(signer) => {
                let mut signed = signer.signatures(&message);
                signed.extend_from_slice(&message);
                signed
            }
            None => message,
        };
        let incoming = Incoming {
            envelope: Envelope {
                reverse_path: ReversePath::default(),
                recipients: vec![Recipient {
                    address: to.to_string(),
                    notify: Some(Notify::default()),
                    orcpt: None,
                }],
            },
            message,
            quarantine: None,
            session_id: format!("tls-rpt-{start}"),
        };
        let id = self
            .spool
            .store(incoming)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(queue_id = %id, %to, "TLS-RPT: report mail queued");
        Ok(())
    }

    async fn post(&self, report: &Report, url: &str) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.post_once(report, url)).await {
            Ok(result) => result,
            Err(_) => Err("timed out".into()),
        }
    }

    async fn post_once(&self, report: &Report, url: &str) -> Result<(), String> {
        let rest = url.strip_prefix("https://").ok_or("not an https URI")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h,
                p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?,
            ),
            _ => (authority, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ips: Vec<std::net::IpAddr> = match host.parse() {
            Ok(ip) => vec![ip],
            Err(_) => {
                (self.resolver.ips(host).await)
                    .map_err(|e| format!("{host}: {e}"))?
                    .records
            }
        };
        let ip = ips.first().ok_or(format!("{host} has no address"))?;
        let tcp = tokio::net::TcpStream::connect((*ip, port))
            .await
            .map_err(|e| format!("connect to {ip}:{port}: {e}"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        let body = report.gzip();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: mailwit\r\n\
             Content-Type: application/tlsrpt+gzip\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(&body).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let _ = (&mut tls).take(16 * 1024).read_to_end(&mut response).await;
        let status = String::from_utf8_lossy(&response);
        let status = status.lines().next().unwrap_or("");
        match status.split(' ').nth(1) {
            Some(code) if status.starts_with("HTTP/1.") && code.starts_with('2') => Ok(()),
            _ => Err(format!("{url} answered {status:?}")),
        }
    }
}
