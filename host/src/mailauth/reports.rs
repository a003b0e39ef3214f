//! DMARC aggregate reports (RFC 7489 section 7.2), `[dmarc_reports]`, off by default: every
//! DMARC evaluation of a domain whose record asks for reports (`rua=`) is logged with what was
//! done to the message; at the end of each period one report per domain (mail-auth writes the
//! XML, gzipped, in a multipart message) is queued through mailwit's own spool to the `rua=`
//! addresses that may receive it (an address outside the domain must be authorised by a
//! `<domain>._report._dmarc.<its domain>` record, section 7.1).
//!
//! The log is `<state>/dmarc-reports/current.jsonl`, one JSON line per evaluation, appended
//! without fsync: reports are statistics, and a crash loses at most the last lines.

use super::results::{AuthResults, AuthStatus};
use mail_auth::report::{
    ActionDisposition, DKIMAuthResult, DkimResult, DmarcResult, PolicyPublished, Record, Report,
    SPFAuthResult, SPFDomainScope, SpfResult,
};
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

/// One message's evaluation, as logged.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// The From domain the report is about.
    pub domain: String,
    /// The `rua=` addresses (without `mailto:`).
    pub rua: Vec<String>,
    pub policy: PolicyPublished,
    pub record: Record,
}

/// The evaluations of the running period.
pub struct ReportLog {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl ReportLog {
    pub fn open(state_dir: &std::path::Path) -> std::io::Result<ReportLog> {
        let dir = state_dir.join("dmarc-reports");
        std::fs::create_dir_all(&dir)?;
        Ok(ReportLog {
            dir,
            lock: Mutex::new(()),
        })
    }

    fn current(&self) -> PathBuf {
        self.dir.join("current.jsonl")
    }

    /// Logs the evaluation of one message: `disposition` is what happened to it (the data
    /// hook's verdict). Nothing is logged when the domain's record asks for no reports.
    pub fn record(&self, results: &AuthResults, client_ip: IpAddr, disposition: ActionDisposition) {
        let Some(evaluation) = evaluation(results, client_ip, disposition) else {
            return;
        };
        let _guard = self.lock.lock().unwrap();
        let line = match serde_json::to_string(&evaluation) {
            Ok(line) => line,
            Err(e) => return tracing::warn!(error = %e, "DMARC report log: cannot encode"),
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.current())
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "DMARC report log: cannot append");
        }
    }

    /// Ends the period: the evaluations logged so far, the log emptied.
    pub fn take(&self) -> std::io::Result<Vec<Evaluation>> {
        let _guard = self.lock.lock().unwrap();
        let taken = self.dir.join("taken.jsonl");
        match std::fs::rename(self.current(), &taken) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        let file = std::fs::File::open(&taken)?;
        let mut out = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            // A torn last line (crash while appending) is skipped.
            if let Ok(evaluation) = serde_json::from_str::<Evaluation>(&line?) {
                out.push(evaluation);
            }
        }
        std::fs::remove_file(&taken)?;
        Ok(out)
    }
}

/// The report record of one message, when its domain asks for aggregate reports.
fn evaluation(
    results: &AuthResults,
    client_ip: IpAddr,
    disposition: ActionDisposition,
) -> Option<Evaluation> {
    let dmarc = results.dmarc.as_ref()?;
    let published = dmarc.published.as_ref()?;
    let rua: Vec<String> = published
        .rua
        .iter()
        // mail-auth keeps the address of a mailto: URI (other schemes are not sent to).
        .map(|uri| uri.uri.strip_prefix("mailto:").unwrap_or(&uri.uri))
        .filter(|address| address.contains('@'))
        .map(str::to_string)
        .collect();
    if rua.is_empty() {
        return None;
    }
    let pass = |aligned: bool| {
        if aligned {
            DmarcResult::Pass
        } else {
            DmarcResult::Fail
        }
    };
    let mut record = Record::new()
        .with_count(1)
        .with_source_ip(client_ip)
        .with_action_disposition(disposition)
        .with_dmarc_dkim_result(pass(dmarc.dkim_aligned))
        .with_dmarc_spf_result(pass(dmarc.spf_aligned))
        .with_header_from(dmarc.from_domain.clone())
        .with_envelope_from(results.spf_mail_from.domain.clone())
        .with_spf_auth_result(
            SPFAuthResult::new()
                .with_domain(results.spf_mail_from.domain.clone())
                .with_scope(SPFDomainScope::MailFrom)
                .with_result(spf_result(results.spf_mail_from.result)),
        );
    for dkim in &results.dkim {
        record = record.with_dkim_auth_result(
            DKIMAuthResult::new()
                .with_domain(dkim.domain.clone())
                .with_selector(dkim.selector.clone())
                .with_result(dkim_result(dkim.result)),
        );
    }
    Some(Evaluation {
        domain: dmarc.from_domain.clone(),
        rua,
        policy: PolicyPublished::from_record(dmarc.from_domain.clone(), published),
        record,
    })
}

fn spf_result(status: AuthStatus) -> SpfResult {
    match status {
        AuthStatus::Pass => SpfResult::Pass,
        AuthStatus::Fail => SpfResult::Fail,
        AuthStatus::SoftFail => SpfResult::SoftFail,
        AuthStatus::Neutral => SpfResult::Neutral,
        AuthStatus::TempError => SpfResult::TempError,
        AuthStatus::PermError => SpfResult::PermError,
        _ => SpfResult::None,
    }
}

