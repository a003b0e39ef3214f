//! mailwit's pure layers compiled for fuzzing, from the host crate's own source files.
//!
//! Why not depend on the `mailwit` crate? Its dependency tree (wasmtime with cranelift, tokio,
//! rustls, hickory) takes a long time to build with sanitizer coverage, and its build script builds
//! the Wasm plugins for a target the nightly toolchain may lack. The fuzzed code sits in the layers
//! that use none of that and nothing above them: `mail` (headers, addresses, envelope, xtext),
//! `smtp` (the sans-IO session), `policy` (the hook seam and the data hook's modifications),
//! `config` (the loader, with `secret`, its redacting string type) and the downstream reply
//! parser. They are compiled here as modules with the same paths (`crate::mail`, `crate::smtp`,
//! ...), unchanged: if one of them starts to use a module above it, this crate stops building.
#![allow(dead_code, unused_imports)]

#[path = "../../host/src/mail/mod.rs"]
pub mod mail;

#[path = "../../host/src/smtp/mod.rs"]
pub mod smtp;

#[path = "../../host/src/policy/mod.rs"]
pub mod policy;

#[path = "../../host/src/config/mod.rs"]
pub mod config;

#[path = "../../host/src/secret.rs"]
pub mod secret;

#[path = "../../host/src/delivery/smtp_client/reply.rs"]
pub mod downstream_reply;

/// The reply parser under its host path, `delivery::smtp_client::reply`.
pub mod delivery {
    pub mod smtp_client {
        pub use crate::downstream_reply as reply;
    }
}
