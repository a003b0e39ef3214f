//! The queue side of the pipeline named "queue": route, outbound and delivery hooks, run on
//! pooled warm instances.

use std::collections::HashMap;
use std::sync::Arc;

use super::call::{HookCall, HookOutput, call_plugin, failed};
use super::sanitize::sanitize_reply;
use crate::config::plugins::OnError;
use crate::plugins::convert;
use crate::plugins::generation::{Generation, PluginEntry};
use crate::plugins::instance::LiveInstance;
use crate::plugins::runtime::Plugins;
use crate::policy::{
    DeliveryEvent, Hook, OutboundAction, OutboundAttempt, OutboundDecision, OutboundDestination,
    QueueHooks, Recipient, Reply, ReversePath, RouteDecision,
};

/// Route and delivery hooks from the pipeline named "queue". There is no session to keep state
/// for, so instances are pooled: a call takes a warm instance of the plugin (one whose config is
/// already parsed, tables built) or makes one, and gives it back afterwards. The pool is emptied
/// when the generation changes, and an instance is retired after [`QUEUE_INSTANCE_USES`] calls so
/// a slow leak in a guest cannot grow without bound.
pub struct PipelineQueueHooks {
    pub(crate) plugins: Arc<Plugins>,
    warm: std::sync::Mutex<WarmInstances>,
}

/// Warm queue-side instances kept per plugin (more are made when calls overlap).
const QUEUE_WARM_INSTANCES: usize = 16;
/// Calls one queue-side instance serves before it is dropped and replaced.
pub const QUEUE_INSTANCE_USES: u32 = 10_000;

#[derive(Default)]
struct WarmInstances {
    generation: u64,
    idle: HashMap<String, Vec<(LiveInstance, u32)>>,
}

impl PipelineQueueHooks {
    pub(crate) fn new(plugins: Arc<Plugins>) -> Self {
        PipelineQueueHooks {
            plugins,
            warm: Default::default(),
        }
    }

    fn chain(&self, generation: &Generation, hook: Hook) -> Vec<Arc<PluginEntry>> {
        generation
            .pipeline(crate::config::plugins::QUEUE_PIPELINE)
            .map(|p| p.chain(hook).to_vec())
            .unwrap_or_default()
    }

    /// A warm instance of `plugin` from `generation`, if one is idle.
    fn take(&self, generation: u64, plugin: &str) -> (Option<LiveInstance>, u32) {
        let mut warm = self.warm.lock().unwrap();
        if warm.generation != generation {
            warm.generation = generation;
            warm.idle.clear();
        }
        match warm.idle.get_mut(plugin).and_then(Vec::pop) {
            Some((instance, uses)) => (Some(instance), uses),
            None => (None, 0),
        }
    }

    /// Returns a healthy instance to the pool (a failed call has already emptied the slot).
    fn give_back(&self, generation: u64, plugin: &str, slot: Option<LiveInstance>, uses: u32) {
        let Some(instance) = slot else { return };
        if uses >= QUEUE_INSTANCE_USES {
            return;
        }
        let mut warm = self.warm.lock().unwrap();
        if warm.generation != generation {
            return;
        }
        let idle = warm.idle.entry(plugin.to_string()).or_default();
        if idle.len() < QUEUE_WARM_INSTANCES {
            idle.push((instance, uses));
        }
    }

    async fn call(
        &self,
        generation: &Generation,
        entry: &PluginEntry,
        session: &Arc<str>,
        call: HookCall<'_>,
    ) -> Option<HookOutput> {
        let (mut slot, uses) = self.take(generation.number, entry.name());
        let output = call_plugin(entry, &mut slot, session, call).await;
        self.give_back(generation.number, entry.name(), slot, uses + 1);
        output
    }
}

impl PipelineQueueHooks {
    /// A relay or MX route for a recipient in a local domain sends mail that an unauthenticated
    /// client could address off-site: only plugins with the "relay" grant may decide that.
    /// (Recipients outside the local domains reached the queue through an authenticated session
    /// or a plugin that had the grant.)
    fn relays_local_recipient(
        &self,
        entry: &PluginEntry,
        rcpt: &Recipient,
        decision: &RouteDecision,
    ) -> bool {
        matches!(decision, RouteDecision::Relay(_) | RouteDecision::Mx)
            && !entry.may_relay()
            && self.plugins.relay_control()
            && !self.plugins.off_site(&rcpt.address)
    }
}

