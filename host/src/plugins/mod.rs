//! The Wasm plugin platform: policy in sandboxed WebAssembly components.
//!
//! - [`engine`]: the process-wide wasmtime engine (pooling allocator, epoch ticker) and linker.
//! - [`loader`]: compiling components (cached on disk), checking their WIT version, exports and grants.
//! - [`instance`]: one live instance per session per plugin, hook calls under limits.
//! - [`breaker`]: consecutive-failure circuit breaker and per-plugin counters.
//! - [`pipeline`]: the hooks the engine calls ([`crate::policy::SessionHooks`], [`crate::policy::QueueHooks`])
//!   running a pipeline's plugins in order.
//! - [`generation`]: a wholly validated set of plugins and pipelines.
//! - `shared`: the runtime's options and what outlives generations (kv stores, counters, resolver).
//! - [`runtime`]: the current generation behind an `ArcSwap`, reload (file watch, SIGHUP, admin).
//! - [`imports`]: the host functions plugins may call (log, config, kv, dns, clock, message).
//! - [`kv`], [`dns`], [`resources`]: what those imports reach (kv backends, the resolver, the
//!   message handle); they know nothing of stores or bindings, so nothing here runs in a circle.
//! - [`http`]: outgoing HTTP of the "http" grant (wasi:http with an allow-list and limits).
//! - [`check`]: the plugins x hooks table of `mailwit check-config`.
//! - `contract`: the contract versions spoken ([`WIT_VERSION`], [`SUPPORTED_VERSIONS`]);
//!   [`builtin`]: the first-party plugins embedded in the binary.

pub mod bindings;
pub mod breaker;
pub mod builtin;
pub mod check;
pub mod compat_v01;
mod contract;
mod convert;
pub mod dns;
pub mod engine;
pub mod generation;
pub mod http;
pub mod imports;
pub mod instance;
pub mod kv;
pub mod loader;
pub mod pipeline;
pub mod resources;
pub mod runtime;
mod shared;
pub mod state;

pub use crate::policy::Hook;
pub use check::{check_report, check_report_at};
pub use contract::{SUPPORTED_VERSIONS, WIT_PACKAGE, WIT_VERSION};
pub use dns::DnsOptions;
pub use generation::Generation;
pub use kv::{KvStore, MemoryKv};
pub use runtime::{Plugins, ReloadReport, Reloader};
pub use shared::RuntimeOptions;
