//! Conversions between the engine's policy types (`crate::policy`) and the generated WIT types.

use super::bindings::exports::mailwit::plugin::{
    auth, auth_challenge, data, delivery, outbound, rcpt, route,
};
use super::bindings::mailwit::plugin::types as wit;
use crate::policy;

pub fn session(s: &policy::SessionInfo) -> wit::SessionInfo {
    wit::SessionInfo {
        id: s.id.clone(),
        listener: s.listener.clone(),
        role: match s.role {
            policy::ListenerRole::Mx => wit::ListenerRole::Mx,
            policy::ListenerRole::Submission => wit::ListenerRole::Submission,
            policy::ListenerRole::Submissions => wit::ListenerRole::Submissions,
            // WIT 0.1 has no odmr role; plugins see an authenticated submission-like listener
            // until the contract gains one.
            policy::ListenerRole::Odmr => wit::ListenerRole::Submission,
        },
        client_ip: s.client.ip().to_string(),
        client_port: s.client.port(),
        local_ip: s.local.ip().to_string(),
        local_port: s.local.port(),
        helo: s.helo.clone(),
        tls: s.tls.as_ref().map(|t| wit::TlsInfo {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
        }),
        authenticated: s.authenticated.clone(),
    }
}

pub fn reverse_path(r: &policy::ReversePath) -> wit::ReversePath {
    wit::ReversePath {
        address: r.address.clone(),
        size: r.size,
        body: r.body.map(|b| match b {
            policy::BodyType::SevenBit => wit::BodyType::SevenBit,
            policy::BodyType::EightBitMime => wit::BodyType::EightBitMime,
            policy::BodyType::BinaryMime => wit::BodyType::BinaryMime,
        }),
        smtputf8: r.smtputf8,
        ret: r.ret.map(|d| match d {
            policy::DsnRet::Full => wit::DsnRet::Full,
            policy::DsnRet::Hdrs => wit::DsnRet::Hdrs,
        }),
        envid: r.envid.clone(),
    }
}

pub fn recipient(r: &policy::Recipient) -> wit::Recipient {
    wit::Recipient {
        address: r.address.clone(),
        notify: r.notify.map(|n| {
            let mut flags = wit::Notify::empty();
            if n.success {
                flags |= wit::Notify::SUCCESS;
            }
            if n.failure {
                flags |= wit::Notify::FAILURE;
            }
            if n.delay {
                flags |= wit::Notify::DELAY;
            }
            flags
        }),
        orcpt: r.orcpt.clone(),
    }
}

pub fn envelope(e: &policy::Envelope) -> wit::Envelope {
    wit::Envelope {
        reverse_path: reverse_path(&e.reverse_path),
        recipients: e.recipients.iter().map(recipient).collect(),
    }
}

pub fn credentials(c: &policy::Credentials) -> auth::Credentials {
    auth::Credentials {
        mechanism: c.mechanism.clone(),
        authzid: c.authzid.clone(),
        authcid: c.authcid.clone(),
        secret: c.secret.clone(),
    }
}

/// A challenge-response exchange (CRAM-MD5): `None` for other mechanisms.
pub fn challenge_response(c: &policy::Credentials) -> Option<auth_challenge::ChallengeResponse> {
    Some(auth_challenge::ChallengeResponse {
        mechanism: c.mechanism.clone(),
        authcid: c.authcid.clone(),
        challenge: c.challenge.clone()?,
        response: c.secret.clone(),
    })
}

fn reply(r: wit::Reply) -> policy::Reply {
    policy::Reply {
        code: r.code,
        enhanced: r.enhanced,
        text: r.text,
    }
}

/// The raw verdict; `pipeline` sanitises replies before anyone sees them.
pub fn verdict(v: wit::Verdict) -> policy::Verdict {
    match v {
        wit::Verdict::Continue => policy::Verdict::Continue,
        wit::Verdict::Accept => policy::Verdict::Accept,
        wit::Verdict::Reject(r) => policy::Verdict::Reject(reply(r)),
        wit::Verdict::Tempfail(r) => policy::Verdict::Tempfail(reply(r)),
        wit::Verdict::Disconnect(r) => policy::Verdict::Disconnect(reply(r)),
        wit::Verdict::Discard => policy::Verdict::Discard,
        wit::Verdict::Quarantine(why) => policy::Verdict::Quarantine(why),
    }
}

pub fn auth_result(r: auth::AuthResult) -> policy::AuthResult {
    match r {
        auth::AuthResult::Ok(identity) => policy::AuthResult::Ok(identity),
        auth::AuthResult::Invalid => policy::AuthResult::Invalid,
        auth::AuthResult::Unknown => policy::AuthResult::Unknown,
        auth::AuthResult::Tempfail(why) => policy::AuthResult::Tempfail(why),
    }
}

pub fn rcpt_result(r: rcpt::RcptResult) -> policy::RcptResult {
    policy::RcptResult {
        verdict: verdict(r.verdict),
        rewrite: r.rewrite,
    }
}

