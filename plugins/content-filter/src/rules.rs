//! The rules and the scan: pure logic, tested natively.

use std::borrow::Cow;

use mailwit_plugin::types::{Modification, Verdict};
use memchr::memmem::Finder;
use regex_lite::Regex;
use serde::Deserialize;

/// The Generic Test for Unsolicited Bulk Email (https://spamassassin.apache.org/gtube/).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// What a matching rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Add the rule's score (the default).
    #[default]
    Score,
    /// Refuse the message: 554 5.7.1.
    Reject,
    /// Refuse it for now: 451 4.7.1.
    Tempfail,
    /// Accept it and hold it in the queue for an operator.
    Quarantine,
    /// Accept it and deliver it nowhere.
    Discard,
}

/// One `[[plugins.NAME.config.rules]]` entry: where to look, what to look for, what to do.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Named in logs, in X-Spam-Status and in the reply.
    pub name: String,
    /// A header field name to test (every field with that name), or "*" for every field.
    pub header: Option<String>,
    /// Test the body (the first `max_scan_bytes` octets, as text).
    pub body: bool,
    /// Case-insensitive substring.
    pub contains: Option<String>,
    /// Regular expression (regex-lite syntax; add `(?i)` for case-insensitive).
    pub regex: Option<String>,
    pub score: f64,
    pub action: Action,
    /// Reply text for reject/tempfail (default names the rule).
    pub message: Option<String>,
}

/// The plugin's `config` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Refuse messages containing the GTUBE string (554 5.7.1).
    pub gtube: bool,
    /// Words refused (554 5.7.1) wherever they stand as whole words in the Subject or the body,
    /// compared case-insensitively.
    pub reject_words: Vec<String>,
    pub rules: Vec<RuleConfig>,
    /// A score at or above this marks the message as spam in X-Spam-Status.
    pub spam_threshold: f64,
    /// A score at or above this refuses the message (554 5.7.1); none by default.
    pub reject_threshold: Option<f64>,
    /// Add X-Spam-Score and X-Spam-Status (replacing any the client sent).
    pub add_headers: bool,
    /// How much of the body is scanned.
    pub max_scan_bytes: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            gtube: true,
            reject_words: Vec::new(),
            rules: Vec::new(),
            spam_threshold: 5.0,
            reject_threshold: None,
            add_headers: true,
            max_scan_bytes: 1 << 20,
        }
    }
}

enum Pattern {
    /// Lowercase needle, and a searcher for it built once (SIMD-accelerated where the plugin is
    /// built with simd128).
    Contains(String, Box<Finder<'static>>),
    Regex(Regex),
}

enum Target {
    Header(String),
    AllHeaders,
    Body,
}

struct Rule {
    config: RuleConfig,
    target: Target,
    pattern: Pattern,
}

pub struct Filter {
    settings: Settings,
    rules: Vec<Rule>,
    /// Reject words, lowercase, each with its searcher.
    words: Vec<(String, Finder<'static>)>,
    gtube: Finder<'static>,
    /// Whether any rule or word needs the lowercased body / the body as text.
    needs_lower_body: bool,
    needs_body_text: bool,
}

/// What the scan found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub score: f64,
    /// Names of the rules (and `GTUBE`, `REJECT_WORD`) that matched, in order.
    pub hits: Vec<String>,
}

impl Filter {
    /// Compiles the rules; any unusable rule fails the whole configuration.
    pub fn new(settings: Settings) -> Result<Filter, String> {
        let mut rules = Vec::new();
        for (index, config) in settings.rules.iter().enumerate() {
            let label = if config.name.is_empty() {
                format!("rules[{index}]")
            } else {
                config.name.clone()
            };
            let target = match (&config.header, config.body) {
                (Some(name), false) if name == "*" => Target::AllHeaders,
                (Some(name), false) => Target::Header(name.clone()),
                (None, true) => Target::Body,
                _ => return Err(format!("{label}: set exactly one of `header` and `body`")),
            };
            let pattern = match (&config.contains, &config.regex) {
                (Some(text), None) if !text.is_empty() => {
                    let needle = text.to_lowercase();
                    let finder = Box::new(Finder::new(needle.as_bytes()).into_owned());
                    Pattern::Contains(needle, finder)
                }
                (None, Some(expr)) => Pattern::Regex(
                    Regex::new(expr).map_err(|e| format!("{label}: bad regex {expr:?}: {e}"))?,
                ),
                _ => {
                    return Err(format!(
                        "{label}: set exactly one of `contains` and `regex`"
                    ));
                }
            };
            let mut config = config.clone();
            config.name = label;
            rules.push(Rule {
                config,
                target,
                pattern,
            });
        }
        let words: Vec<_> = settings
            .reject_words
            .iter()
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .map(|w| {
                let finder = Finder::new(w.as_bytes()).into_owned();
                (w, finder)
            })
            .collect();
        let body_rules = || rules.iter().filter(|r| matches!(r.target, Target::Body));
        let needs_lower_body =
            !words.is_empty() || body_rules().any(|r| matches!(r.pattern, Pattern::Contains(..)));
        let needs_body_text = body_rules().any(|r| matches!(r.pattern, Pattern::Regex(_)));
        Ok(Filter {
            settings,
            rules,
            words,
            gtube: Finder::new(GTUBE.as_bytes()).into_owned(),
            needs_lower_body,
            needs_body_text,
        })
    }

