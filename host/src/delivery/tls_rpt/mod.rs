//! SMTP TLS reporting (RFC 8460): what became of each outbound TLS session, per policy domain,
//! and the daily aggregate report sent to the addresses a domain publishes in `_smtp._tls` TXT.
//!
//! Recording (`mx` calls [`TlsRpt::success`] / [`TlsRpt::failure`] once per session attempt)
//! appends one JSON line per session to `<state>/tls-rpt/<period start>.jsonl`: counters that
//! survive a restart without a database, and a write per session (to the page cache; the report
//! task fsyncs the open file on each tick). When a period is over, [`send`] aggregates its file,
//! looks up each domain's reporting addresses, writes one [`outbox`] file per report and address,
//! removes the log, and sends each report by mail through the queue (`mailto:`) or HTTPS POST
//! (`https:`), retrying failed uploads.

pub mod outbox;
pub mod report;
pub mod send;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The policy a session was made under (RFC 8460 §4.4 "policy"): `tlsa` (DANE), `sts`
/// (MTA-STS) or `no-policy-found`. Serialized as it appears in the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Policy {
    #[serde(rename = "policy-type")]
    pub kind: String,
    /// The TLSA records, or the MTA-STS policy's lines.
    #[serde(
        rename = "policy-string",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub strings: Vec<String>,
    #[serde(rename = "policy-domain")]
    pub domain: String,
    /// The MTA-STS policy's MX patterns, or the DANE host.
    #[serde(rename = "mx-host", default, skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

impl Policy {
    pub fn none(domain: &str) -> Policy {
        Policy {
            kind: "no-policy-found".into(),
            strings: Vec::new(),
            domain: normalize(domain),
            mx_host: Vec::new(),
        }
    }

    /// DANE: `records` in presentation form ("3 1 1 ABCD…") for the MX `host`.
    pub fn tlsa(domain: &str, host: &str, records: Vec<String>) -> Policy {
        Policy {
            kind: "tlsa".into(),
            strings: records,
            domain: normalize(domain),
            mx_host: vec![host.to_string()],
        }
    }

    /// MTA-STS: the policy's text lines and MX patterns (empty when it could not be fetched).
    pub fn sts(domain: &str, lines: Vec<String>, mx: Vec<String>) -> Policy {
        Policy {
            kind: "sts".into(),
            strings: lines,
            domain: normalize(domain),
            mx_host: mx,
        }
    }
}

/// One failed session (RFC 8460 §4.4 "failure-details", without the count).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Failure {
    /// One of RFC 8460 §4.3's result types, e.g. "certificate-expired", "tlsa-invalid".
    #[serde(rename = "result-type")]
    pub result_type: String,
    #[serde(rename = "sending-mta-ip", skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<IpAddr>,
    #[serde(
        rename = "receiving-mx-hostname",
        skip_serializing_if = "Option::is_none"
    )]
    pub receiving_mx_hostname: Option<String>,
    #[serde(rename = "receiving-ip", skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<IpAddr>,
}

impl Failure {
    pub fn new(result_type: &str, host: &str, ip: Option<IpAddr>) -> Failure {
        Failure {
            result_type: result_type.to_string(),
            sending_mta_ip: ip.and_then(source_address),
            receiving_mx_hostname: Some(host.trim_end_matches('.').to_string()),
            receiving_ip: ip,
        }
    }
}

/// One line of a period's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    policy: Policy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
}

/// A policy's counts over one period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub successes: u64,
    pub failures: BTreeMap<Failure, u64>,
}

impl Counts {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// A period's sessions: policy domain -> policy -> counts.
pub type Aggregate = BTreeMap<String, BTreeMap<Policy, Counts>>;

/// The durable session log.
#[derive(Debug)]
pub struct TlsRpt {
    dir: PathBuf,
    period: u64,
    /// The open log of the current period: (period start, file).
    current: Mutex<Option<(u64, std::fs::File)>>,
}

impl TlsRpt {
    /// `dir`: `<state>/tls-rpt`; `period`: seconds per report.
    pub fn open(dir: PathBuf, period: u64) -> std::io::Result<Arc<TlsRpt>> {
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(TlsRpt {
            dir,
            period: period.max(1),
            current: Mutex::new(None),
        }))
    }

    pub fn period(&self) -> u64 {
        self.period
    }

