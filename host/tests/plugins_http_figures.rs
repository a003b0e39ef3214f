//! Figures, not assertions (ignored; run by hand, preferably on a release build):
//!
//!     cargo test --release -p mailwit --test integration plugins_http_figures -- --ignored --nocapture
//!
//! Per message through the data hook: the first-party content-filter next to the rspamd plugin
//! (with Debian's rspamd started by the test), as wall time, this process's CPU and Rspamd's CPU;
//! and the cost of one HTTP call from a plugin (the http-probe test plugin at MAIL: a request the
//! allow-list refuses, against a GET answered by a loopback service).

use crate::support::policy::mx_session;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::policy::{Envelope, Message, Recipient, ReversePath, SessionHooks};

use crate::support::http_service::HttpService;
use crate::support::rspamd::Rspamd;

const MESSAGES: usize = 200;
const CALLS: usize = 500;

/// This process's user + system CPU time.
fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of process `root` and its children (Rspamd's main process and its workers).
fn tree_cpu(root: u32) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let pid: u32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        let ppid: u32 = fields.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
        if pid == root || ppid == root {
            let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
            let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
            total += utime + stime;
        }
    }
    Duration::from_micros(total * 1_000_000 / ticks)
}

fn load(toml: &str) -> Arc<Plugins> {
    Plugins::from_settings(
        PluginSettings::from_toml(toml).unwrap(),
        Path::new("/"),
        RuntimeOptions::default(),
    )
    .unwrap()
}

/// A ~2 KiB message.
fn sample_message() -> Vec<u8> {
    let mut body = String::new();
    while body.len() < 2000 {
        body.push_str("Dear Bob, the quarterly figures are attached as discussed on Monday.\r\n");
    }
    format!(
        "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: figures\r\n\
         Date: Tue, 1 Dec 2026 18:00:00 +0000\r\nMessage-ID: <figures@example.test>\r\n\r\n{body}"
    )
    .into_bytes()
}

struct Row {
    what: &'static str,
    wall: Duration,
    own: Duration,
    peer: Duration,
    n: usize,
}

fn print(rows: &[Row]) {
    println!(
        "\n| what | n | wall per call | mailwit CPU per call | peer CPU per call |\n|---|---:|---:|---:|---:|"
    );
    for r in rows {
        let per = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / r.n as f64);
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what,
            r.n,
            per(r.wall),
            per(r.own),
            per(r.peer)
        );
    }
}

async fn data_calls(
    plugins: &Arc<Plugins>,
    what: &'static str,
    n: usize,
    peer: Option<u32>,
) -> Row {
    let mut hooks: Box<dyn SessionHooks> = plugins.hook_factory().session_hooks("mx");
    let envelope = Envelope {
        reverse_path: ReversePath {
            address: "alice@example.test".into(),
            ..Default::default()
        },
        recipients: vec![Recipient {
            address: "bob@example.test".into(),
            ..Default::default()
        }],
    };
    let bytes = sample_message();
    let s = mx_session("figures");
    // One warm-up call (instantiation, first connection).
    hooks.begin_transaction().await;
    let first = hooks.data(&s, &envelope, Message { bytes: &bytes }).await;
    println!("{what}: first verdict {:?}", first.verdict);
    let (own0, peer0, wall0) = (own_cpu(), peer.map(tree_cpu), Instant::now());
    for _ in 0..n {
        hooks.begin_transaction().await;
        hooks.data(&s, &envelope, Message { bytes: &bytes }).await;
    }
    Row {
        what,
        n,
        wall: wall0.elapsed(),
        own: own_cpu() - own0,
        peer: match (peer, peer0) {
            (Some(pid), Some(before)) => tree_cpu(pid) - before,
            _ => Duration::ZERO,
        },
    }
}

async fn mail_calls(plugins: &Arc<Plugins>, what: &'static str, n: usize) -> Row {
    let mut hooks: Box<dyn SessionHooks> = plugins.hook_factory().session_hooks("mx");
    let from = ReversePath {
        address: "alice@example.test".into(),
        ..Default::default()
    };
    let s = mx_session("figures");
    hooks.begin_transaction().await;
    println!("{what}: first verdict {:?}", hooks.mail(&s, &from).await);
    let (own0, wall0) = (own_cpu(), Instant::now());
    for _ in 0..n {
        hooks.begin_transaction().await;
        hooks.mail(&s, &from).await;
    }
    Row {
        what,
        n,
        wall: wall0.elapsed(),
        own: own_cpu() - own0,
        peer: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures: run by hand with --ignored --nocapture"]
async fn rspamd_and_http_call_costs() {
    let rspamd = tokio::task::spawn_blocking(Rspamd::start).await.unwrap();
    let rspamd_pid = rspamd.pid();
    let filter = load(
        r#"
        [plugins.filter]
        builtin = "content-filter"
        grants = ["config", "log"]
        config = { reject_words = ["viagra", "lottery winner"], spam_threshold = 5.0 }
        [pipelines.mx]
        data = ["filter"]
        "#,
    );
    let scanner = load(&format!(
        r#"
        [plugins.rspamd]
        builtin = "rspamd"
        grants = ["config", "log", "http"]
        http = {{ allow = ["{addr}"], timeout_ms = 20000 }}
        limits = {{ time_ms = 30000 }}
        config = {{ url = "http://{addr}" }}
        [pipelines.mx]
        data = ["rspamd"]
        "#,
        addr = rspamd.addr
    ));
    let service = HttpService::fixed(200, "hello");
    let probe = format!(
        "{}/mailwit_test_http_probe.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    );
    let probe_toml = |url: String| {
        format!(
            r#"
            [plugins.probe]
            path = "{probe}"
            grants = ["config", "http"]
            http = {{ allow = ["{}"] }}
            config = {{ url = "{url}" }}
            [pipelines.mx]
            mail = ["probe"]
            "#,
            service.addr
        )
    };
    let refused = load(&probe_toml("http://127.0.0.1:9/".into()));
    let fetched = load(&probe_toml(format!("http://{}/", service.addr)));

    let rows = vec![
        data_calls(&filter, "data: content-filter plugin", MESSAGES, None).await,
        data_calls(
            &scanner,
            "data: rspamd plugin + Rspamd /checkv2",
            MESSAGES,
            Some(rspamd_pid),
        )
        .await,
        mail_calls(
            &refused,
            "mail: http-probe, request refused by http.allow",
            CALLS,
        )
        .await,
        mail_calls(
            &fetched,
            "mail: http-probe, GET to a loopback service",
            CALLS,
        )
        .await,
    ];
    print(&rows);
    drop(rspamd);
}
