//! Python plugins (plugins/python, componentize-py) in the real server: the example content rule
//! set acting on mail, a hot reload switching its rules, and a Python plugin contained when it
//! loops, eats memory or raises. The components are built once by `lang_support` and cached.

use crate::lang_support;
use crate::support;

use support::{Client, TestServer, config, message};

fn rules() -> String {
    lang_support::python("plugins/python/examples/content_rules")
        .display()
        .to_string()
}

fn py_chaos() -> std::path::PathBuf {
    lang_support::python("plugins/python/testing/python-chaos")
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
    let (ok, output) = server.reload();
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
    lang_support::assert_chaos_contained(&py_chaos(), "raiser", "raise", "py-chaos raised in mail");
}
