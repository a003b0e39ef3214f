//! Contract 0.1.0 (`wit/compat/0.1.0`): plugins built against it keep loading and working.
//!
//! Its imports are generated here; each 0.1 import calls the 0.2 implementation (the interfaces
//! are identical, only their version differs), converting the few enum/variant/record types. Its hooks are called in `instance` through typed functions on the 0.2 Rust
//! types, which wasmtime checks structurally against the 0.1 exports; only `data` (no
//! authentication argument) and `delivery` (`message-id` instead of `queue-id`) differ in shape.

use wasmtime::component::{ComponentType, Lower, Resource};

use super::bindings::exports::mailwit::plugin::delivery as v02_delivery;
use super::bindings::mailwit::plugin as v02;
use super::resources::MessageHandle;
use super::state::HostState;

/// The contract version of these bindings.
pub const VERSION: &str = "0.1.0";

mod generated {
    wasmtime::component::bindgen!({
        world: "imports",
        path: "../wit/compat/0.1.0",
        imports: { default: async },
        with: {
            "mailwit:plugin/message.message": crate::plugins::resources::MessageHandle,
        },
    });
}

pub use generated::Imports;
use generated::mailwit::plugin as v01;

impl v01::log::Host for HostState {
    async fn log(&mut self, level: v01::log::Level, message: String) {
        use v01::log::Level as L;
        let level = match level {
            L::Trace => v02::log::Level::Trace,
            L::Debug => v02::log::Level::Debug,
            L::Info => v02::log::Level::Info,
            L::Warn => v02::log::Level::Warn,
            L::Error => v02::log::Level::Error,
        };
        v02::log::Host::log(self, level, message).await
    }
}

impl v01::config::Host for HostState {
    async fn get(&mut self, key: String) -> Option<v01::config::Value> {
        use v01::config::Value as O;
        use v02::config::Value as N;
        Some(match v02::config::Host::get(self, key).await? {
            N::Text(t) => O::Text(t),
            N::Integer(i) => O::Integer(i),
            N::Float(f) => O::Float(f),
            N::Boolean(b) => O::Boolean(b),
            N::TextList(l) => O::TextList(l),
            N::Toml(t) => O::Toml(t),
        })
    }
    async fn all(&mut self) -> String {
        v02::config::Host::all(self).await
    }
}

impl v01::kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        v02::kv::Host::get(self, key).await
    }
    async fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), String> {
        v02::kv::Host::put(self, key, value, ttl_ms).await
    }
    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, String> {
        v02::kv::Host::increment(self, key, delta, ttl_ms).await
    }
    async fn delete(&mut self, key: String) -> Result<bool, String> {
        v02::kv::Host::delete(self, key).await
    }
}

fn dns_error(e: v02::dns::DnsError) -> v01::dns::DnsError {
    use v01::dns::DnsError as O;
    use v02::dns::DnsError as N;
    match e {
        N::Nxdomain => O::Nxdomain,
        N::NoRecords => O::NoRecords,
        N::Timeout => O::Timeout,
        N::Other(why) => O::Other(why),
    }
}

impl v01::dns::Host for HostState {
    async fn lookup_a(&mut self, name: String) -> Result<Vec<String>, v01::dns::DnsError> {
        v02::dns::Host::lookup_a(self, name)
            .await
            .map_err(dns_error)
    }
    async fn lookup_aaaa(&mut self, name: String) -> Result<Vec<String>, v01::dns::DnsError> {
        v02::dns::Host::lookup_aaaa(self, name)
            .await
            .map_err(dns_error)
    }
    async fn lookup_mx(
        &mut self,
        name: String,
    ) -> Result<Vec<v01::dns::MxRecord>, v01::dns::DnsError> {
        let records = v02::dns::Host::lookup_mx(self, name)
            .await
            .map_err(dns_error)?;
        Ok(records
            .into_iter()
            .map(|r| v01::dns::MxRecord {
                preference: r.preference,
                exchange: r.exchange,
            })
            .collect())
    }
    async fn lookup_txt(&mut self, name: String) -> Result<Vec<String>, v01::dns::DnsError> {
        v02::dns::Host::lookup_txt(self, name)
            .await
            .map_err(dns_error)
    }
    async fn lookup_ptr(&mut self, ip: String) -> Result<Vec<String>, v01::dns::DnsError> {
        v02::dns::Host::lookup_ptr(self, ip)
            .await
            .map_err(dns_error)
    }
}

impl v01::clock::Host for HostState {
    async fn now_ms(&mut self) -> u64 {
        v02::clock::Host::now_ms(self).await
    }
}

impl v01::message::HostMessage for HostState {
    async fn size(&mut self, this: Resource<MessageHandle>) -> u64 {
        v02::message::HostMessage::size(self, this).await
    }
    async fn header(&mut self, this: Resource<MessageHandle>, name: String) -> Option<String> {
        v02::message::HostMessage::header(self, this, name).await
    }
    async fn headers(&mut self, this: Resource<MessageHandle>) -> Vec<(String, String)> {
        v02::message::HostMessage::headers(self, this).await
    }
    async fn read(&mut self, this: Resource<MessageHandle>, offset: u64, length: u32) -> Vec<u8> {
        v02::message::HostMessage::read(self, this, offset, length).await
    }
    async fn body_offset(&mut self, this: Resource<MessageHandle>) -> u64 {
        v02::message::HostMessage::body_offset(self, this).await
    }
    async fn drop(&mut self, this: Resource<MessageHandle>) -> wasmtime::Result<()> {
        v02::message::HostMessage::drop(self, this).await
    }
}

impl v01::message::Host for HostState {}

/// The 0.1 `delivery-event`: `queue-id` was called `message-id`.
#[derive(ComponentType, Lower, Clone, Debug)]
#[component(record)]
pub struct DeliveryEvent {
    #[component(name = "message-id")]
    pub message_id: String,
    #[component(name = "reverse-path")]
    pub reverse_path: String,
    pub recipient: String,
    pub outcome: v02_delivery::Outcome,
    pub reply: Option<v02::types::Reply>,
    pub attempts: u32,
}

impl From<&v02_delivery::DeliveryEvent> for DeliveryEvent {
    fn from(e: &v02_delivery::DeliveryEvent) -> Self {
        DeliveryEvent {
            message_id: e.queue_id.clone(),
            reverse_path: e.reverse_path.clone(),
            recipient: e.recipient.clone(),
            outcome: e.outcome,
            reply: e.reply.clone(),
            attempts: e.attempts,
        }
    }
}
