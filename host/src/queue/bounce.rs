//! When to send delivery status notifications, and spooling them.
//!
//! Rules (RFC 3461): null-sender mail never gets a DSN (so bounces never loop: a bounce that fails
//! is logged and dropped); a recipient without NOTIFY gets failure and delay reports; NOTIFY=NEVER
//! gets none; SUCCESS is reported only when the final hop is ours (Maildir: "delivered") or the
//! next hop could not take the DSN request ("relayed"). A DSN is a new spooled message from `<>`.

use crate::policy::{Envelope, Notify, Recipient, Reply, ReversePath};
use crate::spool::{Incoming, MessageMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

impl DsnAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
        }
    }
}

/// One recipient's line in a report.
#[derive(Debug, Clone)]
pub struct DsnRecipient {
    pub address: String,
    /// ORCPT as given ("rfc822;bob@example.test").
    pub orcpt: Option<String>,
    pub action: DsnAction,
    pub reply: Reply,
    pub remote_mta: Option<String>,
}

/// Whether `notify` asks for (or, absent, allows) a report of `action`.
pub fn wanted(notify: Option<Notify>, action: DsnAction) -> bool {
    match (notify, action) {
        (None, DsnAction::Failed | DsnAction::Delayed) => true,
        (None, _) => false,
        (Some(n), DsnAction::Failed) => n.failure,
        (Some(n), DsnAction::Delayed) => n.delay,
        (Some(n), DsnAction::Delivered | DsnAction::Relayed) => n.success,
    }
}

/// The DSN to spool for `meta`'s message, or None when nobody may get one.
pub fn report(
    hostname: &str,
    meta: &MessageMeta,
    message: &[u8],
    recipients: &[DsnRecipient],
) -> Option<Incoming> {
    let to = &meta.envelope.reverse_path.address;
    if to.is_empty() || recipients.is_empty() {
        return None;
    }
    let bytes = super::dsn_builder::build(hostname, meta, message, recipients);
    Some(Incoming {
        envelope: Envelope {
            reverse_path: ReversePath::default(),
            recipients: vec![Recipient {
                address: to.clone(),
                notify: None,
                orcpt: None,
            }],
        },
        message: bytes,
        quarantine: None,
        session_id: format!("dsn-{}", meta.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_rules() {
        let never = Some(Notify::default());
        let success = Some(Notify {
            success: true,
            ..Notify::default()
        });
        assert!(wanted(None, DsnAction::Failed));
        assert!(wanted(None, DsnAction::Delayed));
        assert!(!wanted(None, DsnAction::Delivered));
        assert!(!wanted(never, DsnAction::Failed));
        assert!(wanted(success, DsnAction::Relayed));
        assert!(!wanted(success, DsnAction::Failed));
    }
}
