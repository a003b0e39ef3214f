//! JavaScript plugins (plugins/js, ComponentizeJS) in the real server: the example sender policy
//! acting on mail, a hot reload switching its policy, and a JavaScript plugin contained when it
//! loops, eats memory or throws. The components are built once by `lang_support` and cached.

use crate::lang_support;
use crate::support;

use support::{Client, TestServer, config, message};

fn senders() -> String {
    lang_support::js("plugins/js/examples/sender_policy")
        .display()
        .to_string()
}

fn js_chaos() -> std::path::PathBuf {
    lang_support::js("plugins/js/testing/js-chaos")
}

fn policy_config(policy_toml: &str) -> String {
    config(
        &lang_support::cache_setting(),
        &format!(
            r#"
[plugins.senders]
path = "{path}"
grants = ["log", "config"]
limits = {{ memory_mib = 128, time_ms = 5000 }}

[plugins.senders.config]
{policy_toml}

[pipelines.mx]
mail = ["senders"]
rcpt = ["senders"]
"#,
            path = senders()
        ),
    )
}

#[test]
fn javascript_sender_policy_acts_on_mail_sent_through_the_server() {
    let server = TestServer::with_config(&policy_config(
        r#"blocked_domains = ["spam.test"]
local_domains = ["example.test"]
max_recipients = 2"#,
    ));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO js.example.test", 250);

    // A blocked domain, and its subdomains.
    let reply = client.cmd("MAIL FROM:<bad@spam.test>");
    assert_eq!(reply.code, 550, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.7.1");
    assert!(reply.text().contains("spam.test"), "{reply:?}");
    let reply = client.cmd("MAIL FROM:<bad@mx.spam.test>");
    assert_eq!(reply.code, 550, "{reply:?}");

    // Unauthenticated mail claiming a local sender.
    let reply = client.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(reply.code, 550, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.7.26");

    // A remote sender to local mailboxes, at most two recipients per message.
    client.expect("MAIL FROM:<carol@remote.test>", 250);
    client.expect("RCPT TO:<alice@example.test>", 250);
    client.expect("RCPT TO:<bob@example.test>", 250);
    let reply = client.cmd("RCPT TO:<postmaster@example.test>");
    assert_eq!(reply.code, 452, "{reply:?}");
    assert_eq!(reply.enhanced(), "4.5.3");
    client.expect("DATA", 354);
    client.send(message("js", "hello from a JavaScript-checked sender"));
    client.send(".\r\n");
    assert_eq!(client.reply().code, 250);
    client.expect("QUIT", 221);
    assert_eq!(server.wait_maildir("bob@example.test", 1).len(), 1);
    let log = server.log();
    assert!(log.contains("sender domain spam.test is blocked"), "{log}");
}

#[test]
fn javascript_plugin_reloads_without_a_restart() {
    let server = TestServer::with_config(&policy_config(r#"blocked_domains = ["one.test"]"#));
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO js.example.test", 250);
    assert_eq!(client.cmd("MAIL FROM:<a@one.test>").code, 550);
    client.expect("RSET", 250);
    client.expect("MAIL FROM:<a@two.test>", 250);
    client.expect("RSET", 250);

    std::fs::write(
        &server.config_path,
        policy_config(r#"blocked_domains = ["two.test"]"#),
    )
    .unwrap();
    let (ok, output) = server.reload();
    assert!(ok, "{output}\n{}", server.log());

    client.expect("MAIL FROM:<a@one.test>", 250);
    client.expect("RSET", 250);
    assert_eq!(client.cmd("MAIL FROM:<a@two.test>").code, 550);
    client.expect("QUIT", 221);
}

#[test]
fn javascript_plugin_is_contained_when_it_loops_eats_memory_or_throws() {
    lang_support::assert_chaos_contained(&js_chaos(), "thrower", "throw", "js-chaos threw in mail");
}