    pub fn max_scan_bytes(&self) -> u64 {
        self.settings.max_scan_bytes
    }

    /// Scans the header fields and the body octets (any charset; compared as UTF-8 text, invalid
    /// sequences standing for U+FFFD).
    pub fn scan(&self, headers: &[(String, String)], body: impl AsRef<[u8]>) -> Outcome {
        let body = body.as_ref();
        let mut outcome = Outcome {
            verdict: Verdict::Continue,
            score: 0.0,
            hits: Vec::new(),
        };
        if self.settings.gtube && self.gtube.find(body).is_some() {
            outcome.hits.push("GTUBE".into());
            outcome.verdict =
                Verdict::reject(554, "5.7.1", "message refused: GTUBE test string found");
            return outcome;
        }
        // Lowercased once for the words and every `contains` rule on the body; mail bodies are
        // nearly always ASCII (MIME encodes the rest), which lowercases without decoding.
        let body_lower: Cow<[u8]> = if !self.needs_lower_body {
            Cow::Borrowed(&[])
        } else if body.is_ascii() {
            Cow::Owned(body.to_ascii_lowercase())
        } else {
            Cow::Owned(String::from_utf8_lossy(body).to_lowercase().into_bytes())
        };
        let body_text: Cow<str> = if self.needs_body_text {
            String::from_utf8_lossy(body)
        } else {
            Cow::Borrowed("")
        };
        if !self.words.is_empty() {
            let subject = mailwit_plugin::headers::find(headers, "Subject")
                .unwrap_or("")
                .to_lowercase();
            if let Some((word, _)) = self.words.iter().find(|(word, finder)| {
                contains_word(subject.as_bytes(), word.len(), finder)
                    || contains_word(&body_lower, word.len(), finder)
            }) {
                outcome.hits.push("REJECT_WORD".into());
                outcome.verdict = Verdict::reject(
                    554,
                    "5.7.1",
                    format!("message refused: it contains {word:?}"),
                );
                return outcome;
            }
        }
        for rule in &self.rules {
            if !rule.matches(headers, &body_text, &body_lower) {
                continue;
            }
            outcome.hits.push(rule.config.name.clone());
            outcome.score += rule.config.score;
            let text = || {
                rule.config
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("message refused by rule {}", rule.config.name))
            };
            let decided = match rule.config.action {
                Action::Score => None,
                Action::Reject => Some(Verdict::reject(554, "5.7.1", text())),
                Action::Tempfail => Some(Verdict::tempfail(451, "4.7.1", text())),
                Action::Quarantine => {
                    Some(Verdict::Quarantine(format!("rule {}", rule.config.name)))
                }
                Action::Discard => Some(Verdict::Discard),
            };
            if let Some(verdict) = decided {
                outcome.verdict = verdict;
                return outcome;
            }
        }
        if let Some(threshold) = self.settings.reject_threshold
            && outcome.score >= threshold
        {
            outcome.verdict = Verdict::reject(
                554,
                "5.7.1",
                format!(
                    "message refused as spam (score {:.1}, limit {threshold:.1})",
                    outcome.score
                ),
            );
        }
        outcome
    }

