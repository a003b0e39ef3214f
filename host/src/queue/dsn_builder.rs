//! Builds the RFC 3464 multipart/report for [`super::bounce`] with `delivery::dsn`.

use std::time::{Duration, SystemTime};

use super::bounce::{DsnAction, DsnRecipient};
use crate::delivery::dsn::{self, Action, RecipientReport, Report};
use crate::policy::Recipient;
use crate::spool::MessageMeta;

pub fn build(
    hostname: &str,
    meta: &MessageMeta,
    message: &[u8],
    recipients: &[DsnRecipient],
) -> Vec<u8> {
    let now = SystemTime::now();
    let report = Report {
        reporting_mta: hostname,
        queue_id: &meta.id.0,
        reverse_path: &meta.envelope.reverse_path,
        arrival: SystemTime::UNIX_EPOCH + Duration::from_millis(meta.arrived_ms),
        recipients: recipients
            .iter()
            .map(|r| RecipientReport {
                recipient: Recipient {
                    address: r.address.clone(),
                    notify: None,
                    orcpt: r.orcpt.clone(),
                },
                action: match r.action {
                    DsnAction::Failed => Action::Failed,
                    DsnAction::Delayed => Action::Delayed,
                    DsnAction::Delivered => Action::Delivered,
                    DsnAction::Relayed => Action::Relayed,
                },
                reply: r.reply.clone(),
                // A reply with a remote host is the peer's own words: a Diagnostic-Code.
                remote: r.remote_mta.is_some(),
                remote_mta: r.remote_mta.clone(),
                last_attempt: Some(now),
                will_retry_until: None,
            })
            .collect(),
        message,
        max_returned: dsn::DEFAULT_MAX_RETURNED,
    };
    dsn::build(&report).map(|d| d.message).unwrap_or_default()
}
