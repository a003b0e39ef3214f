//! Python plugins (plugins/python, componentize-py) in the real server: the example content rule
//! set acting on mail, a hot reload switching its rules, and a Python plugin contained when it
//! loops, eats memory or raises. The components are built once by `lang_support` and cached.

use crate::lang_support;
use crate::support;

use std::process::Command;

use support::{Client, TestServer, config, message};

fn rules() -> String {
    lang_support::python("plugins/python/examples/content_rules")
        .display()
        .to_string()
}

fn py_chaos() -> String {
    lang_support::python("plugins/python/testing/python-chaos")
        .display()
        .to_string()
}

/// The content rules plugin on the mx pipeline's data hook with `rules` (TOML array items).
fn rules_config(rules_toml: &str) -> String {
    config(
        &lang_support::cache_setting(),
        &format!(
            r#"
[plugins.rules]
path = "{path}"
grants = ["log", "config"]
limits = {{ memory_mib = 128, time_ms = 5000 }}

[plugins.rules.config]
tag_header = "X-Content-Rules"
{rules_toml}

[pipelines.mx]
data = ["rules"]
"#,
            path = rules()
        ),
    )
}

const FIRST_RULES: &str = r#"
[[plugins.rules.config.rules]]
name = "pharma"
field = "body"
pattern = '(?i)\bv[i1]agra\b'
action = "reject"
text = "Pharma spam is not welcome"

[[plugins.rules.config.rules]]
name = "newsletter"
field = "subject"
pattern = '(?i)^\s*newsletter\b'
action = "tag"

[[plugins.rules.config.rules]]
name = "bulk"
field = "header:Precedence"
pattern = '^(bulk|list)$'
action = "tag"
"#;

fn send(server: &TestServer, subject: &str, extra_header: &str, body: &str) -> support::Reply {
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO py.example.test", 250);
    let text = message(subject, body).replacen("\r\n\r\n", &format!("\r\n{extra_header}\r\n"), 1);
    let text = text.replace("\r\n\r\n\r\n", "\r\n\r\n");
    let reply = client.send_mail("alice@example.test", &["bob@example.test"], &text);
    client.expect("QUIT", 221);
    reply
}

fn reload(server: &TestServer) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .arg("reload")
        .arg("--state-dir")
        .arg(server.state_dir())
        .output()
        .expect("run mailwit reload");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn python_content_rules_act_on_mail_sent_through_the_server() {
    let server = TestServer::with_config(&rules_config(FIRST_RULES));

    let reply = send(&server, "hello", "", "Buy V1agra now!");
    assert_eq!(reply.code, 554, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.7.1");
    assert!(reply.text().contains("Pharma spam"), "{reply:?}");

    let reply = send(&server, "Newsletter #12", "Precedence: bulk", "Plain news.");
    assert_eq!(reply.code, 250, "{reply:?}");
    let reply = send(&server, "lunch?", "", "Nothing to see.");
    assert_eq!(reply.code, 250, "{reply:?}");

    let files = server.wait_maildir("bob@example.test", 2);
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let tagged: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("X-Content-Rules: newsletter, bulk\r\n"))
        .collect();
    assert_eq!(tagged.len(), 1, "{texts:?}");
    assert!(tagged[0].contains("Subject: Newsletter #12"));
    let clean: Vec<&String> = texts.iter().filter(|t| t.contains("lunch?")).collect();
    assert_eq!(clean.len(), 1);
    assert!(!clean[0].contains("X-Content-Rules"), "{}", clean[0]);
    let log = server.log();
    assert!(log.contains("content rule pharma matched"), "{log}");
}

#[test]
fn python_plugin_reloads_without_a_restart() {
    let server = TestServer::with_config(&rules_config(FIRST_RULES));
    // A long-lived connection sees the new rules from its next transaction on.
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO py.example.test", 250);
    let body = message("offer", "Cheap watches, cheap viagra");
    let reply = client.send_mail("alice@example.test", &["bob@example.test"], &body);
    assert_eq!(reply.code, 554, "{reply:?}");

    let second = r#"
[[plugins.rules.config.rules]]
name = "watches"
field = "body"
pattern = '(?i)cheap watches'
action = "tempfail"
text = "Watches later"
"#;
    std::fs::write(&server.config_path, rules_config(second)).unwrap();
    let (ok, output) = reload(&server);
    assert!(ok, "{output}\n{}", server.log());

    let reply = client.send_mail("alice@example.test", &["bob@example.test"], &body);
    assert_eq!(reply.code, 451, "{reply:?}");
    assert!(reply.text().contains("Watches later"), "{reply:?}");
    let reply = client.send_mail(
        "alice@example.test",
        &["bob@example.test"],
        &message("ok", "viagra is fine now"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    client.expect("QUIT", 221);
}

#[test]
fn python_plugin_is_contained_when_it_loops_eats_memory_or_raises() {
    let text = config(
        &lang_support::cache_setting(),
        &format!(
            r#"
[plugins.looper]
path = "{chaos}"
grants = ["config", "log"]
config = {{ mail = "loop" }}
limits = {{ memory_mib = 128, time_ms = 200 }}
on_error = "continue"

[plugins.hog]
path = "{chaos}"
grants = ["config", "log"]
config = {{ mail = "alloc" }}
limits = {{ memory_mib = 96, time_ms = 5000 }}
on_error = "continue"

[plugins.raiser]
path = "{chaos}"
grants = ["config", "log"]
config = {{ mail = "raise" }}
limits = {{ memory_mib = 128, time_ms = 5000 }}
on_error = "reject"

[pipelines.mx]
mail = ["looper", "hog", "raiser"]
"#,
            chaos = py_chaos()
        ),
    );
    let server = TestServer::with_config(&text);
    for _round in 0..2 {
        let mut client = Client::connect(server.addr("mx"));
        client.expect("EHLO c.example.test", 250);
        let reply = client.cmd("MAIL FROM:<alice@example.test>");
        assert_eq!(reply.code, 554, "{reply:?}");
        assert_eq!(reply.enhanced(), "5.3.0");
        client.expect("NOOP", 250);
        client.expect("QUIT", 221);
    }
    let log = server.log();
    assert!(log.contains("time limit of 200 ms exceeded"), "{log}");
    assert!(log.contains("memory limit of 96 MiB exceeded"), "{log}");
    assert!(log.contains("py-chaos raised in mail"), "{log}");
}
