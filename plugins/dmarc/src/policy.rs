//! The decision: pure logic over the host's DMARC result and a TXT lookup, tested natively.

use mailwit_plugin::address::domain_matches;
use mailwit_plugin::types::{Modification, Verdict};
use serde::Deserialize;

/// What to do with mail that fails DMARC under `p=quarantine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineAction {
    /// Accept and add the `tag_header` field, so the mailbox side can file it as junk (default).
    #[default]
    Tag,
    /// Accept and hold it in the queue for an operator (the quarantine verdict).
    Hold,
    /// Refuse it like p=reject (550 5.7.1).
    Reject,
    /// Accept it untouched (the Authentication-Results header still says dmarc=fail).
    Accept,
}

/// What to do when the host could not evaluate DMARC (a DNS failure: `temperror`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTemperror {
    /// Accept (default: a DNS outage must not stop mail).
    #[default]
    Continue,
    /// 451 4.7.5 until the sender's DNS answers.
    Tempfail,
}

/// The plugin's `config` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub quarantine: QuarantineAction,
    /// The field added by `quarantine = "tag"`.
    pub tag_header: String,
    /// Honour the RFC 7489 `pct=` tag of the published record (looked up through the `dns`
    /// grant, since RFC 9989 — which the host's evaluator follows — dropped it): only that share
    /// of failing mail gets the policy, the rest the next lower one.
    pub honor_pct: bool,
    /// From-header domains whose policy is never applied here (`example.org`, or `.example.org`
    /// for its subdomains): partners known to send unaligned mail.
    pub allow_domains: Vec<String>,
    /// Envelope sender (MAIL FROM) domains of trusted forwarders and mailing lists, same syntax.
    pub allow_senders: Vec<String>,
    /// Client IPs of trusted forwarders.
    pub allow_ips: Vec<String>,
    pub on_temperror: OnTemperror,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            quarantine: QuarantineAction::Tag,
            tag_header: "X-DMARC-Quarantine".into(),
            honor_pct: true,
            allow_domains: Vec::new(),
            allow_senders: Vec::new(),
            allow_ips: Vec::new(),
            on_temperror: OnTemperror::Continue,
        }
    }
}

/// The facts of one message the decision needs.
pub struct Facts<'a> {
    /// The host's DMARC result ("pass", "fail", "none", "temperror", "permerror").
    pub result: &'a str,
    /// The policy the host found ("none", "quarantine", "reject"; already lowered by t=y).
    pub policy: &'a str,
    /// The From-header domain, when the header has one.
    pub from_domain: Option<&'a str>,
    pub sender_domain: Option<&'a str>,
    pub client_ip: &'a str,
    /// A number in 0..100 for this message, for `pct=` sampling.
    pub sample: u32,
}

/// What the plugin does, with the reason for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub modifications: Vec<Modification>,
    /// A log line when the plugin acted or chose not to; None for an ordinary pass.
    pub note: Option<String>,
}

