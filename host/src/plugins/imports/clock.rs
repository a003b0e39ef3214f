//! `clock`: wall-clock time.

use crate::plugins::bindings::mailwit::plugin::clock::Host;
use crate::plugins::state::HostState;

impl Host for HostState {
    async fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}
