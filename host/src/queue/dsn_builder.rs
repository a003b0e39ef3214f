//! Builds the RFC 3464 multipart/report for [`super::bounce`].
//! TODO(integration): replaced by `delivery::dsn` once branch `delivery` provides it.

use super::bounce::{DsnAction, DsnRecipient};
use crate::policy::DsnRet;
use crate::spool::MessageMeta;

pub fn build(
    hostname: &str,
    meta: &MessageMeta,
    message: &[u8],
    recipients: &[DsnRecipient],
) -> Vec<u8> {
    let boundary = format!("{}/{}", meta.id, hostname);
    let failed = recipients.iter().any(|r| r.action == DsnAction::Failed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if recipients.iter().any(|r| r.action == DsnAction::Delayed) {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };
    let date = chrono::Utc::now().to_rfc2822();
    let arrival = chrono::DateTime::from_timestamp_millis(meta.arrived_ms as i64)
        .unwrap_or_default()
        .to_rfc2822();
    let mut out = String::new();
    out += &format!("From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n");
    out += &format!("To: <{}>\r\n", meta.envelope.reverse_path.address);
    out += &format!("Subject: {subject}\r\n");
    out += &format!("Date: {date}\r\n");
    out += &format!("Message-ID: <{}.dsn@{hostname}>\r\n", meta.id);
    out += "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n";
    out += &format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    );
    out += "This is a MIME-encapsulated message.\r\n\r\n";
    out += &format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    out += &format!("This is the mail system at host {hostname}.\r\n\r\n");
    for r in recipients {
        out += &format!(
            "<{}>: {} ({} {} {})\r\n",
            r.address,
            r.action.as_str(),
            r.reply.code,
            r.reply.enhanced,
            one_line(&r.reply.text)
        );
    }
    out += &format!("\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n");
    out += &format!("Reporting-MTA: dns; {hostname}\r\n");
    if let Some(envid) = &meta.envelope.reverse_path.envid {
        out += &format!("Original-Envelope-Id: {envid}\r\n");
    }
    out += &format!("Arrival-Date: {arrival}\r\n");
    for r in recipients {
        out += "\r\n";
        if let Some(orcpt) = &r.orcpt {
            out += &format!("Original-Recipient: {orcpt}\r\n");
        }
        out += &format!("Final-Recipient: rfc822; {}\r\n", r.address);
        out += &format!("Action: {}\r\n", r.action.as_str());
        out += &format!("Status: {}\r\n", r.reply.enhanced);
        if let Some(mta) = &r.remote_mta {
            out += &format!("Remote-MTA: dns; {mta}\r\n");
        }
        out += &format!(
            "Diagnostic-Code: smtp; {} {} {}\r\n",
            r.reply.code,
            r.reply.enhanced,
            one_line(&r.reply.text)
        );
    }
    let headers_only = meta.envelope.reverse_path.ret == Some(DsnRet::Hdrs) || !failed;
    let mut bytes = out.into_bytes();
    if headers_only {
        let end = find_header_end(message);
        bytes.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n").as_bytes(),
        );
        bytes.extend_from_slice(&message[..end]);
    } else {
        bytes.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
        bytes.extend_from_slice(message);
    }
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn find_header_end(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len())
}