impl Decision {
    fn pass(note: Option<String>) -> Decision {
        Decision {
            verdict: Verdict::Continue,
            modifications: Vec::new(),
            note,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Quarantine,
    Reject,
}

impl Settings {
    /// Decides for one message. `lookup_txt` answers TXT queries (only asked for `pct=`).
    pub fn decide(
        &self,
        facts: &Facts,
        lookup_txt: &mut dyn FnMut(&str) -> Option<Vec<String>>,
    ) -> Decision {
        let from = facts.from_domain.unwrap_or("");
        match facts.result {
            "fail" => {}
            "temperror" if self.on_temperror == OnTemperror::Tempfail => {
                return Decision {
                    verdict: Verdict::tempfail(
                        451,
                        "4.7.5",
                        format!("DMARC of {from} cannot be evaluated now, try again later"),
                    ),
                    modifications: Vec::new(),
                    note: Some(format!("dmarc: temperror for {from}, tempfail")),
                };
            }
            _ => return Decision::pass(None),
        }
        let mut policy = match facts.policy {
            "reject" => Policy::Reject,
            "quarantine" => Policy::Quarantine,
            _ => return Decision::pass(None),
        };
        if let Some(why) = self.allowed(facts) {
            return Decision::pass(Some(format!(
                "dmarc: {from} fails DMARC (p={}), not applied: {why}",
                facts.policy
            )));
        }
        if self.honor_pct
            && let Some(pct) = facts.from_domain.and_then(|d| published_pct(d, lookup_txt))
            && facts.sample >= pct
        {
            // RFC 7489 6.6.4: mail not sampled gets the next lower policy.
            if policy == Policy::Quarantine {
                return Decision::pass(Some(format!(
                    "dmarc: {from} fails DMARC (p=quarantine), not sampled by pct={pct}"
                )));
            }
            policy = Policy::Quarantine;
        }
        let reject = || Decision {
            verdict: Verdict::reject(
                550,
                "5.7.1",
                format!(
                    "DMARC policy of {from} refuses this message: it is not authenticated by \
                     an aligned SPF or DKIM pass"
                ),
            ),
            modifications: Vec::new(),
            note: Some(format!(
                "dmarc: {from} fails DMARC (p={}), rejected",
                facts.policy
            )),
        };
        match (policy, self.quarantine) {
            (Policy::Reject, _) | (Policy::Quarantine, QuarantineAction::Reject) => reject(),
            (Policy::Quarantine, QuarantineAction::Tag) => Decision {
                verdict: Verdict::Continue,
                modifications: vec![
                    Modification::remove_header(&self.tag_header),
                    Modification::add_header(
                        &self.tag_header,
                        format!("yes (dmarc=fail p={} header.from={from})", facts.policy),
                    ),
                ],
                note: Some(format!(
                    "dmarc: {from} fails DMARC (p={}), tagged",
                    facts.policy
                )),
            },
            (Policy::Quarantine, QuarantineAction::Hold) => Decision {
                verdict: Verdict::Quarantine(format!(
                    "dmarc=fail p={} header.from={from}",
                    facts.policy
                )),
                modifications: Vec::new(),
                note: Some(format!(
                    "dmarc: {from} fails DMARC (p={}), held",
                    facts.policy
                )),
            },
            (Policy::Quarantine, QuarantineAction::Accept) => Decision::pass(Some(format!(
                "dmarc: {from} fails DMARC (p={}), accepted by configuration",
                facts.policy
            ))),
        }
    }

    /// Why a local override lets this message through, if one does.
    fn allowed(&self, facts: &Facts) -> Option<String> {
        if let Some(from) = facts.from_domain
            && let Some(pattern) = self.allow_domains.iter().find(|p| domain_matches(from, p))
        {
            return Some(format!("From domain in allow_domains ({pattern})"));
        }
        if let Some(sender) = facts.sender_domain
            && let Some(pattern) = self
                .allow_senders
                .iter()
                .find(|p| domain_matches(sender, p))
        {
            return Some(format!("sender domain in allow_senders ({pattern})"));
        }
        let ip = facts
            .client_ip
            .parse::<std::net::IpAddr>()
            .ok()?
            .to_canonical();
        self.allow_ips
            .iter()
            .any(|a| {
                a.parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.to_canonical() == ip)
            })
            .then(|| format!("client {ip} in allow_ips"))
    }
}

/// The `pct=` of the DMARC record that governs `domain`: `_dmarc.<domain>`, then its parents
/// (the organizational domain's record also covers subdomains), at most 8 queries. None when
/// no record is found or it has no (valid) `pct=`, which means 100.
fn published_pct(
    domain: &str,
    lookup_txt: &mut dyn FnMut(&str) -> Option<Vec<String>>,
) -> Option<u32> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut name = domain.as_str();
    for _ in 0..8 {
        if let Some(record) = lookup_txt(&format!("_dmarc.{name}"))
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.trim_start().starts_with("v=DMARC1"))
        {
            return record.split(';').find_map(|tag| {
                let (key, value) = tag.split_once('=')?;
                (key.trim().eq_ignore_ascii_case("pct"))
                    .then(|| value.trim().parse::<u32>().ok())
                    .flatten()
                    .filter(|pct| *pct <= 100)
            });
        }
        // Stop below the top-level label: no policy is published for a TLD.
        match name.split_once('.') {
            Some((_, parent)) if parent.contains('.') => name = parent,
            _ => break,
        }
    }
    None
}