#[async_trait::async_trait]
impl QueueHooks for PipelineQueueHooks {
    async fn route(&self, from: &ReversePath, rcpt: &Recipient) -> RouteDecision {
        let generation = self.plugins.current();
        let chain = self.chain(&generation, Hook::Route);
        if chain.is_empty() {
            return RouteDecision::Continue;
        }
        let session: Arc<str> = Arc::from("queue");
        let f = convert::reverse_path(from);
        let r = convert::recipient(rcpt);
        for entry in &chain {
            // A plugin that exports `route-hold` is asked it first; a failed call is no opinion,
            // like a failed `route` (then its `route` is asked).
            if entry.loaded.indices.route_hold.is_some()
                && let Some(HookOutput::Hold(true)) = self
                    .call(&generation, entry, &session, HookCall::RouteHold(&f, &r))
                    .await
            {
                return RouteDecision::Hold;
            }
            // A failing route plugin has no opinion: the route table decides.
            if let Some(HookOutput::Route(decision)) = self
                .call(&generation, entry, &session, HookCall::Route(&f, &r))
                .await
            {
                let decision = convert::route_decision(decision);
                if self.relays_local_recipient(entry, rcpt, &decision) {
                    failed(
                        entry,
                        &session,
                        Hook::Route,
                        &format!(
                            "relay control: routing local recipient <{}> off-site needs the \
                             \"relay\" grant; the route table decides instead",
                            rcpt.address
                        ),
                        true,
                    );
                    continue;
                }
                if decision != RouteDecision::Continue {
                    return decision;
                }
            }
        }
        RouteDecision::Continue
    }

    async fn outbound(&self, attempt: &OutboundAttempt, message: &[u8]) -> OutboundDecision {
        let generation = self.plugins.current();
        let chain = self.chain(&generation, Hook::Outbound);
        let mut decision = OutboundDecision::proceed();
        if chain.is_empty() {
            return decision;
        }
        let session: Arc<str> = Arc::from("queue");
        let a = convert::outbound_attempt(attempt);
        let bytes: Arc<[u8]> = Arc::from(message);
        for entry in &chain {
            let output = self
                .call(
                    &generation,
                    entry,
                    &session,
                    HookCall::Outbound(&a, bytes.clone()),
                )
                .await;
            let Some(HookOutput::Outbound(result)) = output else {
                // A failed outbound plugin: its on_error decides the attempt.
                match entry.loaded.config.on_error {
                    OnError::Continue => continue,
                    OnError::Reject => {
                        decision.action = OutboundAction::Fail(Reply::new(
                            554,
                            "5.3.0",
                            "Refused by local policy",
                        ))
                    }
                    OnError::Tempfail | OnError::Disconnect => {
                        decision.action = OutboundAction::Tempfail(Reply::new(
                            451,
                            "4.3.0",
                            "Temporary local problem",
                        ))
                    }
                }
                return decision;
            };
            let result = convert::outbound_result(result);
            if let OutboundAction::Reroute(
                OutboundDestination::Relay { .. } | OutboundDestination::Mx(_),
            ) = &result.action
                && !entry.may_relay()
                && self.plugins.relay_control()
                && attempt.recipients.iter().any(|r| !self.plugins.off_site(r))
            {
                failed(
                    entry,
                    &session,
                    Hook::Outbound,
                    "relay control: re-routing local recipients off-site needs the \"relay\" grant",
                    true,
                );
                continue;
            }
            decision.headers.extend(result.headers);
            match result.action {
                OutboundAction::Proceed => {}
                OutboundAction::Tempfail(r) => {
                    decision.action = OutboundAction::Tempfail(sanitize_reply(
                        r,
                        400..=499,
                        Reply::new(451, "4.7.1", "Try again later"),
                    ));
                    return decision;
                }
                OutboundAction::Fail(r) => {
                    decision.action = OutboundAction::Fail(sanitize_reply(
                        r,
                        500..=599,
                        Reply::new(550, "5.7.1", "Refused by policy"),
                    ));
                    return decision;
                }
                reroute @ OutboundAction::Reroute(_) => {
                    decision.action = reroute;
                    return decision;
                }
            }
        }
        decision
    }

    async fn delivery(&self, event: &DeliveryEvent) {
        let generation = self.plugins.current();
        let chain = self.chain(&generation, Hook::Delivery);
        let session: Arc<str> = Arc::from("queue");
        let e = convert::delivery_event(event);
        for entry in &chain {
            let _ = self
                .call(&generation, entry, &session, HookCall::Delivery(&e))
                .await;
        }
    }
}

impl Plugins {
    /// The queue manager's route and delivery hooks (the pipeline named "queue").
    pub fn queue_hooks(self: &Arc<Self>) -> Arc<dyn QueueHooks> {
        Arc::new(PipelineQueueHooks::new(self.clone()))
    }
}
