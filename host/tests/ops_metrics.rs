//! The operator HTTP listener of the real binary: /metrics after real SMTP traffic, /healthz,
//! /readyz; and JSON logs carrying the session span's fields.

use crate::support;

use std::net::SocketAddr;
use support::ops::{http_get, sample, wait_sample};
use support::{Client, TestServer, config, message};

fn admin_addr(server: &TestServer) -> SocketAddr {
    std::fs::read_to_string(server.state_dir().join("admin-http.addr"))
        .expect("admin-http.addr written before listeners.json")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_what_clients_did() {
    let server = TestServer::with_config(&config(
        "",
        "[admin]\nhttp = \"127.0.0.1:0\"\n\
         [plugins.filter]\nbuiltin = \"content-filter\"\ngrants = [\"config\", \"log\"]\n\
         config = { reject_words = [\"lottery winner\"] }\n\
         [pipelines.mx]\ndata = [\"filter\"]\n",
    ));
    let http = admin_addr(&server);
    const N: usize = 5;
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    for i in 0..N {
        let reply = client.send_mail(
            "sender@remote.test",
            &["bob@example.test"],
            &message(&format!("m{i}"), "hello"),
        );
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    // One refused by the plugin, one unknown recipient: not accepted.
    let reply = client.send_mail(
        "sender@remote.test",
        &["bob@example.test"],
        &message("spam", "you are a lottery winner"),
    );
    assert_eq!(reply.code, 554, "{reply:?}");
    client.expect("MAIL FROM:<sender@remote.test>", 250);
    client.expect("RCPT TO:<nobody@example.test>", 550);
    client.expect("RSET", 250);
    client.expect("QUIT", 221);
    server.wait_maildir("bob@example.test", N);

    let metrics = wait_sample(
        http,
        "mailwit_deliveries_total{outcome=\"delivered\",kind=\"maildir\"}",
        N as f64,
    );
    assert_eq!(
        sample(&metrics, "mailwit_messages_accepted_total"),
        Some(N as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "mailwit_transactions_total{outcome=\"queued\"}"),
        Some(N as f64)
    );
    assert_eq!(
        sample(&metrics, "mailwit_transactions_total{outcome=\"rejected\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "mailwit_connections_total{listener=\"mx\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "mailwit_message_size_bytes_count"),
        Some(N as f64)
    );
    // Greeting, EHLO, per message MAIL/RCPT/DATA-end (354 is 3xx), RSET, QUIT...
    assert!(sample(&metrics, "mailwit_smtp_replies_total{class=\"2xx\"}").unwrap() >= 20.0);
    assert_eq!(
        sample(&metrics, "mailwit_smtp_replies_total{class=\"3xx\"}"),
        Some(N as f64 + 1.0)
    );
    assert_eq!(
        sample(&metrics, "mailwit_smtp_replies_total{class=\"5xx\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "mailwit_plugin_hook_calls_total{plugin=\"filter\",hook=\"data\"}"
        ),
        Some(N as f64 + 1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "mailwit_plugin_hook_duration_seconds_count{plugin=\"filter\",hook=\"data\"}"
        ),
        Some(N as f64 + 1.0)
    );
    assert_eq!(
        sample(&metrics, "mailwit_plugin_breaker_open{plugin=\"filter\"}"),
        Some(0.0)
    );
    for family in [
        "mailwit_connections_active gauge",
        "mailwit_connections_refused counter",
        "mailwit_plugin_hook_failures counter",
        "mailwit_plugin_pool_slots_in_use gauge",
        "mailwit_queue_recipients gauge",
        "mailwit_queue_messages gauge",
        "mailwit_delivery_duration_seconds histogram",
        "mailwit_dns_lookups counter",
        "mailwit_tls_handshakes counter",
        "mailwit_kv_operations counter",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family}\n")),
            "{family} missing:\n{metrics}"
        );
    }

    // A TLS handshake is counted by version.
    let mut tls = Client::connect_tls(server.addr("submissions"));
    tls.expect("QUIT", 221);
    let (_, metrics) = http_get(http, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            "mailwit_tls_handshakes_total{version=\"TLSv1.3\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    assert_eq!(http_get(http, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(http, "/readyz").0, 200);
    assert_eq!(http_get(http, "/nothing").0, 404);
}

#[test]
fn json_logs_carry_the_session_span() {
    let server = TestServer::with_config(&config("", "[log]\nformat = \"json\"\n"));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    let reply = client.send_mail(
        "sender@remote.test",
        &["bob@example.test"],
        &message("json", "hello"),
    );
    assert_eq!(reply.code, 250);
    client.expect("QUIT", 221);
    server.wait_maildir("bob@example.test", 1);
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let transaction = lines
        .iter()
        .find(|l| l["message"] == "transaction" && l["outcome"] == "queued")
        .unwrap_or_else(|| panic!("no transaction line:\n{log}"));
    let session = transaction["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "session"))
        .unwrap_or_else(|| panic!("no session span: {transaction}"));
    assert_eq!(session["listener"], "mx");
    assert!(
        session["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{session}"
    );
    assert!(session["id"].is_string());
    assert_eq!(transaction["level"], "INFO");
}