    /// `<state>/tls-rpt`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn success(&self, policy: &Policy) {
        self.append(Session {
            policy: policy.clone(),
            failure: None,
        });
    }

    pub fn failure(&self, policy: &Policy, failure: Failure) {
        tracing::debug!(domain = %policy.domain, policy = %policy.kind,
            result = %failure.result_type, "TLS-RPT: failed session recorded");
        self.append(Session {
            policy: policy.clone(),
            failure: Some(failure),
        });
    }

    fn append(&self, session: Session) {
        let Ok(mut line) = serde_json::to_vec(&session) else {
            return;
        };
        line.push(b'\n');
        let start = period_start(now_secs(), self.period);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(s, _)| *s != start) {
            if let Some((_, old)) = current.take() {
                let _ = old.sync_data();
            }
            let path = self.dir.join(format!("{start}.jsonl"));
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(file) => *current = Some((start, file)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "TLS-RPT: cannot open the session log");
                    return;
                }
            }
        }
        if let Some((_, file)) = current.as_mut()
            && let Err(e) = file.write_all(&line)
        {
            tracing::warn!(error = %e, "TLS-RPT: cannot append to the session log");
        }
    }

    /// Flushes the current period's log to disk.
    pub fn sync(&self) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, file)) = current.as_ref() {
            let _ = file.sync_data();
        }
    }

    /// The logs of periods that have ended by `now`, oldest first: (period start, path).
    pub fn ended(&self, now: u64) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ended: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let start: u64 = name.strip_suffix(".jsonl")?.parse().ok()?;
                Some((start, e.path()))
            })
            .filter(|(start, _)| start + self.period <= now)
            .collect();
        ended.sort();
        ended
    }

    /// Removes a period's log once its reports are sent.
    pub fn finish(&self, path: &Path) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((start, _)) = current.as_ref()
            && self.dir.join(format!("{start}.jsonl")) == path
        {
            *current = None;
        }
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "TLS-RPT: cannot remove a sent period");
        }
        let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
    }
}

/// Reads a period's log into counts (a torn last line, from a crash, is skipped).
pub fn aggregate(path: &Path) -> std::io::Result<Aggregate> {
    let file = std::fs::File::open(path)?;
    let mut all = Aggregate::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Ok(session) = serde_json::from_str::<Session>(&line) else {
            continue;
        };
        let counts = all
            .entry(session.policy.domain.clone())
            .or_default()
            .entry(session.policy)
            .or_default();
        match session.failure {
            None => counts.successes += 1,
            Some(f) => *counts.failures.entry(f).or_default() += 1,
        }
    }
    Ok(all)
}

pub fn period_start(now: u64, period: u64) -> u64 {
    now - now % period.max(1)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn normalize(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// The address this host would send from towards `peer` (a connected UDP socket sends nothing).
fn source_address(peer: IpAddr) -> Option<IpAddr> {
    let bind: IpAddr = match peer {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = std::net::UdpSocket::bind((bind, 0)).ok()?;
    socket.connect((peer, 9)).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_survive_reopening_and_aggregate_per_policy() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy::tlsa("Dane.Test.", "mx.dane.test", vec!["3 1 1 AB".into()]);
        // The same failed session, recorded once before and once after reopening.
        let tlsa_invalid = Failure::new(
            "tlsa-invalid",
            "mx.dane.test",
            Some("127.0.0.1".parse().unwrap()),
        );
        {
            let rpt = TlsRpt::open(dir.path().join("r"), 3600).unwrap();
            rpt.success(&policy);
            rpt.failure(&policy, tlsa_invalid.clone());
            rpt.sync();
        }
        let rpt = TlsRpt::open(dir.path().join("r"), 3600).unwrap();
        rpt.failure(&policy, tlsa_invalid);
        rpt.success(&Policy::none("other.test"));
        assert!(
            rpt.ended(now_secs()).is_empty(),
            "the period is still running"
        );
        let (_, path) = rpt.ended(now_secs() + 3600).pop().unwrap();
        let all = aggregate(&path).unwrap();
        let counts = &all["dane.test"][&policy];
        assert_eq!((counts.successes, counts.failed()), (1, 2));
        let (failure, n) = counts.failures.iter().next().unwrap();
        assert_eq!((failure.result_type.as_str(), *n), ("tlsa-invalid", 2));
        assert_eq!(failure.sending_mta_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(all["other.test"].values().next().unwrap().successes, 1);
        rpt.finish(&path);
        assert!(rpt.ended(now_secs() + 3600).is_empty());
    }
}
