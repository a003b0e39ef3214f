//! Running a pipeline: the [`SessionHooks`] the engine calls for each connection and the
//! [`QueueHooks`] the queue manager calls. Plugins run in order; `continue` passes on; the first
//! decisive verdict ends the chain; rcpt rewrites and data modifications accumulate in order.
//! A failing plugin (trap, limit, bad output, open breaker) gets its `on_error` policy.

use std::collections::HashMap;
use std::sync::Arc;

use super::bindings::exports::mailwit::plugin::{auth, data, delivery, rcpt, route};
use super::bindings::mailwit::plugin::types as wit;
use super::breaker::PluginStats;
use super::convert;
use super::generation::{Generation, Pipeline, PluginEntry};
use super::instance::{LiveInstance, PoolExhausted};
use super::runtime::Plugins;
use crate::config::plugins::OnError;
use crate::policy::Hook;
use crate::policy::{
    AuthResult, Credentials, DataResult, DeliveryEvent, Envelope, HookFactory, Message, QueueHooks,
    RcptResult, Recipient, Reply, ReversePath, RouteDecision, SessionHooks, SessionInfo, Verdict,
};

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
    Mail(&'a wit::SessionInfo, &'a wit::ReversePath),
    Rcpt(
        &'a wit::SessionInfo,
        &'a wit::ReversePath,
        &'a wit::Recipient,
    ),
    Data(&'a wit::SessionInfo, &'a wit::Envelope, Arc<[u8]>),
    Route(&'a wit::ReversePath, &'a wit::Recipient),
    Delivery(&'a delivery::DeliveryEvent),
}

