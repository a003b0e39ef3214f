//! The first-party plugins and the README example running in the real plugin runtime, called
//! through the engine's seam (`HookFactory` / `SessionHooks` / `QueueHooks`) with the host's real
//! imports (config, kv, clock, dns, log, message).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use argon2::PasswordHasher;
use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::policy::{
    AuthResult, Credentials, Envelope, ListenerRole, Message, Modification, Recipient, RelayTarget,
    ReversePath, RouteDecision, SessionHooks, SessionInfo, TlsPolicy, Verdict,
};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A compilation cache shared by this file's tests, warmed once with the quickstart's plugins so
/// that concurrent tests do not each compile (and write) the same components.
fn cache_dir() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let options = RuntimeOptions {
                cache_dir: Some(dir.path().to_path_buf()),
                ..Default::default()
            };
            let settings = PluginSettings::from_toml(QUICKSTART).unwrap();
            Plugins::from_settings(settings, Path::new("."), options).expect("quickstart loads");
            dir
        })
        .path()
}

fn runtime(toml: &str) -> Arc<Plugins> {
    let settings = PluginSettings::from_toml(toml).expect("plugin settings parse");
    let options = RuntimeOptions {
        cache_dir: Some(cache_dir().to_path_buf()),
        ..Default::default()
    };
    let wasm_dir = Path::new(env!("MAILWIT_PLUGIN_WASM_DIR"));
    Plugins::from_settings(settings, wasm_dir, options).expect("plugins load")
}

fn session_on(listener: &str, client: &str, authenticated: Option<&str>) -> SessionInfo {
    SessionInfo {
        id: "test-session".into(),
        listener: listener.into(),
        role: ListenerRole::Mx,
        client: client.parse::<SocketAddr>().unwrap(),
        local: "127.0.0.1:25".parse().unwrap(),
        helo: Some("client.test".into()),
        tls: None,
        authenticated: authenticated.map(String::from),
    }
}

fn hooks(plugins: &Arc<Plugins>, listener: &str) -> Box<dyn SessionHooks> {
    plugins.hook_factory().session_hooks(listener)
}

fn from(address: &str) -> ReversePath {
    ReversePath {
        address: address.into(),
        ..Default::default()
    }
}

fn to(address: &str) -> Recipient {
    Recipient {
        address: address.into(),
        ..Default::default()
    }
}

fn reply_of(verdict: &Verdict) -> Option<(u16, &str)> {
    match verdict {
        Verdict::Reject(r) | Verdict::Tempfail(r) | Verdict::Disconnect(r) => {
            Some((r.code, r.enhanced.as_str()))
        }
        _ => None,
    }
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!("From: a@x.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\nX-Spam-Status: Yes, forged\r\n\r\n{body}\r\n")
        .into_bytes()
}

const QUICKSTART: &str = include_str!("../../examples/plugins/quickstart-plugins.toml");

#[tokio::test]
async fn quickstart_composition_loads_and_recipients_decide_at_rcpt() {
    let plugins = runtime(QUICKSTART);
    let mut h = hooks(&plugins, "inbound");
    let s = session_on("inbound", "192.0.2.10:40000", None);
    h.begin_transaction().await;
    let known = h
        .rcpt(&s, &from("a@x.test"), &to("alice@example.test"))
        .await;
    assert_eq!(known.verdict, Verdict::Accept);
    assert_eq!(known.rewrite, None);
    let alias = h
        .rcpt(&s, &from("a@x.test"), &to("Postmaster@example.test"))
        .await;
    assert_eq!(alias.rewrite.as_deref(), Some("alice@example.test"));
    let tagged = h
        .rcpt(&s, &from("a@x.test"), &to("alice+lists@example.test"))
        .await;
    assert_eq!(tagged.rewrite.as_deref(), Some("alice@example.test"));
    let unknown = h
        .rcpt(&s, &from("a@x.test"), &to("mallory@example.test"))
        .await;
    assert_eq!(
        reply_of(&unknown.verdict),
        Some((550, "5.1.1")),
        "{unknown:?}"
    );
    let foreign = h
        .rcpt(&s, &from("a@x.test"), &to("carol@elsewhere.test"))
        .await;
    assert_eq!(foreign.verdict, Verdict::Continue);
}