pub fn modification(m: data::Modification) -> policy::Modification {
    use data::Modification as W;
    match m {
        W::AddHeader(h) => policy::Modification::AddHeader {
            name: h.name,
            value: h.value,
        },
        W::InsertHeader(h) => policy::Modification::InsertHeader {
            name: h.name,
            value: h.value,
        },
        W::RemoveHeader(name) => policy::Modification::RemoveHeader(name),
        W::ReplaceHeader(h) => policy::Modification::ReplaceHeader {
            name: h.name,
            value: h.value,
        },
        W::AddRecipient(a) => policy::Modification::AddRecipient(a),
        W::RemoveRecipient(a) => policy::Modification::RemoveRecipient(a),
        W::ChangeReversePath(a) => policy::Modification::ChangeReversePath(a),
    }
}

pub fn route_decision(d: route::RouteDecision) -> policy::RouteDecision {
    use route::RouteDecision as W;
    match d {
        W::Maildir(m) => policy::RouteDecision::Maildir(m),
        W::Lmtp(a) => policy::RouteDecision::Lmtp(a),
        W::Relay(t) => policy::RouteDecision::Relay(policy::RelayTarget {
            host: t.host,
            port: t.port,
            tls: match t.tls {
                route::TlsPolicy::None => policy::TlsPolicy::None,
                route::TlsPolicy::Opportunistic => policy::TlsPolicy::Opportunistic,
                route::TlsPolicy::Required => policy::TlsPolicy::Required,
            },
            credentials: t.credentials,
        }),
        W::Mx => policy::RouteDecision::Mx,
        W::Discard => policy::RouteDecision::Discard,
        W::Continue => policy::RouteDecision::Continue,
    }
}

pub fn delivery_event(e: &policy::DeliveryEvent) -> delivery::DeliveryEvent {
    delivery::DeliveryEvent {
        queue_id: e.message_id.clone(),
        reverse_path: e.reverse_path.clone(),
        recipient: e.recipient.clone(),
        outcome: match e.outcome {
            policy::DeliveryOutcome::Delivered => delivery::Outcome::Delivered,
            policy::DeliveryOutcome::Deferred => delivery::Outcome::Deferred,
            policy::DeliveryOutcome::Failed => delivery::Outcome::Bounced,
        },
        reply: e.reply.as_ref().map(|r| wit::Reply {
            code: r.code,
            enhanced: r.enhanced.clone(),
            text: r.text.clone(),
        }),
        attempts: e.attempts,
    }
}

pub fn authentication(a: &policy::AuthenticationResults) -> data::Authentication {
    data::Authentication {
        spf: a.spf.as_ref().map(|s| data::SpfResult {
            result: s.result.clone(),
            domain: s.domain.clone(),
        }),
        dkim: a
            .dkim
            .iter()
            .map(|d| data::DkimResult {
                result: d.result.clone(),
                domain: d.domain.clone(),
                selector: d.selector.clone(),
            })
            .collect(),
        dmarc: a.dmarc.as_ref().map(|d| data::DmarcResult {
            result: d.result.clone(),
            policy: d.policy.clone(),
            aligned: d.aligned,
        }),
        arc: a
            .arc
            .as_ref()
            .map(|r| data::ArcResult { result: r.clone() }),
    }
}

fn destination(d: &policy::OutboundDestination) -> outbound::Destination {
    use outbound::DestinationKind as K;
    match d {
        policy::OutboundDestination::Relay { host, port } => outbound::Destination {
            kind: K::Relay,
            target: host.clone(),
            port: Some(*port),
        },
        policy::OutboundDestination::Mx(domain) => outbound::Destination {
            kind: K::Mx,
            target: domain.clone(),
            port: None,
        },
        policy::OutboundDestination::Lmtp(target) => outbound::Destination {
            kind: K::Lmtp,
            target: target.clone(),
            port: None,
        },
    }
}

pub fn outbound_attempt(a: &policy::OutboundAttempt) -> outbound::OutboundAttempt {
    outbound::OutboundAttempt {
        queue_id: a.queue_id.clone(),
        reverse_path: a.reverse_path.clone(),
        recipients: a.recipients.clone(),
        destination: destination(&a.destination),
        attempt: a.attempt,
    }
}

pub fn outbound_result(r: outbound::OutboundResult) -> policy::OutboundDecision {
    use outbound::OutboundAction as A;
    let action = match r.action {
        A::Proceed => policy::OutboundAction::Proceed,
        A::Tempfail(r) => policy::OutboundAction::Tempfail(reply(r)),
        A::Fail(r) => policy::OutboundAction::Fail(reply(r)),
        A::Reroute(outbound::Reroute::Relay((host, port))) => {
            policy::OutboundAction::Reroute(policy::OutboundDestination::Relay { host, port })
        }
        A::Reroute(outbound::Reroute::Mx(domain)) => {
            policy::OutboundAction::Reroute(policy::OutboundDestination::Mx(domain))
        }
        A::Reroute(outbound::Reroute::Lmtp(target)) => {
            policy::OutboundAction::Reroute(policy::OutboundDestination::Lmtp(target))
        }
    };
    let headers = r
        .headers
        .into_iter()
        .map(|h| match h {
            outbound::HeaderEdit::Add(f) => policy::HeaderEdit::Add(f.name, f.value),
            outbound::HeaderEdit::Remove(name) => policy::HeaderEdit::Remove(name),
            outbound::HeaderEdit::Replace(f) => policy::HeaderEdit::Replace(f.name, f.value),
        })
        .collect();
    policy::OutboundDecision { action, headers }
}
