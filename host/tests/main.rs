//! The integration tests, one binary: each file is a module (`cargo test --test integration
//! queue_crash` runs one file's tests, `... queue_crash::name` one test), and `support` is the
//! shared harness. One binary links the crate (with wasmtime) once instead of once per file.
//! See README.md here for how to add a file.

mod lang_support;
mod mailauth_dns;
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
mod inbound_tls;
mod mailauth_dkim;
mod mailauth_dmarc;
mod mailauth_downgrade;
mod mailauth_reports;
mod mailauth_rfc7208;
mod mailauth_verify;
mod odmr;
mod ops_cluster;
mod ops_metrics;
mod ops_proxy;
mod ops_redis;
mod ops_reload;
mod ops_state;
mod outbound_dane;
mod outbound_mta_sts;
mod outbound_requiretls;
mod outbound_tls;
mod outbound_tls_rpt;
mod plugins_contract;
mod plugins_firstparty_components;
mod plugins_firstparty_pipeline;
mod plugins_firstparty_smtp;
mod plugins_firstparty_unit;
mod plugins_http;
mod plugins_http_auth;
mod plugins_http_figures;
mod plugins_js;
mod plugins_languages_bench;
mod plugins_python;
mod plugins_relay;
mod plugins_rspamd;
mod plugins_runtime;
mod plugins_sandbox;
mod plugins_server;
mod queue_admin;
mod queue_crash;
mod queue_end_to_end;
mod queue_manager;
mod queue_open_ends;
mod queue_remote;
mod queue_spool;
