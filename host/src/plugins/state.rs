//! What a plugin's store carries: identity for logs, the plugin's config and kv, the resolver, the
//! (empty) WASI context, resource limits and the current hook call's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};

use super::dns::Dns;
use super::http::{HttpHooks, HttpPolicy};
use super::kv::KvStore;

/// Bytes of a plugin's stderr (panic messages) kept for the log; more is dropped.
const STDERR_CAPACITY: usize = 8 * 1024;

/// Shared, per-plugin context every instance of that plugin starts from.
#[derive(Clone)]
pub struct PluginContext {
    pub plugin: Arc<str>,
    pub config: Arc<toml::Table>,
    /// `config` as TOML text, rendered once per generation: `config.all()` is what the SDK's
    /// `config::load` calls in every new instance.
    pub config_text: Arc<str>,
    pub kv: Arc<dyn KvStore>,
    pub dns: Arc<Dns>,
    pub memory_bytes: usize,
    /// The server's metrics (hook calls, kv and DNS operations are counted here).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What the plugin's WASI imports reach (see [`wasi_context`]).
    pub wasi: WasiGrants,
    /// Where its wasi:http requests may go (grant "http"); `None`: every request is refused.
    pub http: Option<Arc<HttpPolicy>>,
}

/// The real WASI capabilities a plugin was granted; everything else WASI offers is linked but
/// reaches nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WasiGrants {
    /// `wasi:clocks` read the host's clocks (grant "clock"); otherwise a frozen clock.
    pub clocks: bool,
    /// `wasi:random` is the host's generator (grant "random"); otherwise a fixed sequence.
    pub random: bool,
}

/// The frozen wall clock of a plugin without the "clock" grant: always the Unix epoch.
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The frozen monotonic clock of a plugin without the "clock" grant: always 0.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The bytes `wasi:random` cycles through without the "random" grant (a fixed xorshift run, so
/// runtimes that seed hash tables at start-up still get varied bits, the same on every run).
fn deterministic_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..256)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The WASI context of one plugin instance. Every WASI interface a Python, JavaScript or Rust
/// std runtime imports at start-up is linked, but through this context it grants nothing real:
/// no preopened directories, no environment or arguments, empty stdin, stdout discarded, no
/// sockets (TCP, UDP and name lookup off, every address refused); stderr is captured for the
/// log. Clocks and randomness are real only when granted, deterministic stubs otherwise.
pub fn wasi_context(grants: WasiGrants, stderr: MemoryOutputPipe) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    if !grants.clocks {
        builder
            .wall_clock(FrozenWallClock)
            .monotonic_clock(FrozenMonotonicClock);
    }
    if !grants.random {
        builder
            .secure_random(Deterministic::new(deterministic_bytes()))
            .insecure_random(Deterministic::new(deterministic_bytes()))
            .insecure_random_seed(0x006d_6169_6c77_6974);
    }
    builder.build()
}

pub struct HostState {
    pub ctx: PluginContext,
    /// The SMTP session id ("queue" for queue-side calls), for logs.
    pub session: Arc<str>,
    /// When the hook call in progress must stop (checked at every epoch tick).
    pub deadline: Instant,
    pub limits: StoreLimits,
    pub table: ResourceTable,
    wasi: WasiCtx,
    stderr: MemoryOutputPipe,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: HttpHooks,
}

impl HostState {
    pub fn new(ctx: PluginContext, session: Arc<str>) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = wasi_context(ctx.wasi, stderr.clone());
        let limits = StoreLimitsBuilder::new()
            .memory_size(ctx.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let http_hooks = HttpHooks {
            policy: ctx.http.clone(),
            deadline: Instant::now(),
            session: session.clone(),
        };
        HostState {
            ctx,
            session,
            deadline: Instant::now(),
            limits,
            table: ResourceTable::new(),
            wasi,
            stderr,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks,
        }
    }

    /// What the plugin wrote to stderr so far (e.g. a panic message), lossily decoded.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        // The guest is in a hook call: its requests get what is left of that call's time.
        self.http_hooks.deadline = self.deadline;
        if !Arc::ptr_eq(&self.http_hooks.session, &self.session) {
            self.http_hooks.session = self.session.clone();
        }
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}
