//! Host imports: what a plugin may call. Each is granted per plugin in the configuration (checked
//! when the plugin loads, see `loader`); `message` and `types` are always available.

pub mod clock;
pub mod config;
pub mod dns;
pub mod kv;
pub mod log;
pub mod message;

use super::bindings::mailwit::plugin::types;
use super::state::HostState;

/// `types` declares no functions; the bindings still want an implementation.
impl types::Host for HostState {}
