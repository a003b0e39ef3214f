//! The plugin platform inside the real server (`mailwit serve`): reload under load through the
//! admin socket, a bad reload keeping the running generation, and misbehaving plugins leaving the
//! server serving with their configured policy applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{Client, TestServer, config, message};

fn chaos() -> String {
    format!(
        "{}/mailwit_test_chaos.wasm",
        env!("MAILWIT_PLUGIN_WASM_DIR")
    )
}

/// Generation `n` of the reload test: rcpt refuses probe@ with tag "g<n>"; even generations add an
/// `X-Chaos: g<n>` header at data, odd ones do not.
fn gate_config(n: u32) -> String {
    let data = if n.is_multiple_of(2) {
        "mods"
    } else {
        "continue"
    };
    config(
        "",
        &format!(
            r#"
[plugins.gate]
path = "{chaos}"
grants = ["config", "log", "kv", "clock"]
config = {{ rcpt = "probe", data = "{data}", tag = "g{n}" }}

[pipelines.mx]
rcpt = ["gate"]
data = ["gate"]
"#,
            chaos = chaos()
        ),
    )
}

/// On a long-lived connection: a transaction to probe@ shows which generation is live.
fn probe(client: &mut Client) -> String {
    client.expect("MAIL FROM:<alice@example.test>", 250);
    let reply = client.cmd("RCPT TO:<probe@example.test>");
    client.expect("RSET", 250);
    assert_eq!(reply.code, 550, "{reply:?}");
    reply.text()
}

#[test]
fn reload_under_load_drops_nothing_and_switches_behaviour_each_time() {
    let server = TestServer::with_config(&gate_config(0));
    let mx = server.addr("mx");
    let mut prober = Client::connect(mx);
    prober.expect("EHLO probe.example.test", 250);
    assert!(probe(&mut prober).contains("chaos g0"));

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(mx);
                client.expect(&format!("EHLO load{i}.example.test"), 250);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let reply = client.send_mail(
                        "alice@example.test",
                        &["bob@example.test"],
                        &message(&format!("load{i}-{n}"), "under reload"),
                    );
                    assert_eq!(reply.code, 250, "transaction {n} of sender {i}: {reply:?}");
                    sent.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                client.expect("QUIT", 221);
                n
            })
        })
        .collect();

    for n in 1..=10 {
        std::fs::write(&server.config_path, gate_config(n)).unwrap();
        let (ok, output) = server.reload();
        assert!(ok, "reload {n}: {output}\n{}", server.log());
        // The long-lived connection's next transaction runs on the new generation.
        let seen = probe(&mut prober);
        assert!(
            seen.contains(&format!("chaos g{n}")),
            "after reload {n}: {seen}"
        );
        // Let traffic run on this generation for a moment (pacing, not an assertion).
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let per_sender: Vec<usize> = senders
        .into_iter()
        .map(|t| t.join().expect("sender"))
        .collect();
    let total: usize = per_sender.iter().sum();
    assert_eq!(total, sent.load(Ordering::Relaxed));
    assert!(per_sender.iter().all(|&n| n > 0), "{per_sender:?}");
    prober.expect("QUIT", 221);

    // Zero dropped: every 250 became a delivered message; headers only from "mods" generations.
    let files = server.wait_maildir("bob@example.test", total);
    assert_eq!(files.len(), total);
    let mut tagged = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let tags: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("X-Chaos: g"))
            .collect();
        assert!(tags.len() <= 1, "{text}");
        if let Some(tag) = tags.first() {
            let n: u32 = tag.trim().parse().unwrap();
            assert!(
                n.is_multiple_of(2),
                "header from a generation without it: {text}"
            );
            tagged += 1;
        }
    }
    assert!(tagged > 0 && tagged < total, "{tagged} of {total} tagged");
}

#[test]
fn a_bad_reload_keeps_the_running_generation() {
    let server = TestServer::with_config(&gate_config(1));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO c.example.test", 250);
    assert!(probe(&mut client).contains("chaos g1"));

    let broken = gate_config(2).replace("rcpt = [\"gate\"]", "rcpt = [\"ghost\"]");
    std::fs::write(&server.config_path, broken).unwrap();
    let (ok, output) = server.reload();
    assert!(!ok, "{output}");
    assert!(output.contains("ghost"), "{output}");
    assert!(probe(&mut client).contains("chaos g1"));
    client.expect("QUIT", 221);
}

#[test]
fn misbehaving_plugins_leave_the_server_serving_with_their_policy() {
    let text = config(
        "",
        &format!(
            r#"
[plugins.looper]
path = "{chaos}"
grants = ["config", "log", "kv", "clock"]
config = {{ mail = "loop" }}
limits = {{ time_ms = 50 }}
on_error = "continue"

[plugins.panicky]
path = "{chaos}"
grants = ["config", "log", "kv", "clock"]
config = {{ rcpt = "panic" }}
on_error = "continue"

[plugins.hog]
path = "{chaos}"
grants = ["config", "log", "kv", "clock"]
config = {{ data = "alloc" }}
limits = {{ memory_mib = 16 }}
on_error = "reject"

[pipelines.mx]
mail = ["looper"]
rcpt = ["panicky"]
data = ["hog"]
"#,
            chaos = chaos()
        ),
    );
    let server = TestServer::with_config(&text);
    for round in 0..2 {
        let mut client = Client::connect(server.addr("mx"));
        client.expect("EHLO c.example.test", 250);
        client.expect("MAIL FROM:<alice@example.test>", 250);
        client.expect("RCPT TO:<bob@example.test>", 250);
        client.expect("DATA", 354);
        client.send(message(&format!("round{round}"), "hello"));
        client.send(".\r\n");
        let reply = client.reply();
        assert_eq!(reply.code, 554, "{reply:?}");
        assert_eq!(reply.enhanced(), "5.3.0");
        client.expect("NOOP", 250);
        client.expect("QUIT", 221);
    }
    let log = server.log();
    assert!(log.contains("time limit of 50 ms exceeded"), "{log}");
    assert!(log.contains("chaos panic in rcpt"), "{log}");
    assert!(log.contains("memory limit of 16 MiB exceeded"), "{log}");
}

#[test]
fn an_idle_session_gives_its_instances_back_and_gets_fresh_ones() {
    let server = TestServer::with_config(&config(
        "\n[server.limits]\nplugin_idle_release_ms = 100\n",
        &format!(
            r#"
[plugins.stateful]
path = "{chaos}"
grants = ["config", "log", "kv", "clock"]
config = {{ mail = "state" }}

[pipelines.mx]
mail = ["stateful"]
"#,
            chaos = chaos()
        ),
    ));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO idle.example.test", 250);
    // The plugin refuses MAIL naming how many calls its instance has served.
    let calls = |client: &mut Client| {
        let reply = client.cmd("MAIL FROM:<alice@example.test>");
        assert_eq!(reply.code, 550, "{reply:?}");
        reply.text()
    };
    assert!(calls(&mut client).contains("calls=1"));
    // Back to back: the same warm instance.
    assert!(calls(&mut client).contains("calls=2"));
    // Idle past plugin_idle_release_ms between transactions: the instance was given back.
    std::thread::sleep(Duration::from_millis(600));
    assert!(calls(&mut client).contains("calls=1"));
    assert!(calls(&mut client).contains("calls=2"));
}
