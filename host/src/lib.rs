//! mailwit: a programmable ESMTP server whose policy lives in sandboxed WebAssembly components.
//!
//! Concerns, one module each, from the bottom layer up (a module uses only those below it):
//! - [`mail`]: envelope, replies and status codes, headers, addresses, xtext (pure, no I/O).
//! - [`smtp`]: the sans-IO protocol state machine (bytes in, replies and events out; no sockets).
//! - [`server`]: listeners, the per-connection IO loop, TLS, connection limits, timeouts.
//! - [`config`]: the TOML schema, validation and file:line diagnostics.
//! - [`policy`]: the seam the engine calls at each stage (hooks) and its types.
//! - [`plugins`]: the Wasm plugin platform implementing [`policy`] with wasmtime components.
//! - [`spool`]: the durable message store with group commit and recovery.
//! - [`queue`]: the scheduler, retries and bounces.
//! - [`delivery`]: the delivery agents (Maildir, LMTP, SMTP relay, MX).
//! - [`dns`]: the one resolver built from `[dns]` (MX, TLSA, the plugins' `dns` import), with DNSSEC status.
//! - [`metrics`]: the Prometheus registry and the operator HTTP listener (/metrics, /healthz).
//! - [`admin`]: the local admin socket (`mailwit reload`, `mailwit queue …`).
//! - [`mailauth`]: DKIM signing; SPF, DKIM, DMARC and ARC verification (Authentication-Results).
//! - [`app`]: the composition root that wires them together for `mailwit serve`.

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod mail;
pub mod mailauth;
pub mod metrics;
pub mod plugins;
pub mod policy;
pub mod queue;
pub mod secret;
pub mod server;
pub mod smtp;
pub mod spool;
