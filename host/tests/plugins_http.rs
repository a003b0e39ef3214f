//! The "http" grant with a real component (`testing/http-probe`, the SDK's wasi:http client) and
//! real HTTP(S) services on loopback: what `http.allow` lets through and what never leaves,
//! the host's TLS verification, the request timeout, the response cap, and the hook's time_ms.

use crate::support::policy::mx_session;
use std::path::Path;
use std::sync::Arc;

use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::policy::{ReversePath, SessionHooks, Verdict};

use crate::support::http_service::{HttpReply, HttpService};
use crate::support::tls::{HttpsServer, Pki, Validity};

fn probe() -> String {
    format!(
        "{}/mailwit_test_http_probe.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    )
}

fn settings(grants: &str, url: &str, http: &str, limits: &str) -> PluginSettings {
    let toml = format!(
        r#"
        [plugins.probe]
        path = "{probe}"
        grants = [{grants}]
        config = {{ url = "{url}" }}
        {http}
        {limits}
        [pipelines.mx]
        mail = ["probe"]
        "#,
        probe = probe()
    );
    PluginSettings::from_toml(&toml).expect("test TOML parses")
}

fn load(settings: PluginSettings) -> anyhow::Result<Arc<Plugins>> {
    Plugins::from_settings(settings, Path::new("/"), RuntimeOptions::default())
}

/// The probe's verdict at MAIL FROM `from`.
async fn mail_from(plugins: &Arc<Plugins>, from: &str) -> Verdict {
    let mut hooks: Box<dyn SessionHooks> = plugins.hook_factory().session_hooks("mx");
    hooks.begin_transaction().await;
    let from = ReversePath {
        address: from.into(),
        ..Default::default()
    };
    hooks.mail(&mx_session("s1"), &from).await
}

/// What the probe saw: "status=200 bytes=5 body=hello" or "error=...".
async fn probe_text(plugins: &Arc<Plugins>) -> String {
    match mail_from(plugins, "alice@example.test").await {
        Verdict::Reject(reply) => reply.text,
        other => panic!("expected the probe's report, got {other:?}"),
    }
}

#[tokio::test]
async fn an_allowed_authority_is_reached_and_any_other_is_refused_before_connecting() {
    let allowed = HttpService::fixed(200, "hello");
    let forbidden = HttpService::fixed(200, "secret");
    let http = format!(r#"http = {{ allow = ["{}"] }}"#, allowed.addr);

    let plugins = load(settings(
        r#""config", "http""#,
        &format!("http://{}/x", allowed.addr),
        &http,
        "",
    ))
    .unwrap();
    assert_eq!(probe_text(&plugins).await, "status=200 bytes=5 body=hello");
    assert_eq!(allowed.connection_count(), 1);
    let seen = allowed.requests.lock().unwrap().clone();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/x");
    assert_eq!(
        seen[0].header("host"),
        Some(allowed.addr.to_string().as_str())
    );

    // Same grant, a destination not in http.allow (same host, other port): refused in the host.
    let plugins = load(settings(
        r#""config", "http""#,
        &format!("http://{}/x", forbidden.addr),
        &http,
        "",
    ))
    .unwrap();
    assert_eq!(probe_text(&plugins).await, "error=HttpRequestDenied");
    // And by name: `localhost` is not `127.0.0.1` in the allow-list.
    let plugins = load(settings(
        r#""config", "http""#,
        &format!("http://localhost:{}/x", forbidden.addr.port()),
        &http,
        "",
    ))
    .unwrap();
    assert_eq!(probe_text(&plugins).await, "error=HttpRequestDenied");
    // https to an authority allowed as "host:port" is allowed, but the scheme must match when
    // the entry names one.
    let scheme_bound = format!(r#"http = {{ allow = ["https://{}"] }}"#, forbidden.addr);
    let plugins = load(settings(
        r#""config", "http""#,
        &format!("http://{}/x", forbidden.addr),
        &scheme_bound,
        "",
    ))
    .unwrap();
    assert_eq!(probe_text(&plugins).await, "error=HttpRequestDenied");

    // Give any in-flight connect a moment: none may arrive.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        forbidden.connection_count(),
        0,
        "a refused request reached the network"
    );
}

#[tokio::test]
async fn wasi_http_without_the_grant_is_refused_at_load_and_the_grant_needs_an_allow_list() {
    let service = HttpService::fixed(200, "hello");
    let url = format!("http://{}/", service.addr);
    let e = format!(
        "{:#}",
        load(settings(r#""config""#, &url, "", ""))
            .err()
            .expect("loads without the grant")
    );
    assert!(e.contains("imports `wasi:http/"), "{e}");
    assert!(e.contains(r#"does not include "http""#), "{e}");

    let e = format!(
        "{:#}",
        load(settings(r#""config", "http""#, &url, "", ""))
            .err()
            .expect("loads without http.allow")
    );
    assert!(e.contains("http = { allow"), "{e}");

    let e = format!(
        "{:#}",
        load(settings(
            r#""config", "http""#,
            &url,
            r#"http = { allow = ["ftp://example.test"] }"#,
            ""
        ))
        .err()
        .expect("loads with a bad allow entry")
    );
    assert!(e.contains("http.allow"), "{e}");

    let e = format!(
        "{:#}",
        load(settings(
            r#""config""#,
            &url,
            &format!(r#"http = {{ allow = ["{}"] }}"#, service.addr),
            ""
        ))
        .err()
        .expect("loads with http but without the grant")
    );
    assert!(e.contains(r#"does not include "http""#), "{e}");
    assert_eq!(service.connection_count(), 0);
}

#[tokio::test]
async fn https_uses_the_host_verification_with_the_configured_ca() {
    let pki = Pki::new("mailwit http test CA");
    let leaf = pki.leaf(&["127.0.0.1"], Validity::Current);
    let server = HttpsServer::start(&leaf, "200 OK", "secure").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = pki.ca_file(dir.path());
    let url = format!("https://{}/policy", server.addr);

    let with_ca = format!(
        r#"http = {{ allow = ["https://{}"], ca_file = "{}" }}"#,
        server.addr,
        ca_file.display()
    );
    let plugins = load(settings(r#""config", "http""#, &url, &with_ca, "")).unwrap();
    assert_eq!(probe_text(&plugins).await, "status=200 bytes=6 body=secure");

    // Without the CA the certificate does not verify: the request fails in the plugin.
    let without_ca = format!(r#"http = {{ allow = ["https://{}"] }}"#, server.addr);
    let plugins = load(settings(r#""config", "http""#, &url, &without_ca, "")).unwrap();
    let text = probe_text(&plugins).await;
    assert!(text.starts_with("error=") && text.contains("Tls"), "{text}");
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the unverified server must not have received a request"
    );
}

#[tokio::test]
async fn the_request_timeout_and_the_response_cap_fail_the_request_in_the_plugin() {
    let hanging = HttpService::start(|_| HttpReply::Hang);
    let http = format!(
        r#"http = {{ allow = ["{}"], timeout_ms = 200 }}"#,
        hanging.addr
    );
    let plugins = load(settings(
        r#""config", "http""#,
        &format!("http://{}/", hanging.addr),
        &http,
        "",
    ))
    .unwrap();
    assert_eq!(probe_text(&plugins).await, "error=ConnectionTimeout");
    assert_eq!(hanging.connection_count(), 1);

    let big = HttpService::fixed(200, &"x".repeat(100));
    let http = format!(
        r#"http = {{ allow = ["{}"], max_response_bytes = 10 }}"#,
        big.addr
    );
    let plugins = load(settings(
        r#""config", "http""#,
        &format!("http://{}/", big.addr),
        &http,
        "",
    ))
    .unwrap();
    let text = probe_text(&plugins).await;
    assert!(text.starts_with("error=HttpResponseBodySize"), "{text}");
}

#[tokio::test]
async fn time_waiting_for_http_counts_against_the_hooks_time_limit() {
    // The request may take 5 s, the hook call only 300 ms: the call fails as a plugin failure
    // (on_error = tempfail), it does not wait for the request's own timeout.
    let hanging = HttpService::start(|_| HttpReply::Hang);
    let http = format!(
        r#"http = {{ allow = ["{}"], timeout_ms = 5000 }}"#,
        hanging.addr
    );
    let plugins = load(settings(
        r#""config", "http""#,
        &format!("http://{}/", hanging.addr),
        &http,
        "limits = { time_ms = 300 }",
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let verdict = mail_from(&plugins, "alice@example.test").await;
    let waited = started.elapsed();
    assert!(matches!(verdict, Verdict::Tempfail(_)), "{verdict:?}");
    let stats = plugins.stats("probe").unwrap();
    assert_eq!(stats.failures, 1, "{stats:?}");
    // Not a timing assertion on speed: only that the 5 s request timeout was not what ended it.
    assert!(waited < std::time::Duration::from_secs(4), "{waited:?}");
}