/// A number in 0..100 from the bytes given (FNV-1a): the same message always samples the same.
pub fn sample(parts: &[&str]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (hash % 100) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(result: &'a str, policy: &'a str, from: &'a str) -> Facts<'a> {
        Facts {
            result,
            policy,
            from_domain: Some(from),
            sender_domain: Some("evil.test"),
            client_ip: "192.0.2.1",
            sample: 50,
        }
    }

    fn no_dns(_: &str) -> Option<Vec<String>> {
        None
    }

    #[test]
    fn reject_fails_with_550_and_passes_go_on() {
        let s = Settings::default();
        let d = s.decide(&facts("fail", "reject", "example.test"), &mut no_dns);
        assert!(matches!(&d.verdict, Verdict::Reject(r) if r.code == 550 && r.enhanced == "5.7.1"));
        for (result, policy) in [
            ("pass", "reject"),
            ("none", "none"),
            ("fail", "none"),
            ("permerror", "reject"),
            ("temperror", "reject"),
        ] {
            let d = s.decide(&facts(result, policy, "example.test"), &mut no_dns);
            assert_eq!(d.verdict, Verdict::Continue, "{result} {policy}");
            assert!(d.modifications.is_empty());
        }
    }

    #[test]
    fn quarantine_actions() {
        let mut s = Settings::default();
        let d = s.decide(&facts("fail", "quarantine", "q.test"), &mut no_dns);
        assert_eq!(d.verdict, Verdict::Continue);
        assert_eq!(d.modifications.len(), 2);
        s.quarantine = QuarantineAction::Hold;
        let d = s.decide(&facts("fail", "quarantine", "q.test"), &mut no_dns);
        assert!(matches!(d.verdict, Verdict::Quarantine(_)));
        s.quarantine = QuarantineAction::Reject;
        let d = s.decide(&facts("fail", "quarantine", "q.test"), &mut no_dns);
        assert!(matches!(d.verdict, Verdict::Reject(_)));
        s.quarantine = QuarantineAction::Accept;
        let d = s.decide(&facts("fail", "quarantine", "q.test"), &mut no_dns);
        assert_eq!(d.verdict, Verdict::Continue);
        assert!(d.modifications.is_empty());
    }

    #[test]
    fn allow_lists_override() {
        let s: Settings = mailwit_plugin::config::parse(
            "allow_domains = [\".partner.test\"]\nallow_senders = [\"lists.test\"]\nallow_ips = [\"192.0.2.7\"]\n",
        )
        .unwrap();
        let reject =
            |f: &Facts| matches!(s.clone().decide(f, &mut no_dns).verdict, Verdict::Reject(_));
        assert!(!reject(&facts("fail", "reject", "mail.partner.test")));
        assert!(reject(&facts("fail", "reject", "partner.test")));
        let mut f = facts("fail", "reject", "example.test");
        f.sender_domain = Some("LISTS.test");
        assert!(!reject(&f));
        let mut f = facts("fail", "reject", "example.test");
        f.client_ip = "::ffff:192.0.2.7";
        assert!(!reject(&f));
    }

    #[test]
    fn pct_samples_and_lowers_the_policy() {
        let s = Settings::default();
        let mut asked = Vec::new();
        let mut dns = |name: &str| {
            asked.push(name.to_string());
            (name == "_dmarc.example.test").then(|| vec!["v=DMARC1; p=reject; pct=30".to_string()])
        };
        // A subdomain without a record of its own: the parent's pct= applies.
        let mut f = facts("fail", "reject", "news.example.test");
        f.sample = 29;
        assert!(matches!(s.decide(&f, &mut dns).verdict, Verdict::Reject(_)));
        f.sample = 30;
        let d = s.decide(&f, &mut dns);
        assert_eq!(d.verdict, Verdict::Continue);
        assert_eq!(
            d.modifications.len(),
            2,
            "not sampled: quarantined (tagged) instead"
        );
        assert_eq!(
            asked[..2],
            ["_dmarc.news.example.test", "_dmarc.example.test"]
        );
        // pct=0 on quarantine: nothing applies.
        let mut dns0 = |_: &str| Some(vec!["v=DMARC1; p=quarantine; pct=0".to_string()]);
        let d = s.decide(&facts("fail", "quarantine", "q.test"), &mut dns0);
        assert!(d.modifications.is_empty());
        // Without a pct= tag, or with honor_pct off, the policy applies in full.
        let mut dns100 = |_: &str| Some(vec!["v=DMARC1; p=reject".to_string()]);
        let mut f = facts("fail", "reject", "example.test");
        f.sample = 99;
        assert!(matches!(
            s.decide(&f, &mut dns100).verdict,
            Verdict::Reject(_)
        ));
        let off = Settings {
            honor_pct: false,
            ..Settings::default()
        };
        assert!(matches!(
            off.decide(&f, &mut dns0).verdict,
            Verdict::Reject(_)
        ));
    }

    #[test]
    fn temperror_can_tempfail() {
        let s = Settings {
            on_temperror: OnTemperror::Tempfail,
            ..Settings::default()
        };
        let d = s.decide(&facts("temperror", "none", "example.test"), &mut no_dns);
        assert!(matches!(&d.verdict, Verdict::Tempfail(r) if r.code == 451));
    }

    #[test]
    fn samples_are_spread() {
        let hits = (0..1000)
            .filter(|i| sample(&[&format!("session-{i}")]) < 30)
            .count();
        assert!((200..400).contains(&hits), "{hits}");
    }
}
