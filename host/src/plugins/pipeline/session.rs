//! The hooks of SMTP sessions: one [`PipelineSession`] per connection, made by the
//! [`PipelineHookFactory`] for the connection's listener.

use std::collections::HashMap;
use std::sync::Arc;

use super::call::{HookCall, HookOutput, MAX_REPLY_TEXT, call_plugin, failed, failure_verdict};
use super::sanitize::{clean_text, sanitize};
use crate::config::plugins::OnError;
use crate::plugins::bindings::exports::mailwit::plugin::data;
use crate::plugins::bindings::mailwit::plugin::types as wit;
use crate::plugins::convert;
use crate::plugins::generation::{Generation, Pipeline, PluginEntry};
use crate::plugins::instance::LiveInstance;
use crate::plugins::runtime::Plugins;
use crate::policy::{
    AuthResult, AuthenticationResults, Credentials, DataResult, Envelope, Hook, HookFactory,
    Message, RcptResult, Recipient, Reply, ReversePath, SessionHooks, SessionInfo, Verdict,
};

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
    /// The transaction's message-authentication results, for the data hook.
    authentication: AuthenticationResults,
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
            authentication: AuthenticationResults::default(),
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
        if entry.loaded.config.stateless {
            // No session state: borrow a warm instance for this one call.
            let (mut slot, uses) = entry.take_idle();
            if let Some(instance) = slot.as_mut() {
                instance.set_session(&self.session_id);
            }
            let output = call_plugin(entry, &mut slot, &self.session_id, call).await;
            entry.give_back(slot, uses + 1);
            return output;
        }
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

/// Relay control on plugin decisions: a decision that sends an unauthenticated session's mail
/// off-site needs the plugin's "relay" grant.
impl PipelineSession {
    /// 554 5.7.1 for a rcpt rewrite to a non-local address by a plugin without the grant, for
    /// an unauthenticated session.
    fn relay_refusal(
        &self,
        entry: &PluginEntry,
        session: &SessionInfo,
        rewrite: &str,
    ) -> Option<Verdict> {
        if session.authenticated.is_some() || entry.may_relay() || !self.plugins.off_site(rewrite) {
            return None;
        }
        tracing::warn!(
            plugin = entry.name(),
            session = &*self.session_id,
            rewrite,
            "relay control: the plugin rewrote a recipient off-site for an unauthenticated \
             session without the \"relay\" grant; recipient refused"
        );
        Some(Verdict::Reject(Reply::new(
            554,
            "5.7.1",
            format!("<{rewrite}>: Relay access denied"),
        )))
    }

    /// The first non-local recipient a data result adds for an unauthenticated session, when
    /// the plugin may not relay.
    fn off_site_addition(
        &self,
        entry: &PluginEntry,
        session: &SessionInfo,
        result: &data::DataResult,
    ) -> Option<String> {
        if session.authenticated.is_some() || entry.may_relay() {
            return None;
        }
        result.modifications.iter().find_map(|m| match m {
            data::Modification::AddRecipient(a) if self.plugins.off_site(a) => Some(a.clone()),
            _ => None,
        })
    }
}

/// What one plugin's answer means for the rest of its chain: `Some(verdict)` ends the chain
/// with that verdict, `None` goes on to the next plugin.
impl PipelineSession {
    /// One plugin's rcpt answer (`None`: it failed); an accepted rewrite becomes `current` for
    /// the plugins after it and is noted in `rewrite`.
    fn rcpt_answer(
        &self,
        entry: &PluginEntry,
        session: &SessionInfo,
        output: Option<HookOutput>,
        current: &mut wit::Recipient,
        rewrite: &mut Option<String>,
    ) -> Option<Verdict> {
        let result = match output {
            Some(HookOutput::Rcpt(result)) => convert::rcpt_result(result),
            Some(_) => unreachable!("rcpt returns rcpt results"),
            None => return failure_verdict(entry.loaded.config.on_error),
        };
        if let Some(address) = &result.rewrite
            && let Some(refusal) = self.relay_refusal(entry, session, address)
        {
            return Some(refusal);
        }
        if let Some(address) = result.rewrite {
            // Later plugins and the core see the rewritten address.
            current.address = address.clone();
            *rewrite = Some(address);
        }
        decisive(sanitize(result.verdict, Hook::Rcpt))
    }

    /// One plugin's data answer (`None`: it failed); its modifications are added to
    /// `modifications`.
    fn data_answer(
        &self,
        entry: &PluginEntry,
        session: &SessionInfo,
        output: Option<HookOutput>,
        modifications: &mut Vec<crate::policy::Modification>,
    ) -> Option<Verdict> {
        let result = match output {
            Some(HookOutput::Data(result)) => result,
            Some(_) => unreachable!("data returns data results"),
            None => return failure_verdict(entry.loaded.config.on_error),
        };
        if let Some(address) = self.off_site_addition(entry, session, &result) {
            // The plugin overstepped: its answer is dropped as a failure.
            failed(
                entry,
                &self.session_id,
                Hook::Data,
                &format!(
                    "relay control: add-recipient <{address}> would send an unauthenticated \
                     session's mail off-site, and the plugin has no \"relay\" grant"
                ),
                true,
            );
            return failure_verdict(entry.loaded.config.on_error);
        }
        modifications.extend(result.modifications.into_iter().map(convert::modification));
        decisive(sanitize(convert::verdict(result.verdict), Hook::Data))
    }
}

/// A verdict other than `Continue` ends the chain.
fn decisive(verdict: Verdict) -> Option<Verdict> {
    (verdict != Verdict::Continue).then_some(verdict)
}

enum VerdictArg<'a> {
    Connect,
    Ehlo(&'a str),
    Mail(&'a ReversePath),
}

#[async_trait::async_trait]
impl SessionHooks for PipelineSession {
    fn authentication_results(&mut self, results: AuthenticationResults) {
        self.authentication = results;
    }

    async fn begin_transaction(&mut self) {
        self.authentication = AuthenticationResults::default();
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
        // A challenge-response (CRAM-MD5) goes only to plugins that export `auth-challenge`;
        // the others have no way to check it and are passed over.
        let challenge = convert::challenge_response(credentials);
        for entry in &chain {
            let call = match &challenge {
                Some(_) if entry.loaded.indices.auth_challenge.is_none() => continue,
                Some(response) => HookCall::AuthChallenge(&s, response),
                None => HookCall::Auth(&s, &c),
            };
            match self.call(entry, call).await {
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
            let output = self.call(entry, HookCall::Rcpt(&s, &f, &current)).await;
            let rewrite = &mut outcome.rewrite;
            if let Some(verdict) = self.rcpt_answer(entry, session, output, &mut current, rewrite) {
                outcome.verdict = verdict;
                return outcome;
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
        let authentication = convert::authentication(&self.authentication);
        // One copy shared by every plugin of the chain (the resource reads from it).
        let bytes: Arc<[u8]> = Arc::from(message.bytes);
        for entry in &chain {
            let call = HookCall::Data(&s, &e, bytes.clone(), &authentication);
            let output = self.call(entry, call).await;
            let modifications = &mut outcome.modifications;
            if let Some(verdict) = self.data_answer(entry, session, output, modifications) {
                outcome.verdict = verdict;
                return outcome;
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
