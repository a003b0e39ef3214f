//! RFC 3464 reports: built by `delivery::dsn`, parsed back with mail-parser, and a bounce for a
//! recipient smtp-sink rejected delivered to another smtp-sink.

use std::time::{Duration, SystemTime};

use crate::support::outbound::*;
use crate::support::sink::*;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use mailwit::delivery::smtp_client;
use mailwit::delivery::{Outbound, RecipientOutcome};
use mailwit::policy::{BodyType, DsnRet, Notify, Recipient, RelayTarget, Reply, ReversePath};
use mailwit::queue::dsn::{self, Action, RecipientReport, Report};

fn original() -> Vec<u8> {
    message(
        "Quarterly report",
        "Numbers inside.\r\n.\r\nMore numbers.\r\n",
    )
}

fn report<'a>(rp: &'a ReversePath, msg: &'a [u8], recipients: Vec<RecipientReport>) -> Report<'a> {
    Report {
        reporting_mta: "mx.mailwit.test",
        queue_id: "0001ABC",
        reverse_path: rp,
        arrival: SystemTime::now() - Duration::from_secs(3600),
        recipients,
        message: msg,
        max_returned: 1 << 20,
    }
}

fn failed(address: &str, orcpt: Option<&str>) -> RecipientReport {
    RecipientReport {
        recipient: Recipient {
            address: address.into(),
            notify: None,
            orcpt: orcpt.map(String::from),
        },
        action: Action::Failed,
        reply: Reply::new(550, "5.1.1", "mx.dest.test said: no such user"),
        remote: true,
        remote_mta: Some("mx.dest.test [192.0.2.7]:25".into()),
        last_attempt: Some(SystemTime::now()),
        will_retry_until: None,
    }
}

/// The message/delivery-status body of a parsed report.
fn status_part(bytes: &[u8]) -> String {
    let parsed = MessageParser::default().parse(bytes).unwrap();
    let part = parsed
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "message" && c.subtype() == Some("delivery-status"))
        })
        .expect("a message/delivery-status part");
    String::from_utf8_lossy(part.contents()).into_owned()
}

#[test]
fn failure_report_structure_with_full_message() {
    let msg = original();
    let rp = ReversePath {
        address: "alice@origin.test".into(),
        ret: Some(DsnRet::Full),
        envid: Some("ENV-42".into()),
        ..ReversePath::default()
    };
    let mut delayed = failed("carol@dest.test", None);
    delayed.action = Action::Delayed;
    delayed.reply = Reply::new(451, "4.4.1", "connect to mx.dest.test: refused");
    delayed.remote = false;
    delayed.will_retry_until = Some(SystemTime::now() + Duration::from_secs(86400));
    let built = dsn::build(&report(
        &rp,
        &msg,
        vec![
            failed("bob@dest.test", Some("rfc822;Bob+2BX@dest.test")),
            delayed,
        ],
    ))
    .unwrap();

    // Envelope: from <> to the original sender, NOTIFY=NEVER so it never bounces back.
    assert_eq!(built.envelope.reverse_path.address, "");
    assert_eq!(built.envelope.recipients.len(), 1);
    assert_eq!(built.envelope.recipients[0].address, "alice@origin.test");
    assert_eq!(built.envelope.recipients[0].notify, Some(Notify::default()));

    let text = String::from_utf8(built.message.clone()).unwrap();
    assert!(text.lines().all(|l| l.len() <= 998));
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "only CRLF line ends"
    );

    let parsed = MessageParser::default().parse(&built.message).unwrap();
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(
        parsed.from().unwrap().first().unwrap().address(),
        Some("MAILER-DAEMON@mx.mailwit.test")
    );
    assert_eq!(
        parsed.to().unwrap().first().unwrap().address(),
        Some("alice@origin.test")
    );
    assert_eq!(
        parsed.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );

    // Three parts under the root: text/plain, message/delivery-status, message/rfc822.
    let PartType::Multipart(children) = &parsed.parts[0].body else {
        panic!("root is multipart");
    };
    assert_eq!(children.len(), 3);
    let types: Vec<String> = children
        .iter()
        .map(|&i| {
            let c = parsed.parts[i as usize].content_type().unwrap();
            format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        types,
        ["text/plain", "message/delivery-status", "message/rfc822"]
    );
    let human = parsed.body_text(0).unwrap();
    assert!(human.contains("<bob@dest.test>: failed"), "{human}");
    let PartType::Message(returned) = &parsed.parts[children[2] as usize].body else {
        panic!("the original message is returned");
    };
    assert_eq!(returned.subject(), Some("Quarterly report"));
    assert_eq!(returned.raw_message(), &msg[..]);

    let status = status_part(&built.message);
    for field in [
        "Reporting-MTA: dns; mx.mailwit.test",
        "Original-Envelope-Id: ENV-42",
        "Arrival-Date: ",
        "Final-Recipient: rfc822; bob@dest.test",
        "Original-Recipient: rfc822;Bob+X@dest.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.dest.test",
        "Diagnostic-Code: smtp; 550 5.1.1 mx.dest.test said: no such user",
        "Final-Recipient: rfc822; carol@dest.test",
        "Action: delayed",
        "Status: 4.4.1",
        "Will-Retry-Until: ",
    ] {
        assert!(status.contains(field), "missing {field:?} in\n{status}");
    }
    // The per-recipient blocks are separated by empty lines: header block + 2 recipients.
    assert_eq!(status.trim_end().split("\r\n\r\n").count(), 3, "{status}");
    // A local (non-remote) reason has no Diagnostic-Code.
    assert_eq!(status.matches("Diagnostic-Code").count(), 1);
}

