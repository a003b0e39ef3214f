//! Reply and verdict builders, one spelling each: `Verdict::reject(550, "5.1.1", "no such user")`,
//! `Verdict::tempfail`, `Verdict::disconnect`, `Verdict::misconfigured`; a result record from a
//! verdict alone with `.into()`.
//!
//! Codes follow RFC 5321 (basic code) and RFC 3463 (enhanced code); the host checks that the class of
//! the basic code matches the verdict (5xx for reject, 4xx for tempfail).

use crate::types::{DataResult, RcptResult, Reply, Verdict};

impl Reply {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: enhanced.to_string(),
            text: text.into(),
        }
    }
}

impl Verdict {
    /// A permanent refusal, e.g. `Verdict::reject(550, "5.7.1", "refused")`.
    pub fn reject(code: u16, enhanced: &str, text: impl Into<String>) -> Verdict {
        Verdict::Reject(Reply::new(code, enhanced, text))
    }

    /// A temporary refusal, e.g. `Verdict::tempfail(451, "4.7.1", "try again later")`.
    pub fn tempfail(code: u16, enhanced: &str, text: impl Into<String>) -> Verdict {
        Verdict::Tempfail(Reply::new(code, enhanced, text))
    }

    /// Reply, then close the connection, e.g. `Verdict::disconnect(421, "4.7.0", "too many")`.
    pub fn disconnect(code: u16, enhanced: &str, text: impl Into<String>) -> Verdict {
        Verdict::Disconnect(Reply::new(code, enhanced, text))
    }

    /// The verdict for a plugin that cannot work with the configuration it was given
    /// (451 4.3.5 "system incorrectly configured"): the sender retries once an operator fixed it.
    pub fn misconfigured(plugin: &str) -> Verdict {
        Verdict::tempfail(
            451,
            "4.3.5",
            format!("{plugin}: configuration error, try again later"),
        )
    }

    /// Whether this verdict ends the hook's chain (everything but `continue`).
    pub fn is_decisive(&self) -> bool {
        !matches!(self, Verdict::Continue)
    }
}

/// A hook that only decides (no rewrite, no modifications) returns its verdict with `.into()`:
/// `Verdict::Continue.into()`.
impl From<Verdict> for RcptResult {
    fn from(verdict: Verdict) -> RcptResult {
        RcptResult {
            verdict,
            rewrite: None,
        }
    }
}

impl From<Verdict> for DataResult {
    fn from(verdict: Verdict) -> DataResult {
        DataResult {
            verdict,
            modifications: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_every_field() {
        assert_eq!(
            Verdict::reject(550, "5.1.1", "no such user"),
            Verdict::Reject(Reply {
                code: 550,
                enhanced: "5.1.1".into(),
                text: "no such user".into()
            })
        );
        assert!(
            matches!(Verdict::tempfail(451, "4.7.1", "later"), Verdict::Tempfail(r) if r.code == 451)
        );
        assert!(
            matches!(Verdict::disconnect(421, "4.7.0", "bye"), Verdict::Disconnect(r) if r.enhanced == "4.7.0")
        );
        assert!(!Verdict::Continue.is_decisive());
        assert!(Verdict::Accept.is_decisive());
        assert!(
            matches!(Verdict::misconfigured("x"), Verdict::Tempfail(r) if r.enhanced == "4.3.5")
        );
    }

    #[test]
    fn results_from_a_verdict_change_nothing_else() {
        let rcpt = RcptResult::from(Verdict::Accept);
        assert_eq!((rcpt.verdict, rcpt.rewrite), (Verdict::Accept, None));
        let data: DataResult = Verdict::Continue.into();
        assert_eq!(data.verdict, Verdict::Continue);
        assert!(data.modifications.is_empty());
    }
}
