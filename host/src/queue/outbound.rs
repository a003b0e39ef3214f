//! The outbound hook before a delivery attempt: plugins see the message as it will be sent and
//! the destination, and may edit the header (before any signing), defer or fail the attempt, or
//! send it elsewhere. Local Maildir delivery is not an outbound attempt.

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
    let decision = hooks.outbound(&attempt, message).await;
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
