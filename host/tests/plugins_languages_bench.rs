//! Per-language plugin costs side by side (a measuring harness, not a test: `#[ignore]`d, run with
//!
//!   cargo test -p mailwit --test plugins_languages_bench -- --ignored --nocapture
//!
//! ). The same five-hook plugin (connect, ehlo, mail, rcpt, data: no opinion) in Rust
//! (plugins/testing/chaos), Python (componentize-py) and JavaScript (ComponentizeJS): instantiation,
//! resident memory per live instance, a warm hook call, and a whole five-hook session with a fresh
//! instance per session and with `stateless = true` (instances reused across sessions).
//! Medians; the harness runs in the test profile (wasmtime and Cranelift at opt-level 2, guest code
//! compiled by Cranelift as in release; the host glue unoptimised).

use crate::lang_support;
use crate::support::policy::mx_session;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::policy::{Envelope, Message, Recipient, ReversePath, SessionHooks, SessionInfo};

fn from() -> ReversePath {
    ReversePath {
        address: "alice@example.test".into(),
        ..Default::default()
    }
}

fn rcpt() -> Recipient {
    Recipient {
        address: "bob@example.test".into(),
        ..Default::default()
    }
}

fn message() -> Vec<u8> {
    let mut m =
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: bench\r\n\r\n".to_vec();
    while m.len() < 10 * 1024 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m
}

fn plugins(path: &str, grants: &str, stateless: bool) -> Arc<Plugins> {
    let toml = format!(
        r#"
        [plugins.p]
        path = "{path}"
        grants = {grants}
        limits = {{ memory_mib = 256, time_ms = 10000 }}
        stateless = {stateless}
        [pipelines.mx]
        connect = ["p"]
        ehlo = ["p"]
        mail = ["p"]
        rcpt = ["p"]
        data = ["p"]
        "#
    );
    let options = RuntimeOptions {
        cache_dir: Some(lang_support::cache_dir()),
        ..RuntimeOptions::default()
    };
    Plugins::from_settings(
        PluginSettings::from_toml(&toml).unwrap(),
        Path::new("/"),
        options,
    )
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

async fn five_hooks(h: &mut Box<dyn SessionHooks>, s: &SessionInfo, msg: &[u8]) {
    h.connect(s).await;
    h.ehlo(s, "client.example.test").await;
    h.begin_transaction().await;
    h.mail(s, &from()).await;
    h.rcpt(s, &from(), &rcpt()).await;
    let envelope = Envelope {
        reverse_path: from(),
        recipients: vec![rcpt()],
    };
    h.data(s, &envelope, Message { bytes: msg }).await;
}

struct Figures {
    first_call: Duration,
    warm_call: Duration,
    session: Duration,
    session_stateless: Duration,
    rss_per_instance_kib: u64,
}

async fn measure(path: &str, grants: &str) -> Figures {
    let s = mx_session("bench");
    let msg = message();
    let p = plugins(path, grants, false);
    // Warm up the engine and the page cache.
    five_hooks(&mut p.hook_factory().session_hooks("mx"), &s, &msg).await;

    let mut first = Vec::new();
    for _ in 0..15 {
        let mut h = p.hook_factory().session_hooks("mx");
        let t = Instant::now();
        h.connect(&s).await;
        first.push(t.elapsed());
    }
    let mut h = p.hook_factory().session_hooks("mx");
    h.begin_transaction().await;
    h.mail(&s, &from()).await;
    let mut warm = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        h.mail(&s, &from()).await;
        warm.push(t.elapsed());
    }
    let mut sessions = Vec::new();
    for _ in 0..15 {
        let mut h = p.hook_factory().session_hooks("mx");
        let t = Instant::now();
        five_hooks(&mut h, &s, &msg).await;
        sessions.push(t.elapsed());
    }

    // Resident memory: 20 sessions each holding a live instance.
    let before = rss_kib();
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut h = p.hook_factory().session_hooks("mx");
        five_hooks(&mut h, &s, &msg).await;
        held.push(h);
    }
    let rss = rss_kib().saturating_sub(before) / 20;
    drop(held);

    let p = plugins(path, grants, true);
    five_hooks(&mut p.hook_factory().session_hooks("mx"), &s, &msg).await;
    let mut stateless = Vec::new();
    for _ in 0..15 {
        let mut h = p.hook_factory().session_hooks("mx");
        let t = Instant::now();
        five_hooks(&mut h, &s, &msg).await;
        stateless.push(t.elapsed());
    }
    Figures {
        first_call: median(first),
        warm_call: median(warm),
        session: median(sessions),
        session_stateless: median(stateless),
        rss_per_instance_kib: rss,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measuring harness; run with --ignored --nocapture"]
async fn per_language_plugin_costs() {
    let rust = format!(
        "{}/mailwit_test_chaos.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    );
    let python = lang_support::python("plugins/python/testing/python-chaos");
    let js = lang_support::js("plugins/js/testing/js-chaos");
    let rows = [
        ("Rust", rust.clone(), r#"["config", "log", "kv", "clock"]"#),
        (
            "Python",
            python.display().to_string(),
            r#"["config", "log"]"#,
        ),
        (
            "JavaScript",
            js.display().to_string(),
            r#"["config", "log"]"#,
        ),
    ];
    println!(
        "| plugin | component | instantiate + 1st call | warm call | 5-hook session, fresh instance | 5-hook session, stateless (reused) | RSS per live instance |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, path, grants) in rows {
        let size = std::fs::metadata(&path).unwrap().len() / 1024;
        let f = measure(&path, grants).await;
        println!(
            "| {name} | {size} KiB | {:.2} ms | {:.1} µs | {:.2} ms | {:.3} ms | {} KiB |",
            f.first_call.as_secs_f64() * 1e3,
            f.warm_call.as_secs_f64() * 1e6,
            f.session.as_secs_f64() * 1e3,
            f.session_stateless.as_secs_f64() * 1e3,
            f.rss_per_instance_kib
        );
    }
}
