//! One live instance of a plugin: its own store (memory, state), used by one session for as long
//! as it behaves. Every hook call is armed with the plugin's limits: a wall-clock deadline checked
//! at each epoch tick (the guest yields to tokio at every tick, so a busy plugin never holds a worker
//! for more than ~10 ms), optional fuel, and the memory cap of the store's limiter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use wasmtime::component::{ComponentNamedList, Instance, Lift, Lower};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::exports::mailwit::plugin as hooks;
use super::bindings::exports::mailwit::plugin::{
    auth, auth_challenge, data, delivery, outbound, rcpt, route,
};
use super::bindings::mailwit::plugin::types as wit;
use super::compat_v01;
use super::contract::{WIT_PACKAGE, WIT_VERSION};
use super::loader::LoadedPlugin;
use super::resources::MessageHandle;
use super::state::{HostState, PluginContext};
use crate::config::plugins::Limits;
use crate::policy::Hook;

/// Extra time past `limits.time_ms` before a call stuck in a host import (e.g. DNS) is cancelled
/// from outside; guest code itself is stopped by the epoch deadline.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

pub struct LiveInstance {
    store: Store<HostState>,
    instance: Instance,
    limits: Limits,
    /// Each hook's typed export, looked up and type-checked at its first call.
    guests: Guests,
    /// The pool slot and the plugin's own instance permit; declared last so they are released
    /// after the store has given the slot back.
    _slot: tokio::sync::OwnedSemaphorePermit,
    _plugin_slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The typed exports of one instance, per hook.
#[derive(Default)]
struct Guests {
    connect: Option<hooks::connect::Guest>,
    ehlo: Option<hooks::ehlo::Guest>,
    auth: Option<hooks::auth::Guest>,
    auth_challenge: Option<hooks::auth_challenge::Guest>,
    mail: Option<hooks::mail::Guest>,
    rcpt: Option<hooks::rcpt::Guest>,
    data: Option<hooks::data::Guest>,
    route: Option<hooks::route::Guest>,
    route_hold: Option<hooks::route_hold::Guest>,
    delivery: Option<hooks::delivery::Guest>,
    outbound: Option<hooks::outbound::Guest>,
}

/// The instance's typed export for `$hook`, loaded on first use (a lookup plus a type check that
/// would otherwise be paid on every call).
macro_rules! guest {
    ($self:ident, $plugin:ident, $hook:ident) => {{
        if $self.guests.$hook.is_none() {
            let idx = $plugin
                .indices
                .$hook
                .as_ref()
                .ok_or_else(|| missing(stringify!($hook)))?;
            $self.guests.$hook = Some(idx.load(&mut $self.store, &$self.instance)?);
        }
        $self.guests.$hook.as_ref().expect("loaded above")
    }};
}

/// Calls `$call` on the instance's typed export for `$hook`: armed with the limits, bounded in
/// time, a failure described in words.
macro_rules! call_guest {
    ($self:ident, $plugin:ident, $hook:ident, $call:ident($($arg:expr),*)) => {{
        $self.arm($plugin.engine.fuel)?;
        let guest = guest!($self, $plugin, $hook);
        let result = bounded(&$self.limits, guest.$call(&mut $self.store, $($arg),*)).await;
        result.map_err(|e| describe(e, &$self.store, &$self.limits))
    }};
}

/// Puts `$message` in the instance's resource table for the one hook call `$call`, which gets a
/// borrow of it as `$borrowed`, and deletes it after the call whatever its outcome (hence the
/// `async` blocks inside `$call`: a `?` there ends the block, not the method).
macro_rules! lending {
    ($self:ident, $message:expr, |$borrowed:ident| $call:expr) => {{
        let handle = $self
            .store
            .data_mut()
            .table
            .push(MessageHandle::new($message))?;
        let $borrowed = wasmtime::component::Resource::new_borrow(handle.rep());
        let result = $call;
        let _ = $self.store.data_mut().table.delete(handle);
        result
    }};
}

/// The hook methods whose contract 0.1 export has the same parameters: an earlier-contract
/// plugin is called through [`LiveInstance::legacy`], a current one through its typed export;
/// both armed with the limits and bounded in time.
macro_rules! hook_methods {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $hook:ident, $call:ident;)*) => {$(
        pub async fn $name(&mut self, plugin: &LoadedPlugin, $($arg: $ty),*) -> Result<$ret> {
            if Self::is_legacy(plugin) {
                return self
                    .legacy::<_, ($ret,)>(plugin, Hook::$hook, ($($arg,)*))
                    .await
                    .map(|(v,)| v);
            }
            call_guest!(self, plugin, $name, $call($($arg),*))
        }
    )*};
}

