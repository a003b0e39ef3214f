//! Delivery status notifications (RFC 3461 parameters, RFC 3464 report format).
//!
//! [`build`] writes a `multipart/report; report-type=delivery-status` with three parts: a
//! human-readable explanation, the `message/delivery-status` fields, and the original message
//! (`message/rfc822`, RET=FULL) or only its header (`text/rfc822-headers`, RET=HDRS).
//!
//! Built by hand rather than with mail-builder: the report parts must go out unencoded
//! (RFC 2046 §5.2.1 forbids base64/quoted-printable on message/rfc822; message/delivery-status
//! fields are meant to be read as is), and mail-builder picks transfer encodings itself. The
//! format is small and fixed; the tests parse it back with mail-parser.
//!
//! When to send a report (NOTIFY, null sender, delay) is the queue's decision;
//! [`notify_allows`] answers the RFC 3461 part of it.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::mail::header::{self, fold};
use crate::mail::reply::is_enhanced_code;
use crate::mail::{BodyType, DsnRet, Envelope, Notify, Recipient, Reply, ReversePath, xtext};

/// Messages larger than this come back as headers only (Postfix's bounce_size_limit is 50 kB;
/// this is more generous, but a bounce should not carry a large attachment twice).
pub const DEFAULT_MAX_RETURNED: usize = 1 << 20;

/// RFC 3464 §2.3.3 Action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    /// Delivered to a next hop that does not pass DSN requests on.
    Relayed,
    Expanded,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// Whether the recipient's NOTIFY asks for a report of this action. Without NOTIFY, failures
/// and delays are reported (RFC 3461 §4.1 leaves the default to the MTA; this is Postfix's).
pub fn notify_allows(notify: Option<Notify>, action: Action) -> bool {
    let n = notify.unwrap_or(Notify {
        success: false,
        failure: true,
        delay: true,
    });
    match action {
        Action::Failed => n.failure,
        Action::Delayed => n.delay,
        Action::Delivered | Action::Relayed | Action::Expanded => n.success,
    }
}

/// One recipient's line in the report.
#[derive(Debug, Clone)]
pub struct RecipientReport {
    pub recipient: Recipient,
    pub action: Action,
    /// The reply that decided (Status is its enhanced code; Diagnostic-Code its text).
    pub reply: Reply,
    /// Whether `reply` came from the remote server (then it is a Diagnostic-Code).
    pub remote: bool,
    /// "mx.example.test" (a `DeliveryReport::remote_mta` is accepted as is).
    pub remote_mta: Option<String>,
    pub last_attempt: Option<SystemTime>,
    /// For `Delayed`: when the queue gives up.
    pub will_retry_until: Option<SystemTime>,
}

/// Everything a report needs.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name: Reporting-MTA and MAILER-DAEMON@ domain.
    pub reporting_mta: &'a str,
    pub queue_id: &'a str,
    /// The original transaction's MAIL FROM (the report goes to its address).
    pub reverse_path: &'a ReversePath,
    pub arrival: SystemTime,
    pub recipients: Vec<RecipientReport>,
    /// The original message, CRLF line ends.
    pub message: &'a [u8],
    /// Messages larger than this are returned as headers only, whatever RET says.
    pub max_returned: usize,
}

/// A report ready to spool: its envelope (from `<>` to the original sender, NOTIFY=NEVER so it
/// cannot bounce back) and its bytes.
#[derive(Debug, Clone)]
pub struct Dsn {
    pub envelope: Envelope,
    pub message: Vec<u8>,
}

