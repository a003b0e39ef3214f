//! Contract 0.1.0 (`wit/compat/0.1.0`): plugins built against it keep loading and working.
//!
//! Its imports are generated here; each 0.1 import calls the 0.2 implementation (the interfaces
//! are identical, only their version differs), converting the few enum/variant/record types.
//! Its hooks are called in `instance` through typed functions on the 0.2 Rust types, which
//! wasmtime checks structurally against the 0.1 exports; only `data` (no authentication
//! argument) and `delivery` (`message-id` instead of `queue-id`) differ in shape.

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

/// Implements 0.1 host traits by calling the same method of the 0.2 trait, with the same
/// arguments; `=> convert` turns a 0.2 answer into the 0.1 type where the types differ.
macro_rules! forward_to_v02 {
    ($(impl $v01:path => $v02:path {
        $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $(=> $convert:expr)?;)*
    })*) => {$(
        impl $v01 for HostState {
            $(async fn $name(&mut self, $($arg: $ty),*) -> $ret {
                let answer = <Self as $v02>::$name(self, $($arg),*).await;
                $(let answer = $convert(answer);)?
                answer
            })*
        }
    )*};
}

forward_to_v02! {
    impl v01::config::Host => v02::config::Host {
        fn get(key: String) -> Option<v01::config::Value> => config_value;
        fn all() -> String;
    }
    impl v01::kv::Host => v02::kv::Host {
        fn get(key: String) -> Result<Option<Vec<u8>>, String>;
        fn put(key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), String>;
        fn increment(key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, String>;
        fn delete(key: String) -> Result<bool, String>;
    }
    impl v01::dns::Host => v02::dns::Host {
        fn lookup_a(name: String) -> Result<Vec<String>, v01::dns::DnsError> => dns_answer;
        fn lookup_aaaa(name: String) -> Result<Vec<String>, v01::dns::DnsError> => dns_answer;
        fn lookup_mx(name: String) -> Result<Vec<v01::dns::MxRecord>, v01::dns::DnsError> => mx_records;
        fn lookup_txt(name: String) -> Result<Vec<String>, v01::dns::DnsError> => dns_answer;
        fn lookup_ptr(ip: String) -> Result<Vec<String>, v01::dns::DnsError> => dns_answer;
    }
    impl v01::clock::Host => v02::clock::Host {
        fn now_ms() -> u64;
    }
    impl v01::message::HostMessage => v02::message::HostMessage {
        fn size(this: Resource<MessageHandle>) -> u64;
        fn header(this: Resource<MessageHandle>, name: String) -> Option<String>;
        fn headers(this: Resource<MessageHandle>) -> Vec<(String, String)>;
        fn read(this: Resource<MessageHandle>, offset: u64, length: u32) -> Vec<u8>;
        fn body_offset(this: Resource<MessageHandle>) -> u64;
        fn drop(this: Resource<MessageHandle>) -> wasmtime::Result<()>;
    }
}

fn config_value(value: Option<v02::config::Value>) -> Option<v01::config::Value> {
    use v01::config::Value as O;
    use v02::config::Value as N;
    Some(match value? {
        N::Text(t) => O::Text(t),
        N::Integer(i) => O::Integer(i),
        N::Float(f) => O::Float(f),
        N::Boolean(b) => O::Boolean(b),
        N::TextList(l) => O::TextList(l),
        N::Toml(t) => O::Toml(t),
    })
}

fn dns_answer<T>(answer: Result<T, v02::dns::DnsError>) -> Result<T, v01::dns::DnsError> {
    use v01::dns::DnsError as O;
    use v02::dns::DnsError as N;
    answer.map_err(|e| match e {
        N::Nxdomain => O::Nxdomain,
        N::NoRecords => O::NoRecords,
        N::Timeout => O::Timeout,
        N::Other(why) => O::Other(why),
    })
}

fn mx_records(
    answer: Result<Vec<v02::dns::MxRecord>, v02::dns::DnsError>,
) -> Result<Vec<v01::dns::MxRecord>, v01::dns::DnsError> {
    let records = dns_answer(answer)?;
    Ok(records
        .into_iter()
        .map(|r| v01::dns::MxRecord {
            preference: r.preference,
            exchange: r.exchange,
        })
        .collect())
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