/// Every slot of the instance pool (or of the plugin's `limits.instances`) stayed taken for as
/// long as the plugin may run: the server is at capacity, which is not the plugin's fault (its
/// circuit breaker is not told).
#[derive(Debug)]
pub struct PoolExhausted {
    pub waited: Duration,
    /// The plugin's own limit, when that was the one reached.
    pub plugin_limit: Option<u32>,
}

impl std::fmt::Display for PoolExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.plugin_limit {
            Some(n) => write!(
                f,
                "all {n} instances the plugin may have (limits.instances) stayed in use for {} ms",
                self.waited.as_millis()
            ),
            None => write!(
                f,
                "all {} plugin instance slots stayed in use for {} ms",
                super::engine::POOL_INSTANCES,
                self.waited.as_millis()
            ),
        }
    }
}

impl std::error::Error for PoolExhausted {}

impl LiveInstance {
    pub async fn new(plugin: &LoadedPlugin, ctx: PluginContext, session: Arc<str>) -> Result<Self> {
        let limits = plugin.config.limits;
        let waited = Duration::from_millis(limits.time_ms);
        let plugin_slot = match &plugin.instance_slots {
            Some(slots) => Some(
                tokio::time::timeout(waited, slots.clone().acquire_owned())
                    .await
                    .map_err(|_| PoolExhausted {
                        waited,
                        plugin_limit: limits.instances,
                    })?
                    .map_err(|_| anyhow!("the plugin's instance pool is closed"))?,
            ),
            None => None,
        };
        let slot = tokio::time::timeout(waited, plugin.engine.slots.clone().acquire_owned())
            .await
            .map_err(|_| PoolExhausted {
                waited,
                plugin_limit: None,
            })?
            .map_err(|_| anyhow!("the instance pool is closed"))?;
        let mut store = Store::new(&plugin.engine.engine, HostState::new(ctx, session));
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|cx| {
            if Instant::now() >= cx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm(&mut store, &limits, plugin.engine.fuel)?;
        let instance = bounded(&limits, plugin.pre.instantiate_async(&mut store))
            .await
            .map_err(|e| describe(e, &store, &limits))?;
        Ok(LiveInstance {
            store,
            instance,
            limits,
            guests: Guests::default(),
            _slot: slot,
            _plugin_slot: plugin_slot,
        })
    }

    /// Tags the instance's log lines with the session now using it (a reused instance moves
    /// from session to session).
    pub fn set_session(&mut self, session: &Arc<str>) {
        if !Arc::ptr_eq(&self.store.data().session, session) {
            self.store.data_mut().session = session.clone();
        }
    }

    fn arm(&mut self, fuel_engine: bool) -> Result<()> {
        arm(&mut self.store, &self.limits, fuel_engine)
    }

    /// Calls the hook function of an earlier-contract plugin through a typed function on the
    /// current Rust types (wasmtime checks them structurally against the plugin's export).
    async fn legacy<P, R>(&mut self, plugin: &LoadedPlugin, hook: Hook, params: P) -> Result<R>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        self.arm(plugin.engine.fuel)?;
        let index = plugin
            .legacy
            .get(&hook)
            .ok_or_else(|| missing(hook.name()))?;
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, index)
            .map_err(|e| {
                anyhow!(
                    "export `{hook}` of {}@{} does not match: {e:#}",
                    WIT_PACKAGE,
                    plugin.contract
                )
            })?;
        let result = bounded(&self.limits, func.call_async(&mut self.store, params)).await;
        result.map_err(|e| describe(e, &self.store, &self.limits))
    }

    fn is_legacy(plugin: &LoadedPlugin) -> bool {
        plugin.contract != WIT_VERSION
    }

    hook_methods! {
        connect(s: &wit::SessionInfo) -> wit::Verdict = Connect, call_on_connect;
        ehlo(s: &wit::SessionInfo, name: &str) -> wit::Verdict = Ehlo, call_on_ehlo;
        auth(s: &wit::SessionInfo, credentials: &auth::Credentials) -> auth::AuthResult = Auth, call_check;
        mail(s: &wit::SessionInfo, from: &wit::ReversePath) -> wit::Verdict = Mail, call_on_mail;
        rcpt(s: &wit::SessionInfo, from: &wit::ReversePath, to: &wit::Recipient) -> rcpt::RcptResult = Rcpt, call_on_rcpt;
        route(from: &wit::ReversePath, to: &wit::Recipient) -> route::RouteDecision = Route, call_on_route;
    }

    /// A challenge-response (CRAM-MD5) check, answered in `auth`'s terms. Only current-contract
    /// plugins that export `auth-challenge` are asked (the pipeline checks).
    pub async fn auth_challenge(
        &mut self,
        plugin: &LoadedPlugin,
        s: &wit::SessionInfo,
        credentials: &auth_challenge::ChallengeResponse,
    ) -> Result<auth::AuthResult> {
        let answer = call_guest!(
            self,
            plugin,
            auth_challenge,
            call_check_response(s, credentials)
        )?;
        Ok(match answer {
            auth_challenge::ChallengeResult::Ok(identity) => auth::AuthResult::Ok(identity),
            auth_challenge::ChallengeResult::Invalid => auth::AuthResult::Invalid,
            auth_challenge::ChallengeResult::Unknown => auth::AuthResult::Unknown,
            auth_challenge::ChallengeResult::Tempfail(why) => auth::AuthResult::Tempfail(why),
        })
    }

    pub async fn data(
        &mut self,
        plugin: &LoadedPlugin,
        s: &wit::SessionInfo,
        envelope: &wit::Envelope,
        message: Arc<[u8]>,
        authentication: &data::Authentication,
    ) -> Result<data::DataResult> {
        lending!(self, message, |borrowed| {
            if Self::is_legacy(plugin) {
                // 0.1 has no authentication argument.
                self.legacy::<_, (data::DataResult,)>(plugin, Hook::Data, (s, envelope, borrowed))
                    .await
                    .map(|(v,)| v)
            } else {
                async {
                    call_guest!(
                        self,
                        plugin,
                        data,
                        call_on_data(s, envelope, borrowed, authentication)
                    )
                }
                .await
            }
        })
    }

    /// The outbound hook (contract 0.2 only) before one delivery attempt.
    pub async fn outbound(
        &mut self,
        plugin: &LoadedPlugin,
        attempt: &outbound::OutboundAttempt,
        message: Arc<[u8]>,
    ) -> Result<outbound::OutboundResult> {
        lending!(self, message, |borrowed| {
            async { call_guest!(self, plugin, outbound, call_on_outbound(attempt, borrowed)) }.await
        })
    }

    /// Whether the plugin holds this recipient for ODMR collection. Only current-contract
    /// plugins that export `route-hold` are asked (the pipeline checks).
    pub async fn route_hold(
        &mut self,
        plugin: &LoadedPlugin,
        from: &wit::ReversePath,
        to: &wit::Recipient,
    ) -> Result<bool> {
        call_guest!(self, plugin, route_hold, call_on_route_hold(from, to))
    }

    pub async fn delivery(
        &mut self,
        plugin: &LoadedPlugin,
        event: &delivery::DeliveryEvent,
    ) -> Result<()> {
        if Self::is_legacy(plugin) {
            // 0.1 calls the queue id `message-id`.
            let event = compat_v01::DeliveryEvent::from(event);
            return self
                .legacy::<_, ()>(plugin, Hook::Delivery, (&event,))
                .await;
        }
        call_guest!(self, plugin, delivery, call_on_delivery(event))
    }
}