/// Builds the report. `None` when the original sender is the null reverse-path: reports are never
/// sent about reports (RFC 3461 §6.2, RFC 5321 §4.5.5).
pub fn build(report: &Report<'_>) -> Option<Dsn> {
    if report.reverse_path.address.is_empty() || report.recipients.is_empty() {
        return None;
    }
    let now = SystemTime::now();
    let host = clean(report.reporting_mta);
    let worst = worst_action(&report.recipients);
    let subject = match worst {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
        _ => "Successful Mail Delivery Report",
    };

    // RET decides what comes back; without RET: everything for failures, the header otherwise.
    let full = match report.reverse_path.ret {
        Some(DsnRet::Full) => true,
        Some(DsnRet::Hdrs) => false,
        None => worst == Action::Failed,
    } && report.message.len() <= report.max_returned;
    let returned: &[u8] = if full {
        report.message
    } else {
        header::section(report.message)
    };
    let eight_bit = !returned.is_ascii();
    let boundary = boundary_for(report.queue_id, now, returned);

    let mut out = String::new();
    let mut field = |name: &str, value: &str| out.push_str(&fold(name, value));
    field(
        "From",
        &format!("MAILER-DAEMON@{host} (Mail Delivery System)"),
    );
    field("To", &format!("<{}>", clean(&report.reverse_path.address)));
    field("Subject", subject);
    field("Date", &rfc2822(now));
    field(
        "Message-ID",
        &format!("<dsn.{}.{}@{host}>", clean(report.queue_id), unix(now)),
    );
    field("Auto-Submitted", "auto-replied");
    field("MIME-Version", "1.0");
    field(
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    field(
        "Content-Transfer-Encoding",
        if eight_bit { "8bit" } else { "7bit" },
    );
    out.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    // Part 1: for people.
    out.push_str(&format!("--{boundary}\r\n"));
    out.push_str("Content-Description: Notification\r\n");
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    out.push_str(&human_text(report, &host, worst, full));

    // Part 2: for programs.
    out.push_str(&format!("--{boundary}\r\n"));
    out.push_str("Content-Description: Delivery report\r\n");
    out.push_str("Content-Type: message/delivery-status\r\n\r\n");
    out.push_str(&delivery_status(report, &host));

    // Part 3: what was sent.
    out.push_str(&format!("--{boundary}\r\n"));
    if full {
        out.push_str("Content-Description: Undelivered Message\r\n");
        out.push_str("Content-Type: message/rfc822\r\n");
    } else {
        out.push_str("Content-Description: Undelivered Message Headers\r\n");
        out.push_str("Content-Type: text/rfc822-headers\r\n");
    }
    if eight_bit {
        out.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    out.push_str("\r\n");
    let mut message = out.into_bytes();
    message.extend_from_slice(returned);
    if !message.ends_with(b"\r\n") {
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    let envelope = Envelope {
        reverse_path: ReversePath {
            address: String::new(),
            body: eight_bit.then_some(BodyType::EightBitMime),
            smtputf8: !report.reverse_path.address.is_ascii(),
            ..ReversePath::default()
        },
        recipients: vec![Recipient {
            address: report.reverse_path.address.clone(),
            notify: Some(Notify::default()),
            orcpt: None,
        }],
    };
    Some(Dsn { envelope, message })
}

fn worst_action(recipients: &[RecipientReport]) -> Action {
    let has = |a| recipients.iter().any(|r| r.action == a);
    if has(Action::Failed) {
        Action::Failed
    } else if has(Action::Delayed) {
        Action::Delayed
    } else {
        recipients[0].action
    }
}

fn human_text(report: &Report<'_>, host: &str, worst: Action, full: bool) -> String {
    let mut text = format!("This is the mail system at host {host}.\r\n\r\n");
    text.push_str(match worst {
        Action::Failed => {
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients.\r\n"
        }
        Action::Delayed => {
            "Your message could not be delivered yet to one or more recipients.\r\n\
             It will be retried until it is too old; you need not send it again.\r\n"
        }
        _ => "Your message was successfully delivered to the destination(s)\r\nlisted below.\r\n",
    });
    text.push_str("\r\n");
    for r in &report.recipients {
        let address = clean(&r.recipient.address);
        let why = clean(&format!(
            "{} {} {}",
            r.reply.code, r.reply.enhanced, r.reply.text
        ));
        text.push_str(&format!("<{address}>: {}: {why}\r\n", r.action.as_str()));
    }
    if !full && worst == Action::Failed {
        text.push_str("\r\nOnly the header of the message is returned.\r\n");
    }
    text.push_str("\r\n");
    text
}

/// The message/delivery-status body: per-message fields, then one block per recipient.
fn delivery_status(report: &Report<'_>, host: &str) -> String {
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| out.push_str(&fold(name, value));
    field(&mut out, "Reporting-MTA", &format!("dns; {host}"));
    field(&mut out, "X-Mailwit-Queue-ID", &clean(report.queue_id));
    if let Some(envid) = &report.reverse_path.envid {
        field(&mut out, "Original-Envelope-Id", &clean(envid));
    }
    field(&mut out, "Arrival-Date", &rfc2822(report.arrival));
    for r in &report.recipients {
        out.push_str("\r\n");
        field(
            &mut out,
            "Final-Recipient",
            &address_field(&r.recipient.address),
        );
        if let Some(orcpt) = &r.recipient.orcpt
            && let Some((kind, addr)) = orcpt.split_once(';')
        {
            let value = format!(
                "{};{}",
                kind.trim(),
                clean(&xtext::decode_lossy(addr.trim()))
            );
            field(&mut out, "Original-Recipient", &value);
        }
        field(&mut out, "Action", r.action.as_str());
        field(&mut out, "Status", &status_of(r));
        if let Some(mta) = &r.remote_mta {
            let name = mta.split(" [").next().unwrap_or(mta);
            field(&mut out, "Remote-MTA", &format!("dns; {}", clean(name)));
        }
        if r.remote {
            // The client prefixes replies with "<remote> said: " for logs; the Diagnostic-Code
            // carries the peer's own words only (RFC 3464 §2.3.6).
            let text = r
                .remote_mta
                .as_ref()
                .and_then(|mta| r.reply.text.strip_prefix(&format!("{mta} said: ")))
                .unwrap_or(&r.reply.text);
            let diagnostic = format!("smtp; {} {} {text}", r.reply.code, r.reply.enhanced);
            field(&mut out, "Diagnostic-Code", &clean(&diagnostic));
        }
        if let Some(at) = r.last_attempt {
            field(&mut out, "Last-Attempt-Date", &rfc2822(at));
        }
        if let Some(until) = r.will_retry_until {
            field(&mut out, "Will-Retry-Until", &rfc2822(until));
        }
    }
    out.push_str("\r\n");
    out
}

/// Status: the reply's enhanced code if it is well formed, else a generic code for the action.
fn status_of(r: &RecipientReport) -> String {
    let e = &r.reply.enhanced;
    if is_enhanced_code(e) {
        return e.clone();
    }
    match r.action {
        Action::Failed => "5.0.0".into(),
        Action::Delayed => "4.0.0".into(),
        _ => "2.0.0".into(),
    }
}

/// "rfc822; a@b" for ASCII addresses, "utf-8; …" for internationalized ones (RFC 6533).
fn address_field(address: &str) -> String {
    let kind = if address.is_ascii() {
        "rfc822"
    } else {
        "utf-8"
    };
    format!("{kind}; {}", clean(address))
}

/// Text from elsewhere (a remote reply, an address) made safe for a header: no CR, LF or other
/// control characters, so it cannot end the field or start a new one.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn rfc2822(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc2822()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A boundary that does not occur in the returned content.
fn boundary_for(queue_id: &str, now: SystemTime, content: &[u8]) -> String {
    let id: String = queue_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    let mut n: u64 = rand::random();
    loop {
        let b = format!("{id}.{}.{n:016x}/dsn", unix(now));
        if !content.windows(b.len()).any(|w| w == b.as_bytes()) {
            return b;
        }
        n = n.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_defaults_and_never() {
        assert!(notify_allows(None, Action::Failed));
        assert!(notify_allows(None, Action::Delayed));
        assert!(!notify_allows(None, Action::Relayed));
        assert!(!notify_allows(Some(Notify::default()), Action::Failed));
        let success = Notify {
            success: true,
            ..Notify::default()
        };
        assert!(notify_allows(Some(success), Action::Relayed));
        assert!(!notify_allows(Some(success), Action::Failed));
    }

    #[test]
    fn folding_and_cleaning() {
        let f = fold("Diagnostic-Code", &"word ".repeat(40));
        assert!(f.lines().all(|l| l.len() <= 78), "{f}");
        assert!(f.ends_with("\r\n"));
        assert_eq!(clean("a\r\nBcc: x"), "a  Bcc: x");
        assert_eq!(xtext::decode_lossy("a+2Bb+3D"), "a+b=");
        assert_eq!(xtext::decode_lossy("bad+zz"), "bad+zz");
    }
}
