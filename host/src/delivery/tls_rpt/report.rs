//! The aggregate report (RFC 8460 §4): its JSON, gzip'ed, and the mail that carries it (§5.3).

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Counts, Failure, Policy};

/// RFC 8460 §4.4's JSON: its member names are the fields' names in kebab-case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DateRange {
    #[serde(rename = "start-datetime")]
    pub start: String,
    #[serde(rename = "end-datetime")]
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyResult {
    pub policy: Policy,
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    #[serde(rename = "total-successful-session-count")]
    pub successful: u64,
    #[serde(rename = "total-failure-session-count")]
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureDetail {
    #[serde(flatten)]
    pub failure: Failure,
    #[serde(rename = "failed-session-count")]
    pub count: u64,
}

/// Who sends the reports.
#[derive(Debug, Clone)]
pub struct Submitter {
    pub organization: String,
    pub contact: String,
    /// The host name in TLS-Report-Submitter and the file name.
    pub name: String,
    /// The From address of report mail.
    pub from: String,
}

impl Report {
    /// The report on one domain's `policies` for the period `[start, start + period)`.
    pub fn build(
        submitter: &Submitter,
        start: u64,
        period: u64,
        policies: &BTreeMap<Policy, Counts>,
    ) -> Report {
        let unique: u64 = rand::random();
        Report {
            organization_name: submitter.organization.clone(),
            date_range: DateRange {
                start: rfc3339(start),
                end: rfc3339(start + period - 1),
            },
            contact_info: submitter.contact.clone(),
            report_id: format!("{start}.{unique:016x}@{}", submitter.name),
            policies: policies
                .iter()
                .map(|(policy, counts)| PolicyResult {
                    policy: policy.clone(),
                    summary: Summary {
                        successful: counts.successes,
                        failed: counts.failed(),
                    },
                    failure_details: counts
                        .failures
                        .iter()
                        .map(|(failure, &count)| FailureDetail {
                            failure: failure.clone(),
                            count,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The JSON, gzip'ed (`application/tlsrpt+gzip`).
    pub fn gzip(&self) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = encoder.write_all(&self.json());
        encoder.finish().unwrap_or_default()
    }

    /// The file name of §5.1: `sender!policy-domain!begin!end!unique-id.json.gz`.
    pub fn file_name(&self, submitter: &str, domain: &str, start: u64, end: u64) -> String {
        let unique: String = self
            .report_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        format!("{submitter}!{domain}!{start}!{end}!{unique}.json.gz")
    }

    /// The report mail of §5.3: multipart/report; report-type="tlsrpt", a human-readable part
    /// and the gzip'ed JSON; Subject, TLS-Report-Domain and TLS-Report-Submitter as the RFC
    /// gives them. CRLF line ends.
    pub fn mail(
        &self,
        submitter: &Submitter,
        domain: &str,
        to: &[String],
        start: u64,
        period: u64,
    ) -> Vec<u8> {
        let gz = self.gzip();
        let boundary = format!("tlsrpt-{:016x}", rand::random::<u64>());
        let file = self.file_name(&submitter.name, domain, start, start + period);
        let date = chrono::Utc::now().to_rfc2822();
        let mut m = String::new();
        m.push_str(&format!("From: <{}>\r\n", submitter.from));
        let to: Vec<String> = to.iter().map(|a| format!("<{a}>")).collect();
        m.push_str(&format!("To: {}\r\n", to.join(", ")));
        m.push_str(&format!("Date: {date}\r\n"));
        m.push_str(&format!(
            "Message-ID: <{}.{:x}@{}>\r\n",
            start,
            rand::random::<u64>(),
            submitter.name
        ));
        m.push_str(&format!(
            "Subject: Report Domain: {domain} Submitter: {} Report-ID: <{}>\r\n",
            submitter.name, self.report_id
        ));
        m.push_str(&format!("TLS-Report-Domain: {domain}\r\n"));
        m.push_str(&format!("TLS-Report-Submitter: {}\r\n", submitter.name));
        m.push_str("Auto-Submitted: auto-generated\r\n");
        m.push_str("MIME-Version: 1.0\r\n");
        m.push_str(&format!(
            "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"{boundary}\"\r\n\r\n"
        ));
        m.push_str("This is a multipart message in MIME format.\r\n\r\n");
        m.push_str(&format!("--{boundary}\r\n"));
        m.push_str("Content-Type: text/plain; charset=us-ascii\r\n\r\n");
        m.push_str(&format!(
            "This is an aggregate TLS report (RFC 8460) from {} for {domain},\r\n\
             {} to {}.\r\n\r\n",
            submitter.name, self.date_range.start, self.date_range.end
        ));
        m.push_str(&format!("--{boundary}\r\n"));
        m.push_str("Content-Type: application/tlsrpt+gzip\r\n");
        m.push_str("Content-Transfer-Encoding: base64\r\n");
        m.push_str(&format!(
            "Content-Disposition: attachment;\r\n\tfilename=\"{file}\"\r\n\r\n"
        ));
        let encoded = base64::engine::general_purpose::STANDARD.encode(&gz);
        for chunk in encoded.as_bytes().chunks(76) {
            m.push_str(std::str::from_utf8(chunk).unwrap_or(""));
            m.push_str("\r\n");
        }
        m.push_str(&format!("--{boundary}--\r\n"));
        m.into_bytes()
    }
}

/// Where a domain wants its reports (RFC 8460 §3): the `rua` URIs of its one `v=TLSRPTv1` TXT
/// record, `mailto:` and `https:` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rua {
    Mailto(String),
    Https(String),
}

pub fn parse_txt(records: &[String]) -> Result<Vec<Rua>, String> {
    let rpt: Vec<&String> = records
        .iter()
        .filter(|r| {
            let r = r.trim_start();
            r.starts_with("v=TLSRPTv1;") || r.trim_end() == "v=TLSRPTv1"
        })
        .collect();
    if rpt.len() != 1 {
        return Err(format!(
            "{} v=TLSRPTv1 records (want exactly one)",
            rpt.len()
        ));
    }
    let rua = rpt[0]
        .split(';')
        .map(str::trim)
        .find_map(|field| field.strip_prefix("rua="))
        .ok_or("no rua field")?;
    let mut out = Vec::new();
    for uri in rua.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        if let Some(address) = uri.strip_prefix("mailto:") {
            // %-escapes (RFC 6068) are rare in report addresses; ',' and ';' would be escaped.
            let address = address.split('?').next().unwrap_or("").trim();
            if address.contains('@') {
                out.push(Rua::Mailto(address.to_string()));
            }
        } else if uri.starts_with("https://") {
            out.push(Rua::Https(uri.to_string()));
        } else {
            tracing::debug!(%uri, "TLS-RPT: unsupported rua scheme ignored");
        }
    }
    if out.is_empty() {
        return Err(format!("no usable rua URI in {rua:?}"));
    }
    Ok(out)
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitter() -> Submitter {
        Submitter {
            organization: "Example Org".into(),
            contact: "tls@example.test".into(),
            name: "mail.example.test".into(),
            from: "tls@example.test".into(),
        }
    }

    #[test]
    fn rua_records() {
        let r = parse_txt(&["v=TLSRPTv1; rua=mailto:a@x.test,https://r.x.test/up".into()]);
        assert_eq!(
            r.unwrap(),
            vec![
                Rua::Mailto("a@x.test".into()),
                Rua::Https("https://r.x.test/up".into())
            ]
        );
        assert!(parse_txt(&["v=spf1 -all".into()]).is_err());
        assert!(parse_txt(&["v=TLSRPTv1; rua=ftp://x".into()]).is_err());
        assert!(
            parse_txt(&[
                "v=TLSRPTv1; rua=mailto:a@x.test".into(),
                "v=TLSRPTv1; rua=mailto:b@x.test".into()
            ])
            .is_err()
        );
    }

    #[test]
    fn report_json_has_the_rfc_fields() {
        let policy = Policy::sts(
            "y.test",
            vec!["version: STSv1".into()],
            vec!["*.y.test".into()],
        );
        let mut counts = Counts {
            successes: 5,
            ..Counts::default()
        };
        counts
            .failures
            .insert(Failure::new("certificate-expired", "mx.y.test", None), 3);
        let policies = BTreeMap::from([(policy, counts)]);
        let report = Report::build(&submitter(), 86_400, 86_400, &policies);
        let v: serde_json::Value = serde_json::from_slice(&report.json()).unwrap();
        assert_eq!(v["organization-name"], "Example Org");
        assert_eq!(v["date-range"]["start-datetime"], "1970-01-02T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "1970-01-02T23:59:59Z");
        assert_eq!(v["contact-info"], "tls@example.test");
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["mx-host"][0], "*.y.test");
        assert_eq!(p["summary"]["total-successful-session-count"], 5);
        assert_eq!(p["summary"]["total-failure-session-count"], 3);
        assert_eq!(
            p["failure-details"][0]["result-type"],
            "certificate-expired"
        );
        assert_eq!(p["failure-details"][0]["failed-session-count"], 3);
        assert_eq!(
            p["failure-details"][0]["receiving-mx-hostname"],
            "mx.y.test"
        );
        let mail = String::from_utf8(report.mail(
            &submitter(),
            "y.test",
            &["r@y.test".into()],
            86_400,
            86_400,
        ))
        .unwrap();
        assert!(mail.contains("report-type=\"tlsrpt\""));
        assert!(mail.contains("TLS-Report-Domain: y.test\r\n"));
        assert!(mail.contains("filename=\"mail.example.test!y.test!86400!172800!"));
    }
}
