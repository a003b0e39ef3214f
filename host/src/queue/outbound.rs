//! The outbound hook before a delivery attempt: plugins see the message as it will be sent and
//! the destination, and may edit the header, defer or fail the attempt, or send it elsewhere.
//! Local Maildir delivery is not an outbound attempt.
//!
//! The message may already carry DKIM signatures (ours, made at submission, or the sender's):
//! an edit of a field a signature covers (named in its `h=` tag) would break it, so such edits
//! are dropped with a warning; adding or removing other fields is safe.

use crate::delivery::{Destination, RecipientOutcome};
use crate::policy::{
    Envelope, HeaderEdit, Modification, OutboundAction, OutboundAttempt, OutboundDestination,
    QueueHooks, Recipient, RelayTarget, ReversePath, TlsPolicy,
};

/// What to do with one attempt after the hook.
pub enum Prepared {
    /// Deliver to this destination, with this message (edited, or `None` for unchanged).
    Deliver(Destination, Option<Vec<u8>>),
    /// Every recipient of the attempt gets this outcome without a delivery.
    Decided(RecipientOutcome),
}

fn outbound_destination(dest: &Destination) -> Option<OutboundDestination> {
    match dest {
        Destination::Maildir(_) => None,
        Destination::Lmtp(target) => Some(OutboundDestination::Lmtp(target.clone())),
        Destination::Relay(t) => Some(OutboundDestination::Relay {
            host: t.host.clone(),
            port: t.port,
        }),
        Destination::Mx(domain) => Some(OutboundDestination::Mx(domain.clone())),
    }
}

fn destination(d: OutboundDestination) -> Destination {
    match d {
        OutboundDestination::Relay { host, port } => Destination::Relay(RelayTarget {
            host,
            port,
            tls: TlsPolicy::Opportunistic,
            credentials: None,
        }),
        OutboundDestination::Mx(domain) => Destination::Mx(domain),
        OutboundDestination::Lmtp(target) => Destination::Lmtp(target),
    }
}

/// The fields (lower case) named in the `h=` tag of any DKIM-Signature of `message`.
fn signed_fields(message: &[u8]) -> std::collections::HashSet<String> {
    let header = crate::mail::header::section(message);
    crate::mail::header::list(header)
        .filter(|(name, _)| name.eq_ignore_ascii_case("DKIM-Signature"))
        .flat_map(|(_, value)| {
            value
                .split(';')
                .filter_map(|tag| tag.trim().strip_prefix("h=").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .flat_map(|names| {
            names
                .split(':')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs the outbound hook chain for an attempt to `dest` carrying `recipients`.
pub async fn prepare(
    hooks: &dyn QueueHooks,
    queue_id: &str,
    reverse_path: &ReversePath,
    recipients: &[Recipient],
    attempt: u32,
    dest: Destination,
    message: &[u8],
) -> Prepared {
    let Some(outbound) = outbound_destination(&dest) else {
        return Prepared::Deliver(dest, None);
    };
    let attempt = OutboundAttempt {
        queue_id: queue_id.to_string(),
        reverse_path: reverse_path.address.clone(),
        recipients: recipients.iter().map(|r| r.address.clone()).collect(),
        destination: outbound,
        attempt,
    };
    let mut decision = hooks.outbound(&attempt, message).await;
    if !decision.headers.is_empty() {
        let signed = signed_fields(message);
        decision.headers.retain(|edit| {
            let name = match edit {
                HeaderEdit::Add(name, _) | HeaderEdit::Remove(name) | HeaderEdit::Replace(name, _) => name,
            };
            let keep = !signed.contains(&name.to_ascii_lowercase());
            if !keep {
                tracing::warn!(queue_id, field = %name, "outbound header edit dropped: the field is covered by a DKIM signature the edit would break");
            }
            keep
        });
    }
    let edited = (!decision.headers.is_empty()).then(|| {
        let mods: Vec<Modification> = decision
            .headers
            .into_iter()
            .map(|e| match e {
                HeaderEdit::Add(name, value) => Modification::AddHeader { name, value },
                HeaderEdit::Remove(name) => Modification::RemoveHeader(name),
                HeaderEdit::Replace(name, value) => Modification::ReplaceHeader { name, value },
            })
            .collect();
        // Header edits only: the envelope copy is thrown away.
        let mut envelope = Envelope {
            reverse_path: reverse_path.clone(),
            recipients: recipients.to_vec(),
        };
        crate::policy::apply_modifications(message, &mut envelope, &mods)
    });
    match decision.action {
        OutboundAction::Proceed => Prepared::Deliver(dest, edited),
        OutboundAction::Reroute(to) => Prepared::Deliver(destination(to), edited),
        OutboundAction::Tempfail(reply) => Prepared::Decided(RecipientOutcome::Deferred(reply)),
        OutboundAction::Fail(reply) => Prepared::Decided(RecipientOutcome::Failed(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::signed_fields;

    #[test]
    fn fields_named_by_any_signature_h_tag() {
        let message = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=a;\r\n\t\
            h=From:From:To:\r\n Subject; bh=x; b=y\r\nDKIM-Signature: v=1; h=date; b=z\r\n\
            From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n";
        let signed = signed_fields(message);
        for name in ["from", "to", "subject", "date"] {
            assert!(signed.contains(name), "{name}: {signed:?}");
        }
        assert!(!signed.contains("x-internal"));
        assert!(signed_fields(b"Subject: unsigned\r\n\r\nbody").is_empty());
    }
}