fn missing(hook: &str) -> anyhow::Error {
    anyhow!("the plugin does not export the `{hook}` hook")
}

/// Sets the deadline (and fuel) for the call about to start. The epoch deadline counts from
/// now, so it is set before every call.
fn arm(store: &mut Store<HostState>, limits: &Limits, fuel_engine: bool) -> Result<()> {
    store.data_mut().deadline = Instant::now() + Duration::from_millis(limits.time_ms);
    store.set_epoch_deadline(1);
    if fuel_engine {
        store.set_fuel(limits.fuel.unwrap_or(u64::MAX))?;
    }
    Ok(())
}

/// Cancels a call that outlives its deadline by more than the grace (stuck in a host import).
async fn bounded<T>(
    limits: &Limits,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let limit = Duration::from_millis(limits.time_ms) + CANCEL_GRACE;
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::msg(format!(
            "time limit of {} ms exceeded (cancelled while waiting in a host call)",
            limits.time_ms
        ))),
    }
}

/// A failure in words: which limit was hit, or the trap and whatever the plugin printed.
fn describe(error: wasmtime::Error, store: &Store<HostState>, limits: &Limits) -> anyhow::Error {
    let error = anyhow::Error::from(error);
    let what = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Some(format!("time limit of {} ms exceeded", limits.time_ms)),
        Some(Trap::OutOfFuel) => Some("fuel limit exceeded".to_string()),
        _ => None,
    };
    let chain = format!("{error:#}");
    let what = what.unwrap_or_else(|| {
        if chain.contains("forcing trap when growing memory") {
            format!(
                "memory limit of {} MiB exceeded",
                store.data().ctx.memory_bytes >> 20
            )
        } else {
            chain.clone()
        }
    });
    let stderr = store.data().stderr_text();
    if stderr.is_empty() {
        anyhow!("{what}")
    } else {
        anyhow!(
            "{what}; plugin stderr: {}",
            super::imports::log::truncate(&stderr, 1024)
        )
    }
}
