//! Calling one plugin of a chain: instantiate on demand, call under the breaker, check the
//! answer, and count and log a failure (the caller then applies `on_error`).

use std::sync::Arc;

use crate::config::plugins::OnError;
use crate::plugins::bindings::exports::mailwit::plugin::{
    auth, auth_challenge, data, delivery, outbound, rcpt, route,
};
use crate::plugins::bindings::mailwit::plugin::types as wit;
use crate::plugins::breaker::PluginStats;
use crate::plugins::generation::PluginEntry;
use crate::plugins::instance::{LiveInstance, PoolExhausted};
use crate::policy::{Hook, Reply, Verdict};

/// Most modifications one plugin may return from one data call, and their total size.
pub const MAX_MODIFICATIONS: usize = 256;
pub const MAX_MODIFICATION_BYTES: usize = 64 * 1024;
/// Longest reply text passed on to the client.
pub const MAX_REPLY_TEXT: usize = 400;

/// One hook call with its arguments.
pub(super) enum HookCall<'a> {
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
    pub(super) fn hook(&self) -> Hook {
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
pub(super) enum HookOutput {
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

/// Calls one plugin in `slot` (instantiating it first if empty). `None` means the plugin failed
/// or its breaker is open: the caller applies `on_error`. A failed instance is discarded.
/// Counted (calls, failures, latency) in the server's metrics.
pub(super) async fn call_plugin(
    entry: &PluginEntry,
    slot: &mut Option<LiveInstance>,
    session: &Arc<str>,
    call: HookCall<'_>,
) -> Option<HookOutput> {
    let started = std::time::Instant::now();
    let hook = call.hook();
    let output = call_plugin_unmeasured(entry, slot, session, call).await;
    entry.ctx.metrics.hook_call(
        entry.name(),
        hook.name(),
        started.elapsed(),
        output.is_none(),
    );
    output
}

async fn call_plugin_unmeasured(
    entry: &PluginEntry,
    slot: &mut Option<LiveInstance>,
    session: &Arc<str>,
    call: HookCall<'_>,
) -> Option<HookOutput> {
    let hook = call.hook();
    let plugin = entry.name();
    if !entry.breaker.allows() {
        PluginStats::bump(&entry.stats.skipped);
        tracing::debug!(plugin, session = &**session, %hook, "breaker open: applying on_error without calling the plugin");
        return None;
    }
    if slot.is_none() {
        match LiveInstance::new(&entry.loaded, entry.ctx.clone(), session.clone()).await {
            Ok(instance) => {
                PluginStats::bump(&entry.stats.instantiations);
                *slot = Some(instance);
            }
            Err(e) => {
                // A full pool is capacity, not misbehaviour: the breaker is not told.
                let fault = !e.is::<PoolExhausted>();
                failed(
                    entry,
                    session,
                    hook,
                    &format!("instantiation failed: {e:#}"),
                    fault,
                );
                return None;
            }
        }
    }
    let instance = slot.as_mut().expect("instantiated above");
    let loaded = &entry.loaded;
    PluginStats::bump(&entry.stats.calls);
    // One row per call: the arguments, the instance's method, and how its answer is given.
    macro_rules! dispatch {
        ($($call:ident($($arg:ident),*) => $method:ident, $output:expr;)*) => {
            match call {
                $(HookCall::$call($($arg),*) => {
                    instance.$method(loaded, $($arg),*).await.map($output)
                })*
            }
        };
    }
    let result = dispatch! {
        Connect(s) => connect, HookOutput::Verdict;
        Ehlo(s, name) => ehlo, HookOutput::Verdict;
        Auth(s, c) => auth, HookOutput::Auth;
        AuthChallenge(s, c) => auth_challenge, HookOutput::Auth;
        Mail(s, from) => mail, HookOutput::Verdict;
        Rcpt(s, from, to) => rcpt, HookOutput::Rcpt;
        Data(s, env, msg, authentication) => data, HookOutput::Data;
        Route(from, to) => route, HookOutput::Route;
        RouteHold(from, to) => route_hold, HookOutput::Hold;
        Delivery(event) => delivery, |()| HookOutput::Delivered;
        Outbound(attempt, msg) => outbound, HookOutput::Outbound;
    };
    let checked = result.and_then(check_output);
    match checked {
        Ok(output) => {
            entry.breaker.success();
            Some(output)
        }
        Err(e) => {
            *slot = None;
            failed(entry, session, hook, &format!("{e:#}"), true);
            None
        }
    }
}

/// Rejects output that is misbehaviour rather than policy: floods of modifications, bad rewrites.
fn check_output(output: HookOutput) -> anyhow::Result<HookOutput> {
    match &output {
        HookOutput::Data(result) => {
            let mods = &result.modifications;
            let bytes = mods.iter().map(modification_size).sum();
            check_volume("modifications", mods.len(), bytes)?;
        }
        HookOutput::Outbound(result) => {
            let edits = &result.headers;
            let bytes = edits.iter().map(header_edit_size).sum();
            check_volume("header edits", edits.len(), bytes)?;
        }
        HookOutput::Rcpt(result) => {
            if let Some(address) = &result.rewrite
                && !crate::policy::modifications::valid_address(address)
            {
                anyhow::bail!(
                    "rewrote the recipient to an invalid address {:?}",
                    crate::plugins::imports::log::truncate(address, 80)
                );
            }
        }
        HookOutput::Auth(auth::AuthResult::Ok(identity))
            if identity.is_empty()
                || identity.len() > 256
                || identity.chars().any(char::is_control) =>
        {
            anyhow::bail!("authenticated an invalid identity");
        }
        _ => {}
    }
    Ok(output)
}

/// Modifications (or header edits) of one answer: at most `MAX_MODIFICATIONS` of them and
/// `MAX_MODIFICATION_BYTES` in all.
fn check_volume(what: &str, count: usize, bytes: usize) -> anyhow::Result<()> {
    if count > MAX_MODIFICATIONS {
        anyhow::bail!("returned {count} {what} (at most {MAX_MODIFICATIONS})");
    }
    if bytes > MAX_MODIFICATION_BYTES {
        anyhow::bail!("returned {bytes} bytes of {what} (at most {MAX_MODIFICATION_BYTES})");
    }
    Ok(())
}

fn header_edit_size(edit: &outbound::HeaderEdit) -> usize {
    match edit {
        outbound::HeaderEdit::Add(f) | outbound::HeaderEdit::Replace(f) => {
            f.name.len() + f.value.len()
        }
        outbound::HeaderEdit::Remove(name) => name.len(),
    }
}

fn modification_size(m: &data::Modification) -> usize {
    use data::Modification as W;
    match m {
        W::AddHeader(h) | W::InsertHeader(h) | W::ReplaceHeader(h) => h.name.len() + h.value.len(),
        W::RemoveHeader(s)
        | W::AddRecipient(s)
        | W::RemoveRecipient(s)
        | W::ChangeReversePath(s) => s.len(),
    }
}

/// Counts and logs a call that did not run to an answer; `plugin_fault` says whether the plugin
/// is to blame (and its circuit breaker hears of it).
pub(super) fn failed(
    entry: &PluginEntry,
    session: &str,
    hook: Hook,
    why: &str,
    plugin_fault: bool,
) {
    PluginStats::bump(&entry.stats.failures);
    let plugin = entry.name();
    let policy = entry.loaded.config.on_error;
    tracing::warn!(plugin, session, %hook, ?policy, "plugin failed: {why}");
    if !plugin_fault {
        entry.breaker.abandon();
    } else if entry.breaker.failure() {
        PluginStats::bump(&entry.stats.breaker_opened);
        tracing::error!(
            plugin,
            ?policy,
            "circuit breaker opened after repeated failures"
        );
    }
}

/// The verdict a failure stands for; `None` for `continue`.
pub fn failure_verdict(on_error: OnError) -> Option<Verdict> {
    match on_error {
        OnError::Continue => None,
        OnError::Tempfail => Some(Verdict::Tempfail(Reply::new(
            451,
            "4.3.0",
            "Temporary local problem, please try again later",
        ))),
        OnError::Reject => Some(Verdict::Reject(Reply::new(
            554,
            "5.3.0",
            "Refused by local policy",
        ))),
        OnError::Disconnect => Some(Verdict::Disconnect(Reply::new(
            421,
            "4.3.0",
            "Service temporarily unavailable, closing connection",
        ))),
    }
}
