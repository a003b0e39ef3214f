//! Sending the reports of ended periods (RFC 8460 §5): by mail through our own spool and queue
//! (`mailto:`), or HTTPS POST (`https:`, `application/tlsrpt+gzip`, any 2xx is success).
//!
//! Report mail leaves from the null reverse-path with NOTIFY=NEVER, like a DSN: a report that
//! cannot be delivered is dropped, never bounced back into a loop. An ended period's log becomes
//! one outbox file per report and URI (`outbox`), and each is removed once handed over; a failed
//! upload is retried with exponential backoff for `[tls_rpt] retry_for`. A report is queued once
//! across crashes; an upload whose 2xx answer was cut short by a crash is posted again with the
//! same report-id (receivers tell duplicates by it).

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::outbox::{Outbox, Pending, backoff};
use super::report::{Report, Rua, Submitter};
use super::{TlsRpt, aggregate, now_secs};
use crate::config::tls_rpt::TlsRptConfig;
use crate::delivery::smtp_client::tls;
use crate::dns::Resolver;
use crate::mail::{Envelope, Notify, Recipient, ReversePath};
use crate::spool::{Incoming, Spool};

pub struct Reporter {
    store: Arc<TlsRpt>,
    outbox: Outbox,
    /// How long a report that cannot be handed over is retried.
    retry_for: Duration,
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
        let roots = tls::system_roots(config.ca_file.as_deref())
            .map_err(|e| format!("tls_rpt.ca_file: {e}"))?;
        let tls = tls::verifying_config(roots).map_err(|e| e.to_string())?;
        let outbox =
            Outbox::open(store.dir().join("outbox")).map_err(|e| format!("TLS-RPT outbox: {e}"))?;
        Ok(Reporter {
            store,
            outbox,
            retry_for: config.retry_for,
            resolver,
            spool,
            submitter,
            timeout: config.timeout,
            tls,
            signer: None,
        })
    }

    /// Runs until the returned task is aborted: every tick, fsyncs the current log, turns the
    /// periods that have ended into reports and hands over the reports that are due.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let tick = Duration::from_secs(self.tick());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                self.store.sync();
                self.report_ended().await;
            }
        })
    }

    /// Seconds between two looks at the logs and outbox; also the first retry delay.
    fn tick(&self) -> u64 {
        (self.store.period() / 2).clamp(1, 60)
    }

    /// Builds the reports of every period that has ended and hands over those due; returns how
    /// many were handed over.
    pub async fn report_ended(&self) -> usize {
        for (start, path) in self.store.ended(now_secs()) {
            if let Err(e) = self.build_reports(start, &path).await {
                tracing::warn!(path = %path.display(), error = %e, "TLS-RPT: reports not built");
                continue;
            }
            self.store.finish(&path);
        }
        self.send_due().await
    }

    /// A period's reports into the outbox, durably, before its log goes.
    async fn build_reports(&self, start: u64, path: &std::path::Path) -> std::io::Result<()> {
        let all = aggregate(path)?;
        let period = self.store.period();
        let now = now_secs();
        self.outbox.clear_period(start);
        let mut index = 0;
        for (domain, policies) in &all {
            let Some(ruas) = self.rua(domain).await else {
                continue;
            };
            let report = Report::build(&self.submitter, start, period, policies);
            for rua in ruas {
                let pending = Pending {
                    domain: domain.clone(),
                    start,
                    period,
                    report: report.clone(),
                    rua,
                    attempts: 0,
                    next_try: now,
                    give_up: now.saturating_add(self.retry_for.as_secs()),
                    enqueuing: false,
                };
                self.outbox.write(&Outbox::name(start, index), &pending)?;
                index += 1;
            }
        }
        self.outbox.sync()
    }

    /// Hands over every report whose time has come; failures wait for their next try.
    async fn send_due(&self) -> usize {
        let mut sent = 0;
        for (name, mut pending) in self.outbox.pending() {
            let now = now_secs();
            if pending.next_try > now {
                continue;
            }
            let result = match &pending.rua {
                Rua::Mailto(address) => {
                    let address = address.clone();
                    self.mail(&name, &mut pending, &address).await
                }
                Rua::Https(url) => self.post(&pending.report, url).await,
            };
            let (domain, rua, id) = (&pending.domain, &pending.rua, &pending.report.report_id);
            match result {
                Ok(()) => {
                    sent += 1;
                    tracing::info!(%domain, ?rua, report_id = %id, "TLS-RPT: report sent");
                    self.outbox.remove(&name);
                }
                Err(e) if now >= pending.give_up => {
                    tracing::warn!(%domain, ?rua, report_id = %id, error = %e,
                        attempts = pending.attempts + 1, "TLS-RPT: report not sent; given up");
                    self.outbox.remove(&name);
                }
                Err(e) => {
                    // `enqueuing` stays: whether a failed spool write left the mail is asked
                    // of the spool at the next try.
                    pending.attempts += 1;
                    let wait = backoff(self.tick(), pending.attempts);
                    pending.next_try = now + wait;
                    tracing::warn!(domain = %pending.domain, rua = ?pending.rua,
                        report_id = %pending.report.report_id, error = %e,
                        attempts = pending.attempts, retry_in_secs = wait,
                        "TLS-RPT: report not sent; will retry");
                    if let Err(e) = self.outbox.write_durably(&name, &pending) {
                        tracing::warn!(%name, error = %e, "TLS-RPT: cannot note the retry");
                    }
                }
            }
        }
        sent
    }

    /// The domain's reporting URIs, or None (no record: no report).
    async fn rua(&self, domain: &str) -> Option<Vec<Rua>> {
        self.resolver
            .txt_policy(
                &format!("_smtp._tls.{domain}"),
                "TLS-RPT",
                super::report::parse_txt,
            )
            .await
    }

    /// Queues the report mail of outbox file `name` once: marked `enqueuing` first, and a mark
    /// found after a crash is only queued again if no queued message carries its session id.
    async fn mail(&self, name: &str, pending: &mut Pending, to: &str) -> Result<(), String> {
        let session_id = format!("tls-rpt-{name}");
        if pending.enqueuing && self.queued(&session_id) {
            tracing::info!(%session_id, "TLS-RPT: report mail found queued after a restart");
            return Ok(());
        }
        pending.enqueuing = true;
        self.outbox
            .write_durably(name, pending)
            .map_err(|e| format!("outbox: {e}"))?;
        let message = pending.report.mail(
            &self.submitter,
            &pending.domain,
            &[to.to_string()],
            pending.start,
            pending.period,
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
            session_id,
        };
        let id = self
            .spool
            .store(incoming)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(queue_id = %id, %to, "TLS-RPT: report mail queued");
        Ok(())
    }

    /// Whether a queued message has this session id.
    fn queued(&self, session_id: &str) -> bool {
        self.spool.list().unwrap_or_default().iter().any(|id| {
            self.spool
                .load_meta(id)
                .is_ok_and(|m| m.session_id == session_id)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pending(rua: Rua, give_up: u64) -> Pending {
        let submitter = Submitter {
            organization: "Org".into(),
            contact: "c@example.test".into(),
            name: "mail.example.test".into(),
            from: "c@example.test".into(),
        };
        let policies = BTreeMap::from([(super::super::Policy::none("x.test"), Default::default())]);
        Pending {
            domain: "x.test".into(),
            start: 3600,
            period: 3600,
            report: Report::build(&submitter, 3600, 3600, &policies),
            rua,
            attempts: 0,
            next_try: 0,
            give_up,
            enqueuing: false,
        }
    }

    async fn reporter(dir: &std::path::Path) -> (Reporter, Arc<Spool>) {
        let spool = Arc::new(Spool::open(dir.join("queue")).await.unwrap());
        let store = TlsRpt::open(dir.join("tls-rpt"), 3600).unwrap();
        let resolver = Resolver::from_config(&Default::default()).unwrap();
        let config = TlsRptConfig::default();
        let reporter =
            Reporter::new(store, resolver, spool.clone(), &config, "mail.example.test").unwrap();
        (reporter, spool)
    }

    fn queued_sessions(spool: &Spool) -> Vec<String> {
        let mut ids: Vec<String> = (spool.list().unwrap().iter())
            .map(|id| spool.load_meta(id).unwrap().session_id)
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn report_mail_is_queued_exactly_once_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (reporter, spool) = reporter(dir.path()).await;
        // Crash after the spool took the mail, before its outbox file went.
        let mut queued = pending(Rua::Mailto("a@x.test".into()), u64::MAX);
        queued.enqueuing = true;
        reporter.outbox.write_durably("3600.0", &queued).unwrap();
        let name = "tls-rpt-3600.0".to_string();
        let incoming = Incoming {
            envelope: Envelope {
                reverse_path: ReversePath::default(),
                recipients: vec![Recipient {
                    address: "a@x.test".into(),
                    notify: None,
                    orcpt: None,
                }],
            },
            message: b"Subject: report\r\n\r\n".to_vec(),
            quarantine: None,
            session_id: name.clone(),
        };
        spool.store(incoming).await.unwrap();
        // Crash after the mark, before the spool had the mail.
        let mut marked = pending(Rua::Mailto("b@x.test".into()), u64::MAX);
        marked.enqueuing = true;
        reporter.outbox.write_durably("3600.1", &marked).unwrap();
        assert_eq!(queued_sessions(&spool), vec![name.clone()]);

        assert_eq!(reporter.send_due().await, 2);
        assert_eq!(
            queued_sessions(&spool),
            vec![name, "tls-rpt-3600.1".to_string()]
        );
        assert!(reporter.outbox.pending().is_empty());
        assert_eq!(reporter.send_due().await, 0);
        assert_eq!(spool.list().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn failed_upload_stays_in_the_outbox_until_its_window_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (reporter, _spool) = reporter(dir.path()).await;
        // Nothing listens on port 1 of the loopback.
        let url = "https://127.0.0.1:1/report".to_string();
        let p = pending(Rua::Https(url.clone()), u64::MAX);
        reporter.outbox.write_durably("3600.0", &p).unwrap();
        assert_eq!(reporter.send_due().await, 0);
        let left = reporter.outbox.pending();
        assert_eq!(left.len(), 1);
        let (_, p) = &left[0];
        assert_eq!(p.attempts, 1);
        assert!(p.next_try > now_secs() - 1, "retried later");
        // Not due yet: untouched.
        assert_eq!(reporter.send_due().await, 0);
        assert_eq!(reporter.outbox.pending()[0].1.attempts, 1);
        // Past its window: dropped at the next failure.
        let expired = pending(Rua::Https(url), 0);
        reporter.outbox.write_durably("3600.0", &expired).unwrap();
        assert_eq!(reporter.send_due().await, 0);
        assert!(reporter.outbox.pending().is_empty());
    }
}