#[tokio::test]
async fn quickstart_content_filter_refuses_gtube_and_words_and_scores_the_rest() {
    let plugins = runtime(QUICKSTART);
    let mut h = hooks(&plugins, "inbound");
    let s = session_on("inbound", "192.0.2.10:40000", None);
    let env = Envelope {
        reverse_path: from("a@x.test"),
        recipients: vec![to("bob@example.test")],
    };
    h.begin_transaction().await;

    let gtube = message("test", GTUBE);
    let out = h.data(&s, &env, Message { bytes: &gtube }).await;
    assert_eq!(reply_of(&out.verdict), Some((554, "5.7.1")), "{out:?}");

    let word = message("You are a LOTTERY winner", "claim now");
    let out = h.data(&s, &env, Message { bytes: &word }).await;
    assert_eq!(reply_of(&out.verdict), Some((554, "5.7.1")), "{out:?}");

    let shouting = message("CHEAP WATCHES FOR YOU!!!", "urgent wire transfer needed");
    let out = h.data(&s, &env, Message { bytes: &shouting }).await;
    assert_eq!(out.verdict, Verdict::Continue);
    assert!(
        out.modifications
            .contains(&Modification::RemoveHeader("X-Spam-Status".into()))
    );
    assert!(
        out.modifications.contains(&Modification::AddHeader {
            name: "X-Spam-Status".into(),
            value: "Yes, score=6.5 required=5.0 tests=SUBJECT_ALL_CAPS,BODY_URGENT_TRANSFER".into()
        }),
        "{:?}",
        out.modifications
    );
    let rewritten =
        mailwit::policy::apply_modifications(&shouting, &mut env.clone(), &out.modifications);
    let text = String::from_utf8(rewritten).unwrap();
    assert!(text.contains("X-Spam-Score: 6.5\r\n"), "{text}");
    assert!(!text.contains("forged"), "{text}");
}

#[tokio::test]
async fn edited_reject_words_apply_from_the_next_transaction() {
    let plugins = runtime(QUICKSTART);
    let mut h = hooks(&plugins, "inbound");
    let s = session_on("inbound", "192.0.2.10:40000", None);
    let env = Envelope {
        reverse_path: from("a@x.test"),
        recipients: vec![to("bob@example.test")],
    };
    let crypto = message("crypto offer", "hello");
    h.begin_transaction().await;
    assert_eq!(
        h.data(&s, &env, Message { bytes: &crypto }).await.verdict,
        Verdict::Continue
    );

    let edited = QUICKSTART.replace(
        "reject_words = [\"viagra\", \"lottery winner\"]",
        "reject_words = [\"viagra\", \"crypto\"]",
    );
    assert_ne!(edited, QUICKSTART);
    plugins
        .reload_with(&PluginSettings::from_toml(&edited).unwrap())
        .unwrap();
    // The same connection, next transaction.
    h.begin_transaction().await;
    let out = h.data(&s, &env, Message { bytes: &crypto }).await;
    assert_eq!(reply_of(&out.verdict), Some((554, "5.7.1")), "{out:?}");
}

#[tokio::test]
async fn quickstart_auth_static_checks_argon2_hashes() {
    let plugins = runtime(QUICKSTART);
    let mut h = hooks(&plugins, "submission");
    let s = session_on("submission", "192.0.2.10:40000", None);
    let creds = |user: &str, secret: &str| Credentials {
        mechanism: "PLAIN".into(),
        authzid: String::new(),
        authcid: user.into(),
        secret: secret.into(),
        challenge: None,
    };
    let ok = h
        .auth(&s, &creds("alice@example.test", "alice-secret"))
        .await;
    assert_eq!(ok, AuthResult::Ok("alice@example.test".into()));
    assert_eq!(
        h.auth(&s, &creds("alice@example.test", "wrong")).await,
        AuthResult::Invalid
    );
    assert_eq!(
        h.auth(&s, &creds("bob@example.test", "alice-secret")).await,
        AuthResult::Invalid
    );
}