impl HookCall<'_> {
    fn hook(&self) -> Hook {
        match self {
            HookCall::Connect(..) => Hook::Connect,
            HookCall::Ehlo(..) => Hook::Ehlo,
            HookCall::Auth(..) => Hook::Auth,
            HookCall::Mail(..) => Hook::Mail,
            HookCall::Rcpt(..) => Hook::Rcpt,
            HookCall::Data(..) => Hook::Data,
            HookCall::Route(..) => Hook::Route,
            HookCall::Delivery(..) => Hook::Delivery,
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
    Delivered,
}

/// Calls one plugin in `slot` (instantiating it first if empty). `None` means the plugin failed
/// or its breaker is open: the caller applies `on_error`. A failed instance is discarded.
async fn call_plugin(
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
    let result = match call {
        HookCall::Connect(s) => instance.connect(loaded, s).await.map(HookOutput::Verdict),
        HookCall::Ehlo(s, name) => instance
            .ehlo(loaded, s, name)
            .await
            .map(HookOutput::Verdict),
        HookCall::Auth(s, c) => instance.auth(loaded, s, c).await.map(HookOutput::Auth),
        HookCall::Mail(s, from) => instance
            .mail(loaded, s, from)
            .await
            .map(HookOutput::Verdict),
        HookCall::Rcpt(s, from, to) => instance
            .rcpt(loaded, s, from, to)
            .await
            .map(HookOutput::Rcpt),
        HookCall::Data(s, env, msg) => instance
            .data(loaded, s, env, msg)
            .await
            .map(HookOutput::Data),
        HookCall::Route(from, to) => instance
            .route(loaded, from, to)
            .await
            .map(HookOutput::Route),
        HookCall::Delivery(event) => instance
            .delivery(loaded, event)
            .await
            .map(|()| HookOutput::Delivered),
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
            if mods.len() > MAX_MODIFICATIONS {
                anyhow::bail!(
                    "returned {} modifications (at most {MAX_MODIFICATIONS})",
                    mods.len()
                );
            }
            let bytes: usize = mods.iter().map(modification_size).sum();
            if bytes > MAX_MODIFICATION_BYTES {
                anyhow::bail!(
                    "returned {bytes} bytes of modifications (at most {MAX_MODIFICATION_BYTES})"
                );
            }
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
fn failed(entry: &PluginEntry, session: &str, hook: Hook, why: &str, plugin_fault: bool) {
    PluginStats::bump(&entry.stats.failures);
    let plugin = entry.name();
    let policy = entry.loaded.config.on_error;
    tracing::warn!(plugin, session, %hook, ?policy, "plugin failed: {why}");
    if plugin_fault && entry.breaker.failure() {
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

/// A plugin's verdict made safe to send: codes in the right class, a well-formed enhanced code,
/// a single line of bounded text. Discard and quarantine mean accept outside the data hook.
pub fn sanitize(verdict: Verdict, hook: Hook) -> Verdict {
    match verdict {
        Verdict::Reject(r) => Verdict::Reject(sanitize_reply(
            r,
            500..=599,
            Reply::new(550, "5.7.1", "Refused by policy"),
        )),
        Verdict::Tempfail(r) => Verdict::Tempfail(sanitize_reply(
            r,
            400..=499,
            Reply::new(451, "4.7.1", "Try again later"),
        )),
        Verdict::Disconnect(r) => Verdict::Disconnect(sanitize_reply(
            r,
            400..=599,
            Reply::new(421, "4.7.0", "Closing connection"),
        )),
        Verdict::Discard | Verdict::Quarantine(_) if hook != Hook::Data => Verdict::Accept,
        Verdict::Quarantine(why) => Verdict::Quarantine(clean_text(&why, MAX_REPLY_TEXT)),
        other => other,
    }
}

fn sanitize_reply(reply: Reply, codes: std::ops::RangeInclusive<u16>, default: Reply) -> Reply {
    let code = if codes.contains(&reply.code) {
        reply.code
    } else {
        default.code
    };
    let class = (b'0' + (code / 100) as u8) as char;
    let enhanced = if valid_enhanced(&reply.enhanced, class) {
        reply.enhanced
    } else if valid_enhanced(&default.enhanced, class) {
        default.enhanced
    } else {
        format!("{class}.0.0")
    };
    let text = clean_text(&reply.text, MAX_REPLY_TEXT);
    let text = if text.is_empty() { default.text } else { text };
    Reply {
        code,
        enhanced,
        text,
    }
}

/// "5.7.1": class matching the code, then 1-3 digits, then 1-3 digits (RFC 3463).
fn valid_enhanced(enhanced: &str, class: char) -> bool {
    let mut parts = enhanced.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    parts.next() == Some(&class.to_string())
        && ok(parts.next())
        && ok(parts.next())
        && parts.next().is_none()
}

/// One line of printable text, at most `max` bytes.
fn clean_text(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    super::imports::log::truncate(cleaned.trim(), max).to_string()
}

/// Makes [`PipelineSession`]s for connections on each listener.
pub struct PipelineHookFactory {
    pub(crate) plugins: Arc<Plugins>,
}

impl HookFactory for PipelineHookFactory {
    fn session_hooks(&self, listener: &str) -> Box<dyn SessionHooks> {
        match self.plugins.pipeline_for_listener(listener) {
            Some(pipeline) => Box::new(PipelineSession::new(self.plugins.clone(), pipeline)),
            None => Box::new(crate::policy::NoHooks),
        }
    }
}

/// The hooks of one SMTP session: the listener's pipeline on the generation current at the last
/// MAIL, with the session's plugin instances (created lazily, dropped when the generation changes).
pub struct PipelineSession {
    plugins: Arc<Plugins>,
    pipeline_name: String,
    generation: Arc<Generation>,
    pipeline: Option<Arc<Pipeline>>,
    instances: HashMap<String, Option<LiveInstance>>,
    session_id: Arc<str>,
}

impl PipelineSession {
    pub fn new(plugins: Arc<Plugins>, pipeline_name: String) -> Self {
        let generation = plugins.current();
        let pipeline = generation.pipeline(&pipeline_name).cloned();
        PipelineSession {
            plugins,
            pipeline_name,
            generation,
            pipeline,
            instances: HashMap::new(),
            session_id: Arc::from(""),
        }
    }

    /// The generation this session's current transaction runs on.
    pub fn generation(&self) -> u64 {
        self.generation.number
    }

    fn chain(&self, hook: Hook) -> Vec<Arc<PluginEntry>> {
        self.pipeline
            .as_ref()
            .map(|p| p.chain(hook).to_vec())
            .unwrap_or_default()
    }

    fn note_session(&mut self, session: &SessionInfo) {
        if *self.session_id != *session.id {
            self.session_id = Arc::from(session.id.as_str());
        }
    }

    async fn call(&mut self, entry: &PluginEntry, call: HookCall<'_>) -> Option<HookOutput> {
        let slot = self.instances.entry(entry.name().to_string()).or_default();
        call_plugin(entry, slot, &self.session_id, call).await
    }

    /// connect, ehlo and mail: verdicts only.
    async fn verdict_chain(
        &mut self,
        hook: Hook,
        session: &SessionInfo,
        arg: VerdictArg<'_>,
    ) -> Verdict {
        self.note_session(session);
        let chain = self.chain(hook);
        if chain.is_empty() {
            return Verdict::Continue;
        }
        let s = convert::session(session);
        let from = match arg {
            VerdictArg::Mail(from) => Some(convert::reverse_path(from)),
            _ => None,
        };
        for entry in &chain {
            let call = match (&arg, &from) {
                (VerdictArg::Connect, _) => HookCall::Connect(&s),
                (VerdictArg::Ehlo(name), _) => HookCall::Ehlo(&s, name),
                (VerdictArg::Mail(_), Some(from)) => HookCall::Mail(&s, from),
                (VerdictArg::Mail(_), None) => unreachable!("converted above"),
            };
            match self.call(entry, call).await {
                Some(HookOutput::Verdict(v)) => {
                    let v = sanitize(convert::verdict(v), hook);
                    if v != Verdict::Continue {
                        return v;
                    }
                }
                Some(_) => unreachable!("verdict hooks return verdicts"),
                None => {
                    if let Some(v) = failure_verdict(entry.loaded.config.on_error) {
                        return v;
                    }
                }
            }
        }
        Verdict::Continue
    }
}

enum VerdictArg<'a> {
    Connect,
    Ehlo(&'a str),
    Mail(&'a ReversePath),
}

#[async_trait::async_trait]
impl SessionHooks for PipelineSession {
    async fn begin_transaction(&mut self) {
        let current = self.plugins.current();
        if !Arc::ptr_eq(&current, &self.generation) {
            self.pipeline = current.pipeline(&self.pipeline_name).cloned();
            self.generation = current;
            // Instances belong to the old generation's code; new ones are made lazily.
            self.instances.clear();
        }
    }

    fn holds_idle_resources(&self) -> bool {
        self.instances.values().any(Option::is_some)
    }

    fn release_idle(&mut self) {
        // Guest memory is a cache: the next hook call instantiates afresh.
        self.instances.clear();
    }

    async fn connect(&mut self, session: &SessionInfo) -> Verdict {
        self.verdict_chain(Hook::Connect, session, VerdictArg::Connect)
            .await
    }

    async fn ehlo(&mut self, session: &SessionInfo, name: &str) -> Verdict {
        self.verdict_chain(Hook::Ehlo, session, VerdictArg::Ehlo(name))
            .await
    }

    async fn auth(&mut self, session: &SessionInfo, credentials: &Credentials) -> AuthResult {
        self.note_session(session);
        let chain = self.chain(Hook::Auth);
        if chain.is_empty() {
            return AuthResult::Unknown;
        }
        let s = convert::session(session);
        let c = convert::credentials(credentials);
        for entry in &chain {
            match self.call(entry, HookCall::Auth(&s, &c)).await {
                Some(HookOutput::Auth(result)) => match convert::auth_result(result) {
                    AuthResult::Unknown => continue,
                    AuthResult::Tempfail(why) => {
                        return AuthResult::Tempfail(clean_text(&why, MAX_REPLY_TEXT));
                    }
                    decided => return decided,
                },
                Some(_) => unreachable!("auth returns auth results"),
                None => match entry.loaded.config.on_error {
                    OnError::Continue => continue,
                    OnError::Reject => return AuthResult::Invalid,
                    OnError::Tempfail | OnError::Disconnect => {
                        return AuthResult::Tempfail("authentication backend failure".into());
                    }
                },
            }
        }
        AuthResult::Unknown
    }

    async fn mail(&mut self, session: &SessionInfo, from: &ReversePath) -> Verdict {
        self.verdict_chain(Hook::Mail, session, VerdictArg::Mail(from))
            .await
    }

    async fn rcpt(
        &mut self,
        session: &SessionInfo,
        from: &ReversePath,
        rcpt: &Recipient,
    ) -> RcptResult {
        self.note_session(session);
        let chain = self.chain(Hook::Rcpt);
        let mut outcome = RcptResult {
            verdict: Verdict::Continue,
            rewrite: None,
        };
        if chain.is_empty() {
            return outcome;
        }
        let s = convert::session(session);
        let f = convert::reverse_path(from);
        let mut current = convert::recipient(rcpt);
        for entry in &chain {
            match self.call(entry, HookCall::Rcpt(&s, &f, &current)).await {
                Some(HookOutput::Rcpt(result)) => {
                    let result = convert::rcpt_result(result);
                    if let Some(rewrite) = result.rewrite {
                        // Later plugins and the core see the rewritten address.
                        current.address = rewrite.clone();
                        outcome.rewrite = Some(rewrite);
                    }
                    let verdict = sanitize(result.verdict, Hook::Rcpt);
                    if verdict != Verdict::Continue {
                        outcome.verdict = verdict;
                        return outcome;
                    }
                }
                Some(_) => unreachable!("rcpt returns rcpt results"),
                None => {
                    if let Some(v) = failure_verdict(entry.loaded.config.on_error) {
                        outcome.verdict = v;
                        return outcome;
                    }
                }
            }
        }
        outcome
    }

    async fn data(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        message: Message<'_>,
    ) -> DataResult {
        self.note_session(session);
        let chain = self.chain(Hook::Data);
        let mut outcome = DataResult {
            verdict: Verdict::Continue,
            modifications: Vec::new(),
        };
        if chain.is_empty() {
            return outcome;
        }
        let s = convert::session(session);
        let e = convert::envelope(envelope);
        // One copy shared by every plugin of the chain (the resource reads from it).
        let bytes: Arc<[u8]> = Arc::from(message.bytes);
        for entry in &chain {
            match self
                .call(entry, HookCall::Data(&s, &e, bytes.clone()))
                .await
            {
                Some(HookOutput::Data(result)) => {
                    outcome
                        .modifications
                        .extend(result.modifications.into_iter().map(convert::modification));
                    let verdict = sanitize(convert::verdict(result.verdict), Hook::Data);
                    if verdict != Verdict::Continue {
                        outcome.verdict = verdict;
                        return outcome;
                    }
                }
                Some(_) => unreachable!("data returns data results"),
                None => {
                    if let Some(v) = failure_verdict(entry.loaded.config.on_error) {
                        outcome.verdict = v;
                        return outcome;
                    }
                }
            }
        }
        outcome
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_fixes_codes_and_text() {
        let v = sanitize(
            Verdict::Reject(Reply::new(999, "9.9.9", "line1\r\nINJECT: x")),
            Hook::Mail,
        );
        assert_eq!(
            v,
            Verdict::Reject(Reply::new(550, "5.7.1", "line1  INJECT: x"))
        );
        let v = sanitize(Verdict::Tempfail(Reply::new(452, "4.2.2", "")), Hook::Rcpt);
        assert_eq!(
            v,
            Verdict::Tempfail(Reply::new(452, "4.2.2", "Try again later"))
        );
        let v = sanitize(
            Verdict::Reject(Reply::new(550, "4.1.1", &*"x".repeat(5000))),
            Hook::Rcpt,
        );
        let Verdict::Reject(r) = v else { panic!() };
        assert_eq!(r.enhanced, "5.7.1");
        assert_eq!(r.text.len(), MAX_REPLY_TEXT);
        assert_eq!(sanitize(Verdict::Discard, Hook::Mail), Verdict::Accept);
        assert_eq!(sanitize(Verdict::Discard, Hook::Data), Verdict::Discard);
    }
}