#[test]
fn headers_only_for_ret_hdrs_and_for_oversized_messages() {
    let msg = original();
    let rp = ReversePath {
        address: "alice@origin.test".into(),
        ret: Some(DsnRet::Hdrs),
        ..ReversePath::default()
    };
    let built = dsn::build(&report(&rp, &msg, vec![failed("bob@dest.test", None)])).unwrap();
    let parsed = MessageParser::default().parse(&built.message).unwrap();
    let last = parsed.parts.last().unwrap();
    let ct = last.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("rfc822-headers")));
    let headers = String::from_utf8_lossy(last.contents()).into_owned();
    assert!(headers.contains("Subject: Quarterly report"), "{headers}");
    assert!(!headers.contains("Numbers inside"), "{headers}");

    // RET=FULL but larger than max_returned: headers only.
    let rp = ReversePath {
        ret: Some(DsnRet::Full),
        ..rp
    };
    let mut r = report(&rp, &msg, vec![failed("bob@dest.test", None)]);
    r.max_returned = 10;
    let built = dsn::build(&r).unwrap();
    let text = String::from_utf8(built.message).unwrap();
    assert!(text.contains("Content-Type: text/rfc822-headers"));
    assert!(!text.contains("Numbers inside"));
}

#[test]
fn null_sender_never_gets_a_report() {
    let msg = original();
    let rp = ReversePath::default();
    assert!(dsn::build(&report(&rp, &msg, vec![failed("bob@dest.test", None)])).is_none());
}

#[test]
fn success_and_relayed_reports() {
    let msg = original();
    let rp = ReversePath {
        address: "alice@origin.test".into(),
        ..ReversePath::default()
    };
    let mut relayed = failed("bob@dest.test", None);
    relayed.action = Action::Relayed;
    relayed.reply = Reply::new(250, "2.0.0", "mx.dest.test said: queued");
    let built = dsn::build(&report(&rp, &msg, vec![relayed])).unwrap();
    let parsed = MessageParser::default().parse(&built.message).unwrap();
    assert_eq!(parsed.subject(), Some("Successful Mail Delivery Report"));
    let status = status_part(&built.message);
    assert!(status.contains("Action: relayed") && status.contains("Status: 2.0.0"));
    // Without RET, success reports carry the header only.
    assert!(!String::from_utf8_lossy(&built.message).contains("Numbers inside"));
}