#[tokio::test]
async fn auth_static_takes_hashes_made_by_the_host_argon2() {
    let hash = argon2::Argon2::default()
        .hash_password_with_salt(b"s3cret", b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
    let plugins = runtime(&format!(
        r#"
        [plugins.auth]
        builtin = "auth-static"
        grants = ["config", "log"]
        config = {{ users = {{ "carol" = "{hash}" }}, on_unknown_user = "unknown" }}
        [pipelines.submission]
        auth = ["auth"]
        "#
    ));
    let mut h = hooks(&plugins, "submission");
    let s = session_on("submission", "192.0.2.10:40000", None);
    let creds = |user: &str, secret: &str| Credentials {
        mechanism: "LOGIN".into(),
        authzid: String::new(),
        authcid: user.into(),
        secret: secret.into(),
        challenge: None,
    };
    assert_eq!(
        h.auth(&s, &creds("carol", "s3cret")).await,
        AuthResult::Ok("carol".into())
    );
    assert_eq!(
        h.auth(&s, &creds("dave", "s3cret")).await,
        AuthResult::Unknown
    );
}

#[tokio::test]
async fn cram_md5_reaches_only_plugins_that_export_auth_challenge() {
    // chaos exports only `auth` and would call any secret but "secret" invalid; it must be
    // passed over for CRAM-MD5. auth-static answers from its `{CRAM-MD5}` secret.
    let tim = mailwit::auth::CramSecret::from_password("tanstaaftanstaaf").encode();
    let plugins = runtime(&format!(
        r#"
        [plugins.strict]
        path = "mailwit_test_chaos.wasm"
        grants = ["config", "log", "kv", "clock"]
        config = {{ auth = "ok" }}
        [plugins.accounts]
        builtin = "auth-static"
        grants = ["config", "log"]
        config = {{ users = {{ "tim" = "{tim}" }}, on_unknown_user = "unknown" }}
        [pipelines.odmr]
        auth = ["strict", "accounts"]
        "#
    ));
    let mut h = hooks(&plugins, "odmr");
    let s = session_on("odmr", "192.0.2.10:40000", None);
    let cram = |user: &str, digest: &str| Credentials {
        mechanism: "CRAM-MD5".into(),
        authzid: String::new(),
        authcid: user.into(),
        secret: digest.into(),
        challenge: Some("<1896.697170952@postoffice.reston.mci.net>".into()),
    };
    assert_eq!(
        h.auth(&s, &cram("tim", "b913a602c7eda7a495b4e6e7334d3890"))
            .await,
        AuthResult::Ok("tim".into())
    );
    assert_eq!(
        h.auth(&s, &cram("tim", "b913a602c7eda7a495b4e6e7334d3891"))
            .await,
        AuthResult::Invalid
    );
    // Not in auth-static's table: unknown (the users file would be asked next).
    assert_eq!(
        h.auth(&s, &cram("carol", "b913a602c7eda7a495b4e6e7334d3890"))
            .await,
        AuthResult::Unknown
    );
    // PLAIN still goes to both, in order: chaos decides first.
    let plain = Credentials {
        mechanism: "PLAIN".into(),
        authzid: String::new(),
        authcid: "tim".into(),
        secret: "secret".into(),
        challenge: None,
    };
    assert_eq!(h.auth(&s, &plain).await, AuthResult::Ok("tim".into()));
}

#[tokio::test]
async fn quickstart_router_routes_local_to_maildir_and_the_rest_to_the_smarthost() {
    let plugins = runtime(QUICKSTART);
    let q = plugins.queue_hooks();
    assert_eq!(
        q.route(&from("a@x.test"), &to("bob@example.test")).await,
        RouteDecision::Maildir("bob@example.test".into())
    );
    assert_eq!(
        q.route(&from("alice@example.test"), &to("carol@elsewhere.test"))
            .await,
        RouteDecision::Relay(RelayTarget {
            host: "127.0.0.1".into(),
            port: 2626,
            tls: TlsPolicy::Opportunistic,
            credentials: None
        })
    );
}

/// A route chain of the router (exports `route` and `route-hold`, holds hookheld.test) and
/// chaos (exports `route` only, answers maildir), in the given order.
fn hold_chain(order: &str) -> Arc<Plugins> {
    runtime(&format!(
        r#"
        [plugins.router]
        builtin = "router"
        grants = ["config", "log"]
        config = {{ routes = {{ "hookheld.test" = "hold" }} }}
        [plugins.old]
        path = "mailwit_test_chaos.wasm"
        grants = ["config", "log", "kv", "clock"]
        config = {{ route = "maildir" }}
        [pipelines.queue]
        route = [{order}]
        "#
    ))
}

#[tokio::test]
async fn route_hold_is_asked_in_chain_order_and_plugins_without_it_are_asked_route() {
    // The router first: it holds hookheld.test (its `route-hold` answers true).
    let plugins = hold_chain(r#""router", "old""#);
    let q = plugins.queue_hooks();
    assert_eq!(
        q.route(&from("a@x.test"), &to("carol@hookheld.test")).await,
        RouteDecision::Hold
    );
    // Not held and no route of its own: the router has no opinion, and chaos, which never
    // heard of `route-hold`, is asked `route` as before.
    assert_eq!(
        q.route(&from("a@x.test"), &to("dave@elsewhere.test")).await,
        RouteDecision::Maildir("dave@elsewhere.test".into())
    );
    // chaos first: its `route` answer decides before the router is asked anything.
    let plugins = hold_chain(r#""old", "router""#);
    let q = plugins.queue_hooks();
    assert_eq!(
        q.route(&from("a@x.test"), &to("carol@hookheld.test")).await,
        RouteDecision::Maildir("carol@hookheld.test".into())
    );
    // The same plugins loaded from the components: the router exports `route-hold`, chaos not.
    let exports = |name: &str| {
        plugins
            .current()
            .plugins
            .get(name)
            .map(|p| p.loaded.indices.route_hold.is_some())
    };
    assert_eq!(exports("router"), Some(true));
    assert_eq!(exports("old"), Some(false));
}

#[tokio::test]
async fn rate_limit_counts_connections_across_sessions_on_the_shared_kv() {
    let plugins = runtime(
        r#"
        [plugins.rl]
        builtin = "rate-limit"
        grants = ["config", "kv", "log"]
        config = { connections_per_ip = { limit = 2, window_secs = 3600 }, messages_per_user = { limit = 1, window_secs = 3600 } }
        [pipelines.mx]
        connect = ["rl"]
        mail = ["rl"]
        "#,
    );
    let s = session_on("mx", "192.0.2.20:40000", None);
    for _ in 0..2 {
        assert_eq!(hooks(&plugins, "mx").connect(&s).await, Verdict::Continue);
    }
    let third = hooks(&plugins, "mx").connect(&s).await;
    assert_eq!(reply_of(&third), Some((421, "4.7.0")), "{third:?}");
    assert!(matches!(third, Verdict::Disconnect(_)));
    // Another client is not affected.
    assert_eq!(
        hooks(&plugins, "mx")
            .connect(&session_on("mx", "192.0.2.21:1", None))
            .await,
        Verdict::Continue
    );

    let alice = session_on("mx", "192.0.2.22:1", Some("alice@example.test"));
    let mut h = hooks(&plugins, "mx");
    h.begin_transaction().await;
    assert_eq!(
        h.mail(&alice, &from("alice@example.test")).await,
        Verdict::Continue
    );
    h.begin_transaction().await;
    let second = h.mail(&alice, &from("alice@example.test")).await;
    assert_eq!(reply_of(&second), Some((451, "4.7.1")), "{second:?}");
}

#[tokio::test]
async fn greylist_refuses_the_first_attempt_and_passes_the_retry() {
    let plugins = runtime(
        r#"
        [plugins.grey]
        builtin = "greylist"
        grants = ["config", "kv", "clock", "log"]
        config = { delay_secs = 0 }
        [pipelines.mx]
        rcpt = ["grey"]
        "#,
    );
    let s = session_on("mx", "192.0.2.30:40000", None);
    let first = hooks(&plugins, "mx")
        .rcpt(&s, &from("a@x.test"), &to("bob@example.test"))
        .await;
    assert_eq!(reply_of(&first.verdict), Some((451, "4.7.1")), "{first:?}");
    // The retry comes on a new connection from another address of the same /24.
    let retry_session = session_on("mx", "192.0.2.31:40001", None);
    let retry = hooks(&plugins, "mx")
        .rcpt(&retry_session, &from("a@x.test"), &to("bob@example.test"))
        .await;
    assert_eq!(retry.verdict, Verdict::Continue);
    let other = hooks(&plugins, "mx")
        .rcpt(&s, &from("a@x.test"), &to("carol@example.test"))
        .await;
    assert_eq!(reply_of(&other.verdict), Some((451, "4.7.1")));
}

#[tokio::test]
async fn dnsbl_follows_its_on_error_policy_when_the_resolver_fails() {
    let config = |on_error: &str| {
        format!(
            r#"
            [plugins.bl]
            builtin = "dnsbl"
            grants = ["config", "dns", "log"]
            # A hook's time includes its DNS lookups: allow more than the resolver's timeout.
            limits = {{ time_ms = 5000 }}
            config = {{ zones = ["bl.test"], check_private = true, on_error = "{on_error}" }}
            [pipelines.mx]
            connect = ["bl"]
            "#
        )
    };
    // A loopback address where no name server listens: every lookup fails at once.
    let options = || RuntimeOptions {
        dns: mailwit::plugins::DnsOptions {
            nameservers: vec!["127.83.41.7".parse().unwrap()],
            timeout: std::time::Duration::from_millis(500),
        },
        ..Default::default()
    };
    let s = session_on("mx", "127.0.0.2:40000", None);
    for (on_error, expected) in [("tempfail", Some((451, "4.7.1"))), ("continue", None)] {
        let settings = PluginSettings::from_toml(&config(on_error)).unwrap();
        let plugins = Plugins::from_settings(settings, Path::new("."), options()).unwrap();
        let verdict = hooks(&plugins, "mx").connect(&s).await;
        assert_eq!(reply_of(&verdict), expected, "{on_error}: {verdict:?}");
    }
}

#[tokio::test]
async fn readme_example_plugin_works_from_its_wasm_file() {
    let plugins = runtime(
        r#"
        [plugins.hello]
        path = "hello_plugin.wasm"
        grants = ["config"]
        config = { blocked_domains = ["spam.test"] }
        [pipelines.inbound]
        mail = ["hello"]
        data = ["hello"]
        "#,
    );
    let mut h = hooks(&plugins, "inbound");
    let s = session_on("inbound", "192.0.2.40:40000", None);
    h.begin_transaction().await;
    let refused = h.mail(&s, &from("x@SPAM.test")).await;
    assert_eq!(reply_of(&refused), Some((550, "5.7.1")), "{refused:?}");
    h.begin_transaction().await;
    assert_eq!(h.mail(&s, &from("x@ham.test")).await, Verdict::Continue);
    let env = Envelope {
        reverse_path: from("x@ham.test"),
        recipients: vec![to("bob@example.test")],
    };
    let msg = message("hi", "hello");
    let out = h.data(&s, &env, Message { bytes: &msg }).await;
    assert_eq!(out.verdict, Verdict::Continue);
    assert_eq!(
        out.modifications,
        vec![Modification::AddHeader {
            name: "X-Hello".into(),
            value: "checked for 192.0.2.40".into()
        }]
    );
}

#[tokio::test]
async fn readme_example_plugin_is_enabled_by_a_reload_without_restart() {
    let plugins = runtime(QUICKSTART);
    let mut h = hooks(&plugins, "inbound");
    let s = session_on("inbound", "192.0.2.41:40000", None);
    h.begin_transaction().await;
    assert_eq!(h.mail(&s, &from("x@spam.test")).await, Verdict::Continue);

    // The README's "few lines of config", added to the running configuration.
    let enabled = QUICKSTART.replace(
        "[pipelines.inbound]\n",
        "[plugins.hello]\npath = \"hello_plugin.wasm\"\ngrants = [\"config\"]\n\
         config = { blocked_domains = [\"spam.test\"] }\n\n[pipelines.inbound]\nmail = [\"hello\"]\n",
    );
    assert_ne!(enabled, QUICKSTART);
    plugins
        .reload_with(&PluginSettings::from_toml(&enabled).unwrap())
        .unwrap();
    h.begin_transaction().await;
    let refused = h.mail(&s, &from("x@spam.test")).await;
    assert_eq!(reply_of(&refused), Some((550, "5.7.1")), "{refused:?}");
}
