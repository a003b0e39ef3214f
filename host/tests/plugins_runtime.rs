//! The plugin runtime at the HookFactory level: real components built from plugins/testing,
//! running under wasmtime with their limits, failure policies and breakers.

use crate::support::policy::mx_session;
use std::path::Path;
use std::sync::Arc;

use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::policy::{
    AuthResult, Credentials, DeliveryEvent, DeliveryOutcome, Envelope, Message, Modification,
    RcptResult, Recipient, Reply, ReversePath, RouteDecision, SessionHooks, Verdict,
};

fn wasm(name: &str) -> String {
    format!(
        "{}/mailwit_test_{name}.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    )
}

/// Plugins from a TOML snippet in which `{chaos}`, `{echo}` and `{future}` stand for the test
/// components' paths.
fn settings(toml: &str) -> PluginSettings {
    let toml = toml
        .replace("{chaos}", &wasm("chaos"))
        .replace("{echo}", &wasm("echo"))
        .replace("{future}", &wasm("future_version"));
    PluginSettings::from_toml(&toml).expect("test TOML parses")
}

fn load(toml: &str) -> anyhow::Result<Arc<Plugins>> {
    Plugins::from_settings(settings(toml), Path::new("/"), RuntimeOptions::default())
}

fn from(address: &str) -> ReversePath {
    ReversePath {
        address: address.into(),
        ..Default::default()
    }
}

fn rcpt(address: &str) -> Recipient {
    Recipient {
        address: address.into(),
        ..Default::default()
    }
}

fn hooks(plugins: &Arc<Plugins>) -> Box<dyn SessionHooks> {
    plugins.hook_factory().session_hooks("mx")
}

async fn mail(hooks: &mut Box<dyn SessionHooks>, sender: &str) -> Verdict {
    hooks.begin_transaction().await;
    hooks.mail(&mx_session("s1"), &from(sender)).await
}

fn tempfail_policy() -> Verdict {
    Verdict::Tempfail(Reply::new(
        451,
        "4.3.0",
        "Temporary local problem, please try again later",
    ))
}

#[tokio::test]
async fn echo_plugin_rejects_at_mail_and_otherwise_has_no_opinion() {
    let plugins = load(
        r#"
        [plugins.echo]
        path = "{echo}"
        grants = ["log"]
        [pipelines.mx]
        mail = ["echo"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    assert_eq!(
        mail(&mut h, "reject@example.test").await,
        Verdict::Reject(Reply::new(550, "5.7.1", "echo says no"))
    );
    assert_eq!(mail(&mut h, "alice@example.test").await, Verdict::Continue);
    // Hooks the pipeline does not use have no opinion and instantiate nothing.
    assert_eq!(h.connect(&mx_session("s1")).await, Verdict::Continue);
    let stats = plugins.stats("echo").unwrap();
    assert_eq!(
        (stats.calls, stats.instantiations, stats.failures),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn listener_without_a_pipeline_gets_no_hooks() {
    let plugins = load("[plugins.echo]\npath = \"{echo}\"\ngrants = [\"log\"]\n").unwrap();
    let mut h = plugins.hook_factory().session_hooks("submission");
    assert_eq!(mail(&mut h, "reject@example.test").await, Verdict::Continue);
    assert_eq!(plugins.stats("echo").unwrap().instantiations, 0);
}

#[tokio::test]
async fn looping_plugin_times_out_then_breaker_applies_policy_without_calling() {
    let plugins = load(
        r#"
        [plugins.looper]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "loop" }
        limits = { time_ms = 50 }
        breaker = { failures = 2, open_ms = 600000 }
        [pipelines.mx]
        mail = ["looper"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    for _ in 0..4 {
        assert_eq!(mail(&mut h, "a@example.test").await, tempfail_policy());
    }
    let stats = plugins.stats("looper").unwrap();
    assert_eq!(stats.failures, 2, "{stats:?}");
    assert_eq!(stats.breaker_opened, 1);
    assert_eq!(stats.skipped, 2, "open breaker: no calls");
    // Each trapped instance was discarded: two calls, two instances.
    assert_eq!(stats.instantiations, 2);
}

#[tokio::test]
async fn chain_continues_past_a_failing_plugin_with_on_error_continue() {
    let plugins = load(
        r#"
        [plugins.looper]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "import-loop" }
        limits = { time_ms = 30 }
        on_error = "continue"
        [plugins.echo]
        path = "{echo}"
        grants = ["log"]
        [pipelines.mx]
        mail = ["looper", "echo"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    assert_eq!(
        mail(&mut h, "reject@example.test").await,
        Verdict::Reject(Reply::new(550, "5.7.1", "echo says no"))
    );
    assert_eq!(plugins.stats("looper").unwrap().failures, 1);
}

#[tokio::test]
async fn memory_hungry_plugin_fails_with_reject_policy_and_session_keeps_serving() {
    let plugins = load(
        r#"
        [plugins.hog]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "alloc", rcpt = "reject", tag = "after" }
        limits = { memory_mib = 16 }
        on_error = "reject"
        [pipelines.mx]
        mail = ["hog"]
        rcpt = ["hog"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    assert_eq!(
        mail(&mut h, "a@example.test").await,
        Verdict::Reject(Reply::new(554, "5.3.0", "Refused by local policy"))
    );
    // The same session goes on with a fresh instance.
    let RcptResult { verdict, .. } = h
        .rcpt(
            &mx_session("s1"),
            &from("a@example.test"),
            &rcpt("b@example.test"),
        )
        .await;
    assert_eq!(
        verdict,
        Verdict::Reject(Reply::new(550, "5.7.1", "chaos after"))
    );
    let stats = plugins.stats("hog").unwrap();
    assert_eq!((stats.failures, stats.instantiations), (1, 2));
}

#[tokio::test]
async fn panicking_plugin_gets_disconnect_policy() {
    let plugins = load(
        r#"
        [plugins.panicky]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { connect = "panic" }
        on_error = "disconnect"
        [pipelines.mx]
        connect = ["panicky"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    assert_eq!(
        h.connect(&mx_session("s1")).await,
        Verdict::Disconnect(Reply::new(
            421,
            "4.3.0",
            "Service temporarily unavailable, closing connection"
        ))
    );
    assert_eq!(plugins.stats("panicky").unwrap().failures, 1);
}

#[tokio::test]
async fn fuel_limit_stops_a_budget_eater() {
    let plugins = load(
        r#"
        [plugins.eater]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "spin", spin = 100000000 }
        limits = { fuel = 100000, time_ms = 10000 }
        [plugins.frugal]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "spin", spin = 10 }
        limits = { fuel = 10000000 }
        [pipelines.mx]
        mail = ["frugal", "eater"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    assert_eq!(mail(&mut h, "a@example.test").await, tempfail_policy());
    assert_eq!(plugins.stats("frugal").unwrap().failures, 0);
    assert_eq!(plugins.stats("eater").unwrap().failures, 1);
}

#[tokio::test]
async fn hostile_replies_are_sanitised_and_modification_floods_fail() {
    let plugins = load(
        r#"
        [plugins.rude]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "huge-reply", data = "huge-mods" }
        [pipelines.mx]
        mail = ["rude"]
        data = ["rude"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    let Verdict::Reject(reply) = mail(&mut h, "a@example.test").await else {
        panic!("expected a reject");
    };
    assert_eq!((reply.code, reply.enhanced.as_str()), (550, "5.7.1"));
    assert!(reply.text.len() <= 400 && !reply.text.contains(['\r', '\n']));

    let envelope = Envelope {
        reverse_path: from("a@example.test"),
        recipients: vec![rcpt("b@example.test")],
    };
    let result = h
        .data(
            &mx_session("s1"),
            &envelope,
            Message {
                bytes: b"Subject: x\r\n\r\nhi\r\n",
            },
        )
        .await;
    assert_eq!(result.verdict, tempfail_policy());
    assert!(result.modifications.is_empty());
}

#[tokio::test]
async fn instance_state_lives_for_one_session_and_kv_is_shared() {
    let plugins = load(
        r#"
        [plugins.stateful]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "state", rcpt = "count" }
        [pipelines.mx]
        mail = ["stateful"]
        rcpt = ["stateful"]
        "#,
    )
    .unwrap();
    let calls = |n: u32| Verdict::Reject(Reply::new(550, "5.7.1", format!("calls={n}")));
    let count = |n: u32| Verdict::Reject(Reply::new(550, "5.7.1", format!("count={n}")));
    let mut a = hooks(&plugins);
    let mut b = hooks(&plugins);
    assert_eq!(mail(&mut a, "x@example.test").await, calls(1));
    assert_eq!(mail(&mut a, "x@example.test").await, calls(2));
    assert_eq!(
        mail(&mut b, "x@example.test").await,
        calls(1),
        "fresh instance per session"
    );
    // An idle session gives its instances back; the next call gets a fresh one.
    assert!(a.holds_idle_resources());
    a.release_idle();
    assert!(!a.holds_idle_resources());
    assert_eq!(mail(&mut a, "x@example.test").await, calls(1));
    let r = a
        .rcpt(
            &mx_session("a"),
            &from("x@example.test"),
            &rcpt("y@example.test"),
        )
        .await;
    assert_eq!(r.verdict, count(1));
    let r = b
        .rcpt(
            &mx_session("b"),
            &from("x@example.test"),
            &rcpt("y@example.test"),
        )
        .await;
    assert_eq!(
        r.verdict,
        count(2),
        "kv is shared by the plugin's instances"
    );
}

#[tokio::test]
async fn rewrites_and_modifications_accumulate_in_order() {
    let plugins = load(
        r#"
        [plugins.alias]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { rcpt = "rewrite", rewrite_to = "real@example.test" }
        [plugins.first]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { data = "mods", tag = "first" }
        [plugins.second]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { data = "mods", tag = "second" }
        [plugins.inspector]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { data = "inspect" }
        [pipelines.mx]
        rcpt = ["alias"]
        data = ["first", "second", "inspector"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    h.begin_transaction().await;
    let r = h
        .rcpt(
            &mx_session("s"),
            &from("a@example.test"),
            &rcpt("alias@example.test"),
        )
        .await;
    assert_eq!(r.verdict, Verdict::Continue);
    assert_eq!(r.rewrite.as_deref(), Some("real@example.test"));

    let message = b"Subject: hello there\r\nFrom: a@example.test\r\n\r\nbody text\r\n";
    let envelope = Envelope {
        reverse_path: from("a@example.test"),
        recipients: vec![rcpt("real@example.test")],
    };
    let result = h
        .data(&mx_session("s"), &envelope, Message { bytes: message })
        .await;
    assert_eq!(
        result.modifications,
        vec![
            Modification::AddHeader {
                name: "X-Chaos".into(),
                value: "first".into()
            },
            Modification::AddHeader {
                name: "X-Chaos".into(),
                value: "second".into()
            },
        ]
    );
    assert_eq!(
        result.verdict,
        Verdict::Reject(Reply::new(
            550,
            "5.7.1",
            format!("size={} subject=hello there body=body text", message.len())
        ))
    );
}

#[tokio::test]
async fn auth_chain_asks_backends_in_order() {
    let plugins = load(
        r#"
        [plugins.nobody]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { auth = "unknown" }
        [plugins.users]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { auth = "ok" }
        [pipelines.mx]
        auth = ["nobody", "users"]
        "#,
    )
    .unwrap();
    let mut h = hooks(&plugins);
    let creds = |secret: &str| Credentials {
        mechanism: "PLAIN".into(),
        authzid: String::new(),
        authcid: "alice".into(),
        secret: secret.into(),
        challenge: None,
    };
    assert_eq!(
        h.auth(&mx_session("s"), &creds("secret")).await,
        AuthResult::Ok("alice".into())
    );
    assert_eq!(
        h.auth(&mx_session("s"), &creds("wrong")).await,
        AuthResult::Invalid
    );
}

#[tokio::test]
async fn queue_pipeline_routes_and_hears_deliveries() {
    let plugins = load(
        r#"
        [plugins.router]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { route = "maildir" }
        [pipelines.queue]
        route = ["router"]
        "#,
    )
    .unwrap();
    let queue = plugins.queue_hooks();
    assert_eq!(
        queue
            .route(&from("a@example.test"), &rcpt("b@example.test"))
            .await,
        RouteDecision::Maildir("b@example.test".into())
    );
    queue
        .delivery(&DeliveryEvent {
            message_id: "q1".into(),
            reverse_path: "a@example.test".into(),
            recipient: "b@example.test".into(),
            outcome: DeliveryOutcome::Delivered,
            reply: None,
            attempts: 1,
        })
        .await;
    // Queue-side instances are kept warm between calls, not made per recipient.
    for _ in 0..5 {
        queue
            .route(&from("a@example.test"), &rcpt("c@example.test"))
            .await;
    }
    let stats = plugins.stats("router").unwrap();
    assert_eq!((stats.calls, stats.instantiations), (6, 1));
}

#[test]
fn a_plugin_importing_an_ungranted_interface_is_refused() {
    let err = load("[plugins.echo]\npath = \"{echo}\"\ngrants = []\n")
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("plugin `echo`"), "{text}");
    assert!(
        text.contains("mailwit:plugin/log") && text.contains("grants"),
        "{text}"
    );
}

#[test]
fn a_plugin_built_against_an_incompatible_version_is_refused_naming_both() {
    let err = load("[plugins.newer]\npath = \"{future}\"\n")
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("mailwit:plugin@0.3.0"), "{text}");
    assert!(text.contains("mailwit:plugin@0.2.0"), "{text}");
}

#[test]
fn pipelines_are_validated_against_plugins_and_exports() {
    let err = load(
        "[plugins.echo]\npath = \"{echo}\"\ngrants = [\"log\"]\n[pipelines.mx]\ndata = [\"echo\"]\nmail = [\"ghost\"]\nroute = [\"echo\"]\n",
    )
    .err()
    .unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("does not export the `data` hook"), "{text}");
    assert!(
        text.contains("plugin `ghost`, which is not configured"),
        "{text}"
    );
    assert!(text.contains("[pipelines.queue]"), "{text}");

    let err = load("[plugins.x]\npath = \"/nonexistent/x.wasm\"\n")
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("/nonexistent/x.wasm"));
    let err = load("[plugins.x]\nbuiltin = \"no-such-plugin\"\n")
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("no first-party plugin named"));
    assert!(PluginSettings::from_toml("[plugins.x]\npath = \"a\"\ntypo = 1\n").is_err());
}

#[test]
fn check_report_prints_plugins_by_hooks() {
    let config: mailwit::config::Config = toml::from_str(&format!(
        "[plugins.echo]\npath = \"{}\"\ngrants = [\"log\"]\n[plugins.chaos]\npath = \"{}\"\ngrants = [\"config\", \"log\", \"kv\", \"clock\"]\n[pipelines.mx]\nmail = [\"echo\"]\n",
        wasm("echo"),
        wasm("chaos")
    ))
    .unwrap();
    let table = mailwit::plugins::check_report(&config).unwrap();
    let echo_row = table.lines().find(|l| l.starts_with("echo")).unwrap();
    assert!(echo_row.contains("used"), "{table}");
    let chaos_row = table.lines().find(|l| l.starts_with("chaos")).unwrap();
    assert!(chaos_row.contains("clock,config,kv,log"), "{table}");
    assert!(table.contains("2 plugins, 1 pipelines: OK"), "{table}");
}

fn gate_file(tag: &str, mode: &str) -> String {
    format!(
        "[plugins.gate]\npath = \"{}\"\ngrants = [\"config\", \"log\", \"kv\", \"clock\"]\nconfig = {{ mail = \"{mode}\", tag = \"{tag}\" }}\n[pipelines.mx]\nmail = [\"gate\"]\n",
        wasm("chaos")
    )
}

#[tokio::test]
async fn reload_swaps_between_transactions_and_uses_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailwit.toml");
    std::fs::write(&path, gate_file("one", "reject")).unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(dir.path().join("plugin-cache")),
        ..RuntimeOptions::default()
    };
    let plugins = Plugins::from_file(&path, options).unwrap();
    assert_eq!(plugins.current().from_cache, 0);
    let chaos = |tag: &str| Verdict::Reject(Reply::new(550, "5.7.1", format!("chaos {tag}")));

    let mut h = hooks(&plugins);
    assert_eq!(mail(&mut h, "a@example.test").await, chaos("one"));

    std::fs::write(&path, gate_file("two", "reject")).unwrap();
    let report = plugins.reload().unwrap();
    assert_eq!((report.generation, report.from_cache), (2, 1), "{report}");
    // Inside the transaction in flight, the old generation still answers...
    assert_eq!(
        h.mail(&mx_session("s1"), &from("a@example.test")).await,
        chaos("one")
    );
    // ...and the next transaction runs on the new one.
    assert_eq!(mail(&mut h, "a@example.test").await, chaos("two"));

    // A bad configuration leaves generation 2 running.
    std::fs::write(
        &path,
        gate_file("three", "reject").replace("\"gate\"]", "\"ghost\"]"),
    )
    .unwrap();
    assert!(plugins.reload().is_err());
    assert_eq!(plugins.current().number, 2);
    assert_eq!(mail(&mut h, "a@example.test").await, chaos("two"));
}

#[tokio::test]
async fn a_changed_config_file_is_picked_up_by_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailwit.toml");
    std::fs::write(&path, gate_file("before", "reject")).unwrap();
    let plugins = Plugins::from_file(&path, RuntimeOptions::default()).unwrap();
    let _watch = plugins.watch(std::time::Duration::from_millis(50)).unwrap();
    std::fs::write(&path, gate_file("after", "reject")).unwrap();
    // Wait for the watcher (a guard against hangs, not a timing assertion).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while plugins.current().number < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch never reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut h = hooks(&plugins);
    assert_eq!(
        mail(&mut h, "a@example.test").await,
        Verdict::Reject(Reply::new(550, "5.7.1", "chaos after"))
    );
}

#[tokio::test]
async fn sighup_reloads_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailwit.toml");
    std::fs::write(&path, gate_file("before", "reject")).unwrap();
    let plugins = Plugins::from_file(&path, RuntimeOptions::default()).unwrap();
    let _task = plugins.reload_on_sighup().unwrap();
    std::fs::write(&path, gate_file("after", "reject")).unwrap();
    // SAFETY: signalling our own process; the handler above is installed.
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while plugins.current().number < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP never reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut h = hooks(&plugins);
    assert_eq!(
        mail(&mut h, "a@example.test").await,
        Verdict::Reject(Reply::new(550, "5.7.1", "chaos after"))
    );
}
