//! `kv`: the plugin's own key-value store (see [`crate::plugins::kv`] for the backends), shared
//! by all its instances, never between plugins, kept across reloads.

use std::time::Duration;

use crate::plugins::bindings::mailwit::plugin::kv::Host;
use crate::plugins::state::HostState;

impl Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        self.ctx.kv.get(&key).await
    }

    async fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), String> {
        self.ctx
            .kv
            .put(&key, value, ttl_ms.map(Duration::from_millis))
            .await
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, String> {
        self.ctx
            .kv
            .increment(&key, delta, ttl_ms.map(Duration::from_millis))
            .await
    }

    async fn delete(&mut self, key: String) -> Result<bool, String> {
        self.ctx.kv.delete(&key).await
    }
}
