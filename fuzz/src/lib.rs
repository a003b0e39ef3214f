//! mailwit's parsers, compiled from the host crate's own source files for fuzzing.
//!
//! Why not depend on the `mailwit` crate? Its dependency tree (wasmtime with cranelift, tokio,
//! rustls, hickory) takes a long time to build with sanitizer coverage, and its build script builds
//! the Wasm plugins for a target the nightly toolchain may lack. The code under test (the sans-IO
//! SMTP session, the config loader, the downstream reply parser) uses none of that, so the same
//! files are compiled here as modules with the same paths (`crate::policy`, `crate::smtp`, ...).
#![allow(dead_code, unused_imports)]

#[path = "../../host/src/policy/mod.rs"]
pub mod policy;

#[path = "../../host/src/smtp/mod.rs"]
pub mod smtp;

#[path = "../../host/src/config/mod.rs"]
pub mod config;

/// The plugin host's message accessors without their wasmtime glue (see build.rs); the policy's
/// `apply_modifications` uses `body_offset` from here, as in the host.
pub mod plugins {
    /// Only named by `config::plugins::PipelineConfig::chains` (not called by the loader).
    #[derive(Debug, Clone, Copy)]
    pub enum Hook {
        Connect,
        Ehlo,
        Auth,
        Mail,
        Rcpt,
        Data,
        Route,
        Delivery,
    }

    pub mod imports {
        pub mod message {
            include!(concat!(env!("OUT_DIR"), "/message_pure.rs"));
        }
    }
}

#[path = "../../host/src/delivery/smtp_client/reply.rs"]
pub mod downstream_reply;

/// The reply parser under its host path, `delivery::smtp_client::reply`.
pub mod delivery {
    pub mod smtp_client {
        pub use crate::downstream_reply as reply;
    }
}
