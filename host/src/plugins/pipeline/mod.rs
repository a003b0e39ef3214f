//! Running a pipeline: the [`SessionHooks`](crate::policy::SessionHooks) the engine calls for
//! each connection ([`session`]) and the [`QueueHooks`](crate::policy::QueueHooks) the queue
//! manager calls ([`queue`]). Plugins run in order; `continue` passes on; the first decisive
//! verdict ends the chain; rcpt rewrites and data modifications accumulate in order.
//! A failing plugin (trap, limit, bad output, open breaker) gets its `on_error` policy
//! ([`call`]); what a plugin answers is made safe to send by [`sanitize`].
//!
//! - `mod.rs`: the limits and the hook call/answer types shared by both sides.
//! - [`call`]: calling one plugin, checking its output, counting a failure.
//! - [`sanitize`]: codes, enhanced codes and text of a plugin's verdict.
//! - [`session`]: [`PipelineHookFactory`] and [`PipelineSession`], the SMTP-session hooks.
//! - [`queue`]: [`PipelineQueueHooks`], the route, outbound and delivery hooks.

use std::sync::Arc;

use super::bindings::exports::mailwit::plugin::{
    auth, auth_challenge, data, delivery, outbound, rcpt, route,
};
use super::bindings::mailwit::plugin::types as wit;
use crate::policy::Hook;

pub mod call;
pub mod queue;
pub mod sanitize;
pub mod session;

pub use call::failure_verdict;
pub use queue::{PipelineQueueHooks, QUEUE_INSTANCE_USES};
pub use sanitize::sanitize;
pub use session::{PipelineHookFactory, PipelineSession};

/// Most modifications one plugin may return from one data call, and their total size.
pub const MAX_MODIFICATIONS: usize = 256;
pub const MAX_MODIFICATION_BYTES: usize = 64 * 1024;
/// Longest reply text passed on to the client.
pub const MAX_REPLY_TEXT: usize = 400;

/// One hook call with its arguments.
enum HookCall<'a> {
    Connect(&'a wit::SessionInfo),
    Ehlo(&'a wit::SessionInfo, &'a str),
    Auth(&'a wit::SessionInfo, &'a auth::Credentials),
    /// The auth hook's challenge-response companion (answered as an `Auth` output).
    AuthChallenge(&'a wit::SessionInfo, &'a auth_challenge::ChallengeResponse),
    Mail(&'a wit::SessionInfo, &'a wit::ReversePath),
    Rcpt(
        &'a wit::SessionInfo,
        &'a wit::ReversePath,
        &'a wit::Recipient,
    ),
    Data(
        &'a wit::SessionInfo,
        &'a wit::Envelope,
        Arc<[u8]>,
        &'a data::Authentication,
    ),
    Route(&'a wit::ReversePath, &'a wit::Recipient),
    /// The route hook's hold companion (answered as a `Hold` output).
    RouteHold(&'a wit::ReversePath, &'a wit::Recipient),
    Delivery(&'a delivery::DeliveryEvent),
    Outbound(&'a outbound::OutboundAttempt, Arc<[u8]>),
}

impl HookCall<'_> {
    fn hook(&self) -> Hook {
        match self {
            HookCall::Connect(..) => Hook::Connect,
            HookCall::Ehlo(..) => Hook::Ehlo,
            HookCall::Auth(..) | HookCall::AuthChallenge(..) => Hook::Auth,
            HookCall::Mail(..) => Hook::Mail,
            HookCall::Rcpt(..) => Hook::Rcpt,
            HookCall::Data(..) => Hook::Data,
            HookCall::Route(..) | HookCall::RouteHold(..) => Hook::Route,
            HookCall::Delivery(..) => Hook::Delivery,
            HookCall::Outbound(..) => Hook::Outbound,
        }
    }
}

/// What a plugin answered.
enum HookOutput {
    Verdict(wit::Verdict),
    Auth(auth::AuthResult),
    Rcpt(rcpt::RcptResult),
    Data(data::DataResult),
    Route(route::RouteDecision),
    /// `route-hold`: whether to hold the recipient for ODMR collection.
    Hold(bool),
    Delivered,
    Outbound(outbound::OutboundResult),
}
