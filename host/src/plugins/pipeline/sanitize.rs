//! A plugin's verdict made safe to send to an SMTP client.

use super::call::MAX_REPLY_TEXT;
use crate::mail::reply::enhanced_code_fits;
use crate::policy::{Hook, Reply, Verdict};

/// A plugin's verdict made safe to send: codes in the right class, a well-formed enhanced code,
/// a single line of bounded text. Discard and quarantine mean accept outside the data hook.
pub fn sanitize(verdict: Verdict, hook: Hook) -> Verdict {
    match verdict {
        Verdict::Reject(r) => Verdict::Reject(sanitize_reply(
            r,
            500..=599,
            Reply::new(550, "5.7.1", "Refused by policy"),
        )),
        Verdict::Tempfail(r) => Verdict::Tempfail(sanitize_reply(
            r,
            400..=499,
            Reply::new(451, "4.7.1", "Try again later"),
        )),
        Verdict::Disconnect(r) => Verdict::Disconnect(sanitize_reply(
            r,
            400..=599,
            Reply::new(421, "4.7.0", "Closing connection"),
        )),
        Verdict::Discard | Verdict::Quarantine(_) if hook != Hook::Data => Verdict::Accept,
        Verdict::Quarantine(why) => Verdict::Quarantine(clean_text(&why, MAX_REPLY_TEXT)),
        other => other,
    }
}

pub(super) fn sanitize_reply(
    reply: Reply,
    codes: std::ops::RangeInclusive<u16>,
    default: Reply,
) -> Reply {
    let code = if codes.contains(&reply.code) {
        reply.code
    } else {
        default.code
    };
    let enhanced = if enhanced_code_fits(code, &reply.enhanced) {
        reply.enhanced
    } else if enhanced_code_fits(code, &default.enhanced) {
        default.enhanced
    } else {
        format!("{}.0.0", code / 100)
    };
    let text = clean_text(&reply.text, MAX_REPLY_TEXT);
    let text = if text.is_empty() { default.text } else { text };
    Reply {
        code,
        enhanced,
        text,
    }
}

/// One line of printable text, at most `max` bytes.
pub(super) fn clean_text(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::plugins::imports::log::truncate(cleaned.trim(), max).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_fixes_codes_and_text() {
        let v = sanitize(
            Verdict::Reject(Reply::new(999, "9.9.9", "line1\r\nINJECT: x")),
            Hook::Mail,
        );
        assert_eq!(
            v,
            Verdict::Reject(Reply::new(550, "5.7.1", "line1  INJECT: x"))
        );
        let v = sanitize(Verdict::Tempfail(Reply::new(452, "4.2.2", "")), Hook::Rcpt);
        assert_eq!(
            v,
            Verdict::Tempfail(Reply::new(452, "4.2.2", "Try again later"))
        );
        let v = sanitize(
            Verdict::Reject(Reply::new(550, "4.1.1", &*"x".repeat(5000))),
            Hook::Rcpt,
        );
        let Verdict::Reject(r) = v else { panic!() };
        assert_eq!(r.enhanced, "5.7.1");
        assert_eq!(r.text.len(), MAX_REPLY_TEXT);
        assert_eq!(sanitize(Verdict::Discard, Hook::Mail), Verdict::Accept);
        assert_eq!(sanitize(Verdict::Discard, Hook::Data), Verdict::Discard);
    }
}
