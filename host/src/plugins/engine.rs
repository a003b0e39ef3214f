//! The process-wide wasmtime engine: component model, pooling allocator, epoch interruption driven
//! by a 10 ms ticker thread, and the linker with every host import.
//!
//! One engine serves every generation (compiled code stays valid across reloads). Fuel metering
//! slows every guest instruction, so there are two engines: the plain one, and one with fuel for
//! plugins whose `limits.fuel` is set; each is created on first use.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings;
use super::state::HostState;

/// How often the epoch advances: the resolution of `limits.time_ms` and of async yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Concurrent instances the pool holds (one per plugin per session in a transaction or recently
/// active; idle sessions give theirs back). Past it, instantiation waits for a free slot for up to
/// the plugin's `time_ms`, then the plugin's `on_error` policy applies.
pub const POOL_INSTANCES: u32 = 1000;

/// Largest linear memory any plugin may be configured with.
pub const MAX_MEMORY_MIB: u32 = 1024;

pub struct WasmEngine {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    /// Whether stores of this engine meter fuel.
    pub fuel: bool,
    /// One permit per pool slot: instantiation waits here instead of failing when the pool is
    /// full (a burst of connections), and a permit lives as long as its instance.
    pub slots: Arc<tokio::sync::Semaphore>,
}

static PLAIN: OnceLock<Arc<WasmEngine>> = OnceLock::new();
static FUELED: OnceLock<Arc<WasmEngine>> = OnceLock::new();

impl WasmEngine {
    /// The shared engine, with or without fuel metering.
    pub fn shared(fuel: bool) -> Result<Arc<WasmEngine>> {
        let cell = if fuel { &FUELED } else { &PLAIN };
        if let Some(engine) = cell.get() {
            return Ok(engine.clone());
        }
        let built = Arc::new(WasmEngine::build(fuel)?);
        // A racing thread may have won; either engine is fine, keep the stored one.
        let _ = cell.set(built);
        Ok(cell.get().expect("just set").clone())
    }

    /// Instance pool slots taken now, over the engines built so far (for metrics).
    pub fn pool_slots_in_use() -> u64 {
        [&PLAIN, &FUELED]
            .into_iter()
            .filter_map(|cell| cell.get())
            .map(|e| u64::from(POOL_INSTANCES).saturating_sub(e.slots.available_permits() as u64))
            .sum()
    }

    fn build(fuel: bool) -> Result<WasmEngine> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // Component-model async is not used, and leaving it on makes every call 2-5x slower.
            .concurrency_support(false)
            .epoch_interruption(true)
            .consume_fuel(fuel)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `MAILWIT_WASM_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf report` names plugin
        // functions (for profiling).
        if std::env::var_os("MAILWIT_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // wasi:http for every plugin; the loader refuses it without the "http" grant, and the
        // send hook (`plugins::http`) refuses what `http.allow` does not list.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        bindings::Host_::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the mailwit host imports")?;
        // Plugins built against contract 0.1.0 import the same interfaces under that version.
        super::compat_v01::Imports::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the mailwit 0.1.0 host imports")?;

        start_epoch_ticker(&engine);
        Ok(WasmEngine {
            engine,
            linker,
            fuel,
            slots: Arc::new(tokio::sync::Semaphore::new(POOL_INSTANCES as usize)),
        })
    }

    /// Identifies compiled code this engine can load (wasmtime version, target, settings).
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// Advances the epoch every tick for the life of the process (the engine is process-wide).
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("mailwit-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