    /// X-Spam-Score and X-Spam-Status for an accepted message (replacing any the client sent).
    pub fn modifications(&self, outcome: &Outcome) -> Vec<Modification> {
        if !self.settings.add_headers
            || matches!(outcome.verdict, Verdict::Reject(_) | Verdict::Tempfail(_))
        {
            return Vec::new();
        }
        let spam = outcome.score >= self.settings.spam_threshold;
        let tests = if outcome.hits.is_empty() {
            "none".to_string()
        } else {
            outcome.hits.join(",")
        };
        vec![
            Modification::remove_header("X-Spam-Score"),
            Modification::remove_header("X-Spam-Status"),
            Modification::add_header("X-Spam-Score", format!("{:.1}", outcome.score)),
            Modification::add_header(
                "X-Spam-Status",
                format!(
                    "{}, score={:.1} required={:.1} tests={tests}",
                    if spam { "Yes" } else { "No" },
                    outcome.score,
                    self.settings.spam_threshold
                ),
            ),
        ]
    }
}

impl Rule {
    fn matches(&self, headers: &[(String, String)], body_text: &str, body_lower: &[u8]) -> bool {
        match &self.target {
            Target::Body => match &self.pattern {
                Pattern::Contains(_, finder) => finder.find(body_lower).is_some(),
                Pattern::Regex(regex) => regex.is_match(body_text),
            },
            Target::AllHeaders => headers.iter().any(|(_, value)| self.pattern.matches(value)),
            Target::Header(name) => headers
                .iter()
                .filter(|(field, _)| field.eq_ignore_ascii_case(name))
                .any(|(_, value)| self.pattern.matches(value)),
        }
    }
}

impl Pattern {
    fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Contains(needle, _) => text.to_lowercase().contains(needle.as_str()),
            Pattern::Regex(regex) => regex.is_match(text),
        }
    }
}