fn dkim_result(status: AuthStatus) -> DkimResult {
    match status {
        AuthStatus::Pass => DkimResult::Pass,
        AuthStatus::Fail => DkimResult::Fail,
        AuthStatus::Neutral => DkimResult::Neutral,
        AuthStatus::TempError => DkimResult::TempError,
        AuthStatus::PermError => DkimResult::PermError,
        _ => DkimResult::None,
    }
}

/// One report to send: the domain it is about, its `rua=` addresses, the report.
pub struct Outgoing {
    pub domain: String,
    pub rua: Vec<String>,
    pub report: Report,
}

/// The period's reports, one per domain, identical rows counted together.
pub fn reports(
    evaluations: Vec<Evaluation>,
    org_name: &str,
    email: &str,
    (begin, end): (u64, u64),
) -> Vec<Outgoing> {
    let mut by_domain: std::collections::BTreeMap<
        String,
        (Vec<String>, PolicyPublished, Vec<Record>),
    > = Default::default();
    for evaluation in evaluations {
        let entry = by_domain
            .entry(evaluation.domain.clone())
            .or_insert_with(|| (Vec::new(), evaluation.policy.clone(), Vec::new()));
        // The latest record seen states the policy and the addresses.
        entry.0 = evaluation.rua;
        entry.1 = evaluation.policy;
        let one = evaluation.record;
        match entry
            .2
            .iter_mut()
            .find(|r| (**r).clone().with_count(1) == one.clone().with_count(1))
        {
            Some(same) => {
                let count = same.count() + one.count();
                *same = same.clone().with_count(count);
            }
            None => entry.2.push(one),
        }
    }
    by_domain
        .into_iter()
        .map(|(domain, (rua, policy, records))| {
            let mut report = Report::new()
                .with_org_name(org_name)
                .with_email(email)
                .with_report_id(format!("{begin}.{domain}"))
                .with_date_range_begin(begin)
                .with_date_range_end(end)
                .with_policy_published(policy);
            for record in records {
                report.add_record(record);
            }
            Outgoing {
                domain,
                rua,
                report,
            }
        })
        .collect()
}

/// The `rua=` addresses of `domain` that may receive its reports (RFC 7489 section 7.1): those
/// in the domain itself, and the others whose domain publishes
/// `<domain>._report._dmarc.<their domain>`. Empty when DNS fails (tried next period).
async fn authorised(
    authenticator: &mail_auth::MessageAuthenticator,
    domain: &str,
    rua: &[String],
) -> Vec<String> {
    type NoCache = mail_auth::common::cache::NoCache<Box<str>, mail_auth::Txt>;
    authenticator
        .verify_dmarc_report_address(domain, rua, None::<&NoCache>)
        .await
        .map(|allowed| allowed.into_iter().cloned().collect())
        .unwrap_or_default()
}

/// Sends the reports every `interval`: takes the period's evaluations, builds one report per
/// domain and queues it from `email` to the authorised `rua=` addresses (the report is sent
/// like any mail, with retries and a bounce to `email` if it cannot be delivered).
pub async fn run(
    log: std::sync::Arc<ReportLog>,
    config: crate::config::mailauth::DmarcReportsConfig,
    hostname: String,
    authenticator: std::sync::Arc<super::verify::Verifier>,
    spool: std::sync::Arc<crate::spool::Spool>,
) {
    let org_name = config.org_name.clone().unwrap_or_else(|| hostname.clone());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let mut begin = now();
    loop {
        tokio::time::sleep(config.interval).await;
        let end = now();
        let evaluations = match log.take() {
            Ok(evaluations) => evaluations,
            Err(e) => {
                tracing::warn!(error = %e, "DMARC reports: cannot read the period's log");
                continue;
            }
        };
        for outgoing in reports(evaluations, &org_name, &config.email, (begin, end)) {
            let to = authorised(
                authenticator.authenticator(),
                &outgoing.domain,
                &outgoing.rua,
            )
            .await;
            if to.is_empty() {
                tracing::info!(domain = %outgoing.domain, rua = ?outgoing.rua, "DMARC report not sent: no authorised rua address");
                continue;
            }
            let message = match outgoing.report.to_rfc5322(
                &hostname,
                config.email.as_str(),
                to.iter().map(String::as_str),
            ) {
                Ok(text) => text
                    .replace("\r\n", "\n")
                    .replace('\n', "\r\n")
                    .into_bytes(),
                Err(e) => {
                    tracing::warn!(domain = %outgoing.domain, error = %e, "DMARC report not built");
                    continue;
                }
            };
            let envelope = crate::mail::Envelope {
                reverse_path: crate::mail::ReversePath {
                    address: config.email.clone(),
                    ..Default::default()
                },
                recipients: to
                    .iter()
                    .map(|address| crate::mail::Recipient {
                        address: address.clone(),
                        notify: None,
                        orcpt: None,
                    })
                    .collect(),
            };
            let incoming = crate::spool::Incoming {
                envelope,
                message,
                quarantine: None,
                session_id: format!("dmarc-report-{begin}"),
            };
            match spool.store(incoming).await {
                Ok(id) => {
                    tracing::info!(domain = %outgoing.domain, to = ?to, queue_id = %id, "DMARC aggregate report queued")
                }
                Err(e) => {
                    tracing::error!(domain = %outgoing.domain, error = %e, "cannot queue DMARC report")
                }
            }
        }
        begin = end;
    }
}
