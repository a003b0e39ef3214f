//! The queue hooks (route, delivery) from the pipeline named "queue", on pooled warm instances.

use std::collections::HashMap;
use std::sync::Arc;

use crate::plugins::convert;
use crate::plugins::generation::{Generation, PluginEntry};
use crate::plugins::instance::LiveInstance;
use crate::plugins::runtime::Plugins;
use crate::policy::Hook;
use crate::policy::{DeliveryEvent, QueueHooks, Recipient, ReversePath, RouteDecision};

use super::call::{HookCall, HookOutput, call_plugin};

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
            // A failing route plugin has no opinion: the route table decides.
            if let Some(HookOutput::Route(decision)) = self
                .call(&generation, entry, &session, HookCall::Route(&f, &r))
                .await
            {
                let decision = convert::route_decision(decision);
                if decision != RouteDecision::Continue {
                    return decision;
                }
            }
        }
        RouteDecision::Continue
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
