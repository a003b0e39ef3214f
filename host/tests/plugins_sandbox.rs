//! The sandbox around a plugin, at the HookFactory level with real components: what WASI reaches
//! without and with the "clock" and "random" grants, the breaker's half-open trial, instance
//! reuse across sessions for `stateless` plugins, and per-plugin instance limits.

use crate::support::policy::mx_session;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::policy::{Reply, ReversePath, SessionHooks, Verdict};

fn chaos() -> String {
    format!(
        "{}/mailwit_test_chaos.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    )
}

fn probe() -> String {
    format!(
        "{}/mailwit_test_wasi_probe.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    )
}

fn load(toml: &str) -> Arc<Plugins> {
    let toml = toml
        .replace("{chaos}", &chaos())
        .replace("{probe}", &probe());
    let settings = PluginSettings::from_toml(&toml).expect("test TOML parses");
    Plugins::from_settings(settings, Path::new("/"), RuntimeOptions::default()).expect("loads")
}

async fn mail(hooks: &mut Box<dyn SessionHooks>, id: &str) -> Verdict {
    hooks.begin_transaction().await;
    let from = ReversePath {
        address: "alice@example.test".into(),
        ..Default::default()
    };
    hooks.mail(&mx_session(id), &from).await
}

/// The reply text of a rejecting verdict.
fn text(verdict: Verdict) -> String {
    match verdict {
        Verdict::Reject(reply) => reply.text,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// `key=value` out of the wasi-probe text ("file=denied:NotFound dir=... now=0 random=...").
fn field<'a>(probe: &'a str, key: &str) -> &'a str {
    probe
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {probe}"))
}

fn probe_config(grants: &str, connect: &str) -> String {
    format!(
        r#"
        [plugins.probe]
        path = "{{probe}}"
        grants = [{grants}]
        config = {{ connect = "{connect}" }}
        [pipelines.mx]
        mail = ["probe"]
        "#
    )
}

#[tokio::test]
async fn wasi_reaches_nothing_real_and_clocks_and_random_are_stubs_without_grants() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let plugins = load(&probe_config(r#""config""#, &addr));

    let first = text(mail(&mut plugins.hook_factory().session_hooks("mx"), "s1").await);
    let second = text(mail(&mut plugins.hook_factory().session_hooks("mx"), "s2").await);
    for probe in [&first, &second] {
        assert!(field(probe, "file").starts_with("denied"), "{probe}");
        assert!(field(probe, "dir").starts_with("denied"), "{probe}");
        assert_eq!(field(probe, "env"), "0", "{probe}");
        assert!(field(probe, "connect").starts_with("denied"), "{probe}");
        // The frozen clock: the Unix epoch.
        assert_eq!(field(probe, "now"), "0", "{probe}");
    }
    // Deterministic randomness: two fresh instances draw the same bytes.
    assert_eq!(field(&first, "random"), field(&second, "random"));
    // Nothing ever reached the listener.
    assert!(listener.accept().is_err());
}

#[tokio::test]
async fn clock_and_random_grants_give_the_real_ones_and_still_no_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let plugins = load(&probe_config(r#""config", "clock", "random""#, &addr));

    let first = text(mail(&mut plugins.hook_factory().session_hooks("mx"), "s1").await);
    let second = text(mail(&mut plugins.hook_factory().session_hooks("mx"), "s2").await);
    let now: u64 = field(&first, "now").parse().unwrap();
    assert!(now > 1_700_000_000, "{first}");
    assert_ne!(field(&first, "random"), field(&second, "random"));
    assert!(field(&first, "connect").starts_with("denied"), "{first}");
    assert!(field(&first, "file").starts_with("denied"), "{first}");
    assert!(listener.accept().is_err());
}

#[tokio::test]
async fn half_open_breaker_makes_one_trial_and_a_failed_trial_reopens_it() {
    let plugins = load(
        r#"
        [plugins.flaky]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "flaky", fail_first = 3 }
        on_error = "tempfail"
        breaker = { failures = 2, open_ms = 300 }
        [pipelines.mx]
        mail = ["flaky"]
        "#,
    );
    let tempfail = Verdict::Tempfail(Reply::new(
        451,
        "4.3.0",
        "Temporary local problem, please try again later",
    ));
    let mut h = plugins.hook_factory().session_hooks("mx");
    // Calls 1 and 2 fail: the breaker opens; the next call is not made.
    assert_eq!(mail(&mut h, "s1").await, tempfail);
    assert_eq!(mail(&mut h, "s1").await, tempfail);
    assert_eq!(mail(&mut h, "s1").await, tempfail);
    let stats = plugins.stats("flaky").unwrap();
    assert_eq!(
        (stats.calls, stats.breaker_opened, stats.skipped),
        (2, 1, 1)
    );

    // Past open_ms (pacing, not a timing assertion): one trial, call 3, which fails: open again
    // at once, without the two failures the closed breaker needs.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(mail(&mut h, "s1").await, tempfail);
    assert_eq!(mail(&mut h, "s1").await, tempfail);
    let stats = plugins.stats("flaky").unwrap();
    assert_eq!(
        (stats.calls, stats.breaker_opened, stats.skipped),
        (3, 2, 2)
    );

    // The next trial, call 4, succeeds: closed, every call goes through again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(text(mail(&mut h, "s1").await), "flaky 4");
    assert_eq!(text(mail(&mut h, "s1").await), "flaky 5");
    let stats = plugins.stats("flaky").unwrap();
    assert_eq!(
        (stats.calls, stats.breaker_opened, stats.skipped),
        (5, 2, 2)
    );
}

#[tokio::test]
async fn stateless_plugins_reuse_instances_across_sessions() {
    let config = |stateless: bool| {
        format!(
            r#"
            [plugins.counter]
            path = "{{chaos}}"
            grants = ["config", "log", "kv", "clock"]
            config = {{ mail = "state" }}
            stateless = {stateless}
            [pipelines.mx]
            mail = ["counter"]
            "#
        )
    };
    // Per session (the default): every session starts on a fresh instance.
    let plugins = load(&config(false));
    for id in ["a", "b", "c"] {
        let mut h = plugins.hook_factory().session_hooks("mx");
        assert_eq!(text(mail(&mut h, id).await), "calls=1");
    }
    assert_eq!(plugins.stats("counter").unwrap().instantiations, 3);

    // Stateless: one warm instance serves the sessions one after another.
    let plugins = load(&config(true));
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        let mut h = plugins.hook_factory().session_hooks("mx");
        assert_eq!(text(mail(&mut h, id).await), format!("calls={}", n + 1));
    }
    assert_eq!(plugins.stats("counter").unwrap().instantiations, 1);
}

#[tokio::test]
async fn a_plugin_instance_limit_makes_sessions_wait_then_apply_on_error_without_the_breaker() {
    let plugins = load(
        r#"
        [plugins.one]
        path = "{chaos}"
        grants = ["config", "log", "kv", "clock"]
        config = { mail = "state" }
        limits = { instances = 1, time_ms = 100 }
        on_error = "tempfail"
        breaker = { failures = 1, open_ms = 600000 }
        [pipelines.mx]
        mail = ["one"]
        "#,
    );
    let mut holder = plugins.hook_factory().session_hooks("mx");
    assert_eq!(text(mail(&mut holder, "holder").await), "calls=1");
    // The only instance belongs to `holder`'s session: another session waits, then on_error.
    let mut other = plugins.hook_factory().session_hooks("mx");
    assert!(matches!(
        mail(&mut other, "other").await,
        Verdict::Tempfail(_)
    ));
    let stats = plugins.stats("one").unwrap();
    assert_eq!((stats.failures, stats.breaker_opened), (1, 0), "{stats:?}");
    // Once the holder's session ends, the other gets an instance (the breaker stayed closed).
    drop(holder);
    assert_eq!(text(mail(&mut other, "other").await), "calls=1");
}
