//! The plugin path, measured: instantiation per session, one call of each hook on a warm instance,
//! a five-plugin data chain on a 10 KiB message, the first-party content filter on 10 and 100 KiB,
//! and (for the async-vs-blocking-pool choice) the
//! cost of one hop through tokio's blocking pool.
//!
//!   cargo bench --bench plugins
//!
//! Components come from plugins/testing (built by host/build.rs). Async hooks are driven with
//! `Runtime::block_on` on a current-thread runtime, which adds well under a microsecond.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::policy::{
    Credentials, Envelope, Message, Recipient, ReversePath, SessionHooks, SessionInfo,
};

/// The plugin tests' policy values (the mx session), shared rather than copied.
#[path = "../tests/support/policy.rs"]
mod policy;

const CHAOS: &str = "mailwit_test_chaos.wasm";
const GRANTS: &str = r#"grants = ["config", "log", "kv", "clock"]"#;

fn wasm(file: &str) -> String {
    format!("{}/{file}", env!("MAILWIT_PLUGIN_WASM_DIR"))
}

fn plugins(toml: &str) -> Arc<Plugins> {
    let settings = PluginSettings::from_toml(toml).expect("bench TOML");
    Plugins::from_settings(settings, Path::new("/"), RuntimeOptions::default())
        .expect("plugins load")
}

fn session() -> SessionInfo {
    policy::mx_session("bench")
}

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

/// A 10 KiB message: a realistic header and a text body.
fn message_10k() -> Vec<u8> {
    let mut m = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: benchmark\r\n\
Message-ID: <bench@example.test>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n\r\n"
        .to_vec();
    while m.len() < 10 * 1024 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench_plugins(c: &mut Criterion) {
    let rt = runtime();
    let s = session();
    let (f, r) = (from(), rcpt());
    let envelope = Envelope {
        reverse_path: from(),
        recipients: vec![rcpt()],
    };
    let msg = message_10k();

    // Every hook exported, every mode "continue" (auth: "unknown").
    let one = plugins(&format!(
        "[plugins.p]\npath = \"{}\"\n{GRANTS}\nconfig = {{ auth = \"unknown\" }}\n\
         [pipelines.mx]\nconnect = [\"p\"]\nehlo = [\"p\"]\nauth = [\"p\"]\nmail = [\"p\"]\nrcpt = [\"p\"]\ndata = [\"p\"]\n\
         [pipelines.queue]\nroute = [\"p\"]\n",
        wasm(CHAOS)
    ));
    let factory = one.hook_factory();

    let mut group = c.benchmark_group("plugins");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    group.bench_function("session: instantiate + first hook call", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut hooks = factory.session_hooks("mx");
                hooks.connect(&s).await
            })
        })
    });

    let mut warm: Box<dyn SessionHooks> = factory.session_hooks("mx");
    rt.block_on(warm.connect(&s));
    group.bench_function("hook call: connect", |b| {
        b.iter(|| rt.block_on(warm.connect(&s)))
    });
    group.bench_function("hook call: ehlo", |b| {
        b.iter(|| rt.block_on(warm.ehlo(&s, "client.example.test")))
    });
    let creds = Credentials {
        mechanism: "PLAIN".into(),
        authzid: String::new(),
        authcid: "alice".into(),
        secret: "secret".into(),
        challenge: None,
    };
    group.bench_function("hook call: auth", |b| {
        b.iter(|| rt.block_on(warm.auth(&s, &creds)))
    });
    group.bench_function("hook call: mail", |b| {
        b.iter(|| rt.block_on(warm.mail(&s, &f)))
    });
    group.bench_function("hook call: rcpt", |b| {
        b.iter(|| rt.block_on(warm.rcpt(&s, &f, &r)))
    });
    group.bench_function("hook call: data (10 KiB)", |b| {
        b.iter(|| rt.block_on(warm.data(&s, &envelope, Message { bytes: &msg })))
    });
    let queue = one.queue_hooks();
    group.bench_function("hook call: route (warm queue-side instance)", |b| {
        b.iter(|| rt.block_on(queue.route(&f, &r)))
    });

    // Five plugins at data, each adding a header (modifications accumulate).
    let mut five = String::new();
    for i in 0..5 {
        five.push_str(&format!(
            "[plugins.p{i}]\npath = \"{}\"\n{GRANTS}\nconfig = {{ data = \"mods\", tag = \"p{i}\" }}\n",
            wasm(CHAOS)
        ));
    }
    five.push_str("[pipelines.mx]\ndata = [\"p0\", \"p1\", \"p2\", \"p3\", \"p4\"]\n");
    let chain = plugins(&five);
    let chain_factory = chain.hook_factory();
    let mut chained = chain_factory.session_hooks("mx");
    rt.block_on(chained.data(&s, &envelope, Message { bytes: &msg }));
    group.bench_function("five-plugin data chain, 10 KiB (warm)", |b| {
        b.iter(|| rt.block_on(chained.data(&s, &envelope, Message { bytes: &msg })))
    });
    group.bench_function("five-plugin data chain, 10 KiB (new session)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut hooks = chain_factory.session_hooks("mx");
                let result = hooks.data(&s, &envelope, Message { bytes: &msg }).await;
                let mut env = envelope.clone();
                mailwit::policy::apply_modifications(&msg, &mut env, &result.modifications)
            })
        })
    });

    // The first-party content filter as bench/configs/mailwit-plugins.toml sets it up, on a
    // warm instance: the per-message cost of a body scan.
    let filter = plugins(
        r#"
[plugins.filter]
builtin = "content-filter"
grants = ["config", "log"]
[plugins.filter.config]
reject_words = ["viagra", "lottery winner"]
[[plugins.filter.config.rules]]
name = "SUBJECT_ALL_CAPS"
header = "Subject"
regex = "^[A-Z0-9 !?$]{12,}$"
score = 2.5
[[plugins.filter.config.rules]]
name = "BODY_URGENT_TRANSFER"
body = true
contains = "urgent wire transfer"
score = 4.0
[pipelines.mx]
data = ["filter"]
"#,
    );
    let mut filtering = filter.hook_factory().session_hooks("mx");
    let mut msg_100k = msg.clone();
    while msg_100k.len() < 100 * 1024 {
        msg_100k.extend_from_slice(&msg[msg.len() - 64..]);
    }
    for (name, bytes) in [
        ("content-filter data, 10 KiB (warm)", &msg),
        ("content-filter data, 100 KiB (warm)", &msg_100k),
    ] {
        rt.block_on(filtering.data(&s, &envelope, Message { bytes }));
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(filtering.data(&s, &envelope, Message { bytes })))
        });
    }

    // The alternative to async calls with epoch yields: each call hopping to a blocking pool.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .build()
        .unwrap();
    group.bench_function(
        "tokio spawn_blocking round trip (pool alternative, empty job)",
        |b| {
            b.iter(|| multi.block_on(async { tokio::task::spawn_blocking(|| 1u32).await.unwrap() }))
        },
    );
    group.finish();
}

criterion_group!(benches, bench_plugins);
criterion_main!(benches);
