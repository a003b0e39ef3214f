//! The integration tests, one binary: each file is a module (`cargo test --test integration
//! queue_crash` runs one file's tests, `... queue_crash::name` one test), and `support` is the
//! shared harness. One binary links the crate (with wasmtime) once instead of once per file.
//! See README.md here for how to add a file.

mod support;

mod delivery_agents;
mod delivery_dsn;
mod delivery_e2e;
mod delivery_queue;
mod engine_clients;
mod engine_config;
mod engine_crash;
mod engine_hooks;
mod engine_plugins;
mod engine_smtp;
mod engine_tls;
mod hardening_abuse;
mod hardening_auth;
mod hardening_crash;
mod hardening_random;
mod hardening_relay;
mod hardening_smuggling;
mod odmr;
mod plugins_firstparty_components;
mod plugins_firstparty_pipeline;
mod plugins_firstparty_smtp;
mod plugins_firstparty_unit;
mod plugins_runtime;
mod plugins_server;
mod queue_admin;
mod queue_crash;
mod queue_end_to_end;
mod queue_manager;
mod queue_open_ends;
mod queue_remote;
mod queue_spool;
