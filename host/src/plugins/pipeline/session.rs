//! The session hooks: one [`PipelineSession`] per SMTP connection runs its listener's pipeline on
//! the generation current at the last MAIL, with the session's own plugin instances.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::plugins::OnError;
use crate::plugins::convert;
use crate::plugins::generation::{Generation, Pipeline, PluginEntry};
use crate::plugins::instance::LiveInstance;
use crate::plugins::runtime::Plugins;
use crate::policy::Hook;
use crate::policy::{
    AuthResult, Credentials, DataResult, Envelope, HookFactory, Message, RcptResult, Recipient,
    ReversePath, SessionHooks, SessionInfo, Verdict,
};

use super::call::{HookCall, HookOutput, call_plugin, failure_verdict};
use super::sanitize::{MAX_REPLY_TEXT, clean_text, sanitize};

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

impl Plugins {
    /// The engine's per-connection hooks.
    pub fn hook_factory(self: &Arc<Self>) -> Arc<dyn HookFactory> {
        Arc::new(PipelineHookFactory {
            plugins: self.clone(),
        })
    }
}
