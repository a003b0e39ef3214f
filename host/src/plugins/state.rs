//! What a plugin's store carries: identity for logs, the plugin's config and kv, the resolver, the
//! (empty) WASI context, resource limits and the current hook call's deadline.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::imports::dns::Dns;
use super::imports::kv::KvStore;

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
}

impl HostState {
    pub fn new(ctx: PluginContext, session: Arc<str>) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Nothing but stderr: no files, sockets, environment or arguments.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(ctx.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        HostState {
            ctx,
            session,
            deadline: Instant::now(),
            limits,
            table: ResourceTable::new(),
            wasi,
            stderr,
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
