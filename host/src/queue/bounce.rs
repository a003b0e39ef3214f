//! When to send delivery status notifications, and what goes into them. The report itself is
//! built by [`crate::delivery::dsn`].
//!
//! Rules (RFC 3461): null-sender mail never gets a DSN (so bounces never loop: a bounce that fails
//! is logged and dropped); a recipient without NOTIFY gets failure and delay reports; NOTIFY=NEVER
//! gets none; SUCCESS is reported only when the final hop is ours (Maildir, LMTP: "delivered") or
//! the next hop could not take the DSN request ("relayed"). A DSN is a new spooled message from
//! `<>` (with NOTIFY=NEVER on its recipient).

use super::dsn::{self, Action, RecipientReport, Report};
use crate::spool::{Incoming, MessageMeta};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::dsn::notify_allows as wanted;

/// The DSN to spool for `meta`'s message, or None when nobody may get one.
pub fn report(
    hostname: &str,
    meta: &MessageMeta,
    message: &[u8],
    recipients: Vec<RecipientReport>,
) -> Option<Incoming> {
    let built = dsn::build(&Report {
        reporting_mta: hostname,
        queue_id: &meta.id.0,
        reverse_path: &meta.envelope.reverse_path,
        arrival: UNIX_EPOCH + Duration::from_millis(meta.arrived_ms),
        recipients,
        message,
        max_returned: dsn::DEFAULT_MAX_RETURNED,
    })?;
    Some(Incoming {
        envelope: built.envelope,
        message: built.message,
        quarantine: None,
        session_id: format!("dsn-{}", meta.id),
    })
}

/// One recipient's entry.
pub fn entry(
    recipient: &crate::policy::Recipient,
    action: Action,
    reply: &crate::policy::Reply,
    remote_mta: Option<String>,
    will_retry_until: Option<SystemTime>,
) -> RecipientReport {
    RecipientReport {
        recipient: recipient.clone(),
        action,
        reply: reply.clone(),
        remote: remote_mta.is_some(),
        remote_mta,
        last_attempt: Some(SystemTime::now()),
        will_retry_until,
    }
}