/// Whether the word `finder` looks for (`len` octets) occurs in `text` with no letter or digit
/// right before or after it. Both are already lowercase UTF-8.
fn contains_word(text: &[u8], len: usize, finder: &Finder) -> bool {
    finder.find_iter(text).any(|start| {
        let before = char_before(&text[..start]);
        let after = char_after(&text[start + len..]);
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The last character of `text` (U+FFFD for a broken sequence), if any.
fn char_before(text: &[u8]) -> Option<char> {
    let tail = &text[text.len().saturating_sub(4)..];
    if tail.is_empty() {
        return None;
    }
    (0..tail.len())
        .find_map(|i| std::str::from_utf8(&tail[i..]).ok())
        .and_then(|s| s.chars().next_back())
        .or(Some(char::REPLACEMENT_CHARACTER))
}

/// The first character of `text` (U+FFFD for a broken sequence), if any.
fn char_after(text: &[u8]) -> Option<char> {
    let head = &text[..text.len().min(4)];
    if head.is_empty() {
        return None;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
    };
    valid.chars().next().or(Some(char::REPLACEMENT_CHARACTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(toml: &str) -> Filter {
        Filter::new(mailwit_plugin::config::parse(toml).unwrap()).unwrap()
    }

    fn headers(subject: &str) -> Vec<(String, String)> {
        vec![
            ("From".into(), "alice@example.test".into()),
            ("Subject".into(), subject.into()),
        ]
    }

    fn rejected_with(outcome: &Outcome, code: u16, enhanced: &str) -> bool {
        matches!(&outcome.verdict, Verdict::Reject(r) if r.code == code && r.enhanced == enhanced)
    }

    #[test]
    fn gtube_is_refused_with_554_5_7_1() {
        let f = filter("");
        let out = f.scan(&headers("test"), format!("Hello\r\n{GTUBE}\r\n"));
        assert!(rejected_with(&out, 554, "5.7.1"), "{out:?}");
        assert_eq!(out.hits, ["GTUBE"]);
        assert!(f.modifications(&out).is_empty());
        let off = filter("gtube = false");
        assert_eq!(off.scan(&headers("test"), GTUBE).verdict, Verdict::Continue);
    }

    #[test]
    fn body_octets_in_any_charset_are_compared_as_text() {
        let f = filter("reject_words = [\"Überweisung\", \"casino\"]");
        // Non-ASCII body: lowercased as Unicode text.
        let upper = "Bitte die ÜBERWEISUNG heute".as_bytes();
        assert!(rejected_with(&f.scan(&headers("x"), upper), 554, "5.7.1"));
        // A letter right after the word (even a non-ASCII one) makes it part of a longer word.
        let longer = "Überweisungen und Casinoé".as_bytes();
        assert_eq!(f.scan(&headers("x"), longer).verdict, Verdict::Continue);
        // Broken UTF-8 around the word stands for U+FFFD: not a letter, so a word boundary.
        let broken: &[u8] = b"\xff\xfecasino\xc3";
        assert!(rejected_with(&f.scan(&headers("x"), broken), 554, "5.7.1"));
        // ASCII body, mixed case.
        assert!(rejected_with(
            &f.scan(&headers("x"), "CaSiNo."),
            554,
            "5.7.1"
        ));
    }

    #[test]
    fn reject_words_are_whole_words_case_insensitively() {
        let f = filter("reject_words = [\"Casino\", \"free money\"]");
        assert!(rejected_with(
            &f.scan(&headers("Win at the CASINO!"), "hi"),
            554,
            "5.7.1"
        ));
        assert!(rejected_with(
            &f.scan(&headers("hello"), "get Free Money now"),
            554,
            "5.7.1"
        ));
        assert_eq!(
            f.scan(&headers("Casinos of Europe"), "a casinoroyale")
                .verdict,
            Verdict::Continue
        );
        assert_eq!(
            f.scan(&headers("Lunch"), "see you").verdict,
            Verdict::Continue
        );
        let out = f.scan(&headers("casino"), "");
        assert!(matches!(&out.verdict, Verdict::Reject(r) if r.text.contains("casino")));
    }

    #[test]
    fn rules_score_and_headers_report_it() {
        let f = filter(
            r#"
            spam_threshold = 3.0
            [[rules]]
            name = "SHOUTING"
            header = "Subject"
            regex = "^[A-Z !]{8,}$"
            score = 2.0
            [[rules]]
            name = "PILLS"
            body = true
            contains = "PiLlS"
            score = 1.5
            [[rules]]
            name = "ANY_HEADER"
            header = "*"
            contains = "bulk-sender"
            score = 0.5
        "#,
        );
        let out = f.scan(&headers("BUY NOW!!!"), "cheap pills here");
        assert_eq!(out.verdict, Verdict::Continue);
        assert_eq!(out.hits, ["SHOUTING", "PILLS"]);
        assert!((out.score - 3.5).abs() < 1e-9);
        let mods = f.modifications(&out);
        assert!(mods.contains(&Modification::add_header("X-Spam-Score", "3.5")));
        assert!(mods.contains(&Modification::add_header(
            "X-Spam-Status",
            "Yes, score=3.5 required=3.0 tests=SHOUTING,PILLS"
        )));
        assert!(mods.contains(&Modification::remove_header("X-Spam-Status")));
        let clean = f.scan(&headers("Lunch"), "see you");
        assert!(f.modifications(&clean).contains(&Modification::add_header(
            "X-Spam-Status",
            "No, score=0.0 required=3.0 tests=none"
        )));
        let bulk = f.scan(&[("X-Mailer".into(), "Bulk-Sender 2".into())], "");
        assert_eq!(bulk.hits, ["ANY_HEADER"]);
    }

    #[test]
    fn actions_and_reject_threshold_decide() {
        let f = filter(
            r#"
            reject_threshold = 2.0
            [[rules]]
            name = "HOLD"
            header = "X-Hold"
            contains = "yes"
            action = "quarantine"
            [[rules]]
            name = "LATER"
            header = "X-Later"
            contains = "yes"
            action = "tempfail"
            message = "come back later"
            [[rules]]
            name = "BAD"
            body = true
            contains = "bad"
            score = 2.5
        "#,
        );
        let hold = f.scan(&[("X-Hold".into(), "yes".into())], "");
        assert_eq!(hold.verdict, Verdict::Quarantine("rule HOLD".into()));
        let later = f.scan(&[("X-Later".into(), "YES".into())], "");
        assert_eq!(
            later.verdict,
            Verdict::tempfail(451, "4.7.1", "come back later")
        );
        assert!(rejected_with(&f.scan(&[], "bad"), 554, "5.7.1"));
    }

    #[test]
    fn unusable_rules_fail_the_configuration() {
        let bad = |t: &str| {
            Filter::new(mailwit_plugin::config::parse(t).unwrap())
                .err()
                .unwrap()
        };
        assert!(bad("[[rules]]\nname = \"X\"\nbody = true\nregex = \"(\"").contains("bad regex"));
        assert!(
            bad("[[rules]]\nbody = true\nheader = \"S\"\ncontains = \"x\"").contains("rules[0]")
        );
        assert!(bad("[[rules]]\nbody = true").contains("exactly one of `contains`"));
    }
}