#[test]
fn remote_text_cannot_inject_fields_and_8bit_is_declared() {
    let msg = message("Grüße", "Schöne Grüße\r\n");
    let rp = ReversePath {
        address: "alice@origin.test".into(),
        ret: Some(DsnRet::Full),
        ..ReversePath::default()
    };
    let mut evil = failed("bob@dest.test", None);
    evil.reply = Reply::new(550, "5.7.1", "no\r\nAction: delivered\r\nX-Evil: 1");
    let built = dsn::build(&report(&rp, &msg, vec![evil])).unwrap();
    let status = status_part(&built.message);
    let starts = |f: &str| status.lines().filter(|l| l.starts_with(f)).count();
    assert_eq!(starts("Action:"), 1, "{status}");
    assert_eq!(starts("X-Evil"), 0, "{status}");
    assert!(!status.contains("\r\nX-Evil"), "{status}");
    assert_eq!(
        built.envelope.reverse_path.body,
        Some(BodyType::EightBitMime)
    );
    let text = String::from_utf8_lossy(&built.message);
    assert!(text.contains("Content-Transfer-Encoding: 8bit"));
}

/// End to end: smtp-sink rejects the recipient, the outcome becomes a bounce, and the bounce is
/// delivered (from <>) to the sender's server, another smtp-sink.
#[tokio::test]
async fn bounce_for_a_rejected_recipient_reaches_the_sender() {
    let rejecting = Sink::start(&["-f", "RCPT"]);
    let senders_mx = Sink::start(&[]);
    let msg = original();
    let rp = sender("alice@origin.test");
    let rcpts = [rcpt("bob@dest.test")];
    let out = Outbound {
        queue_id: "0002XYZ",
        reverse_path: &rp,
        recipients: &rcpts,
        message: &msg,
    };
    let relay = |addr: std::net::SocketAddr| RelayTarget {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: mailwit::policy::TlsPolicy::None,
        credentials: None,
    };
    let report_ = smtp_client::deliver_to_relay(&relay(rejecting.addr), &client(), &out).await;
    let RecipientOutcome::Failed(reply) = report_.outcomes[0].clone() else {
        panic!("expected a failure: {:?}", report_.outcomes);
    };
    assert!(dsn::notify_allows(rcpts[0].notify, Action::Failed));
    let built = dsn::build(&Report {
        reporting_mta: "mx.mailwit.test",
        queue_id: out.queue_id,
        reverse_path: &rp,
        arrival: SystemTime::now(),
        recipients: vec![RecipientReport {
            recipient: rcpts[0].clone(),
            action: Action::Failed,
            reply,
            remote: true,
            remote_mta: report_.remote_mta.clone(),
            last_attempt: Some(SystemTime::now()),
            will_retry_until: None,
        }],
        message: &msg,
        max_returned: 1 << 20,
    })
    .unwrap();
    let bounce = Outbound {
        queue_id: "0003BNC",
        reverse_path: &built.envelope.reverse_path,
        recipients: &built.envelope.recipients,
        message: &built.message,
    };
    let sent = smtp_client::deliver_to_relay(&relay(senders_mx.addr), &client(), &bounce).await;
    assert!(matches!(
        sent.outcomes[..],
        [RecipientOutcome::Delivered(_)]
    ));
    let dump = &senders_mx.wait_messages(1)[0];
    // The peer's words, without our "<host> said:" prefix (that stays in the human part).
    assert!(
        dump.contains("Diagnostic-Code: smtp; 500 5.3.0 Error: command failed"),
        "{dump}"
    );
    assert!(dump.contains("X-Mail-Args: <>"), "{dump}");
    assert!(
        dump.contains("X-Rcpt-Args: <alice@origin.test> NOTIFY=NEVER"),
        "{dump}"
    );
    assert!(dump.contains("Status: 5.3.0"), "{dump}");
    assert!(
        dump.contains("Final-Recipient: rfc822; bob@dest.test"),
        "{dump}"
    );
    assert!(dump.contains("Subject: Quarterly report"), "{dump}");
}
