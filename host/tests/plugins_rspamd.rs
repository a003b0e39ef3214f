//! The first-party `rspamd` plugin in the real server against Debian's rspamd (started by the test,
//! no Redis): each action Rspamd picks becomes the SMTP reply or the header changes in the stored
//! message, and a stopped Rspamd gives each plugin's `on_error`.

use crate::support::rspamd::Rspamd;
use crate::support::{ALICE, Client, TestServer, config, message};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// mx scans with on_error = "tempfail", submissions with on_error = "continue".
fn server(rspamd: &Rspamd) -> TestServer {
    let plugin = |name: &str, on_error: &str| {
        format!(
            r#"
[plugins.{name}]
builtin = "rspamd"
grants = ["config", "log", "http"]
http = {{ allow = ["{addr}"], timeout_ms = 20000 }}
limits = {{ time_ms = 30000 }}
config = {{ url = "http://{addr}", on_error = "{on_error}" }}
"#,
            addr = rspamd.addr
        )
    };
    let extra = format!(
        "{}{}
[pipelines.mx]
data = [\"rspamd\"]

[pipelines.submissions]
data = [\"rspamd-continue\"]
",
        plugin("rspamd", "tempfail"),
        plugin("rspamd-continue", "continue"),
    );
    TestServer::with_config(&config("", &extra))
}

fn stored(server: &TestServer, count: usize) -> String {
    let files = server.wait_maildir("bob@example.test", count);
    let mut texts: Vec<(std::time::SystemTime, String)> = files
        .iter()
        .map(|f| {
            (
                std::fs::metadata(f).unwrap().modified().unwrap(),
                String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned(),
            )
        })
        .collect();
    texts.sort();
    texts.pop().unwrap().1
}

/// The header section of a stored message, unfolded.
fn header_section(message: &str) -> String {
    let head = message.split("\r\n\r\n").next().unwrap_or_default();
    head.replace("\r\n ", " ").replace("\r\n\t", " ")
}

#[test]
fn rspamd_actions_become_replies_and_headers_and_a_stopped_rspamd_gives_on_error() {
    let mut rspamd = Rspamd::start();
    let server = server(&rspamd);
    let mx = server.addr("mx");

    // GTUBE: Rspamd's reject, with its own message.
    let mut client = Client::connect(mx);
    client.expect("EHLO client.example.test", 250);
    let reply = client.send_mail(
        ALICE,
        &["bob@example.test"],
        &message("gtube", &format!("{GTUBE}\r\n")),
    );
    assert_eq!(reply.code, 554, "{reply:?}\n{}", server.log());
    assert_eq!(reply.enhanced(), "5.7.1");
    assert!(reply.text().contains("Gtube pattern"), "{reply:?}");

    // A clean message: stored, with the score headers and no spam flag.
    let reply = client.send_mail(
        ALICE,
        &["bob@example.test"],
        &message("hello", "Lunch on Friday?"),
    );
    assert_eq!(reply.code, 250, "{reply:?}\n{}", server.log());
    let head = header_section(&stored(&server, 1));
    assert!(head.contains("X-Spam-Action: no action"), "{head}");
    assert!(head.contains("X-Spam-Score: "), "{head}");
    assert!(head.contains("/ 15.00"), "{head}");
    assert!(!head.contains("X-Spam: Yes"), "{head}");

    // "add header" (test rule +8 over the threshold 6): stored with X-Spam: Yes and the symbol.
    let reply = client.send_mail(
        ALICE,
        &["bob@example.test"],
        &message("mailwit-spammy offer", "Cheap."),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    let head = header_section(&stored(&server, 2));
    assert!(head.contains("X-Spam-Action: add header"), "{head}");
    assert!(head.contains("X-Spam: Yes"), "{head}");
    assert!(head.contains("MAILWIT_TEST_SPAMMY(8.00)"), "{head}");

    // "rewrite subject" (+12 over 11): Rspamd's subject replaces ours.
    let reply = client.send_mail(
        ALICE,
        &["bob@example.test"],
        &message("mailwit-very-spammy offer", "Cheaper."),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    let head = header_section(&stored(&server, 3));
    assert!(
        head.contains("Subject: ***SPAM*** mailwit-very-spammy offer"),
        "{head}"
    );
    assert!(head.contains("X-Spam: Yes"), "{head}");

    // "soft reject" with Rspamd's message: 451 4.7.1.
    let reply = client.send_mail(
        ALICE,
        &["bob@example.test"],
        &message("mailwit-later", "Again."),
    );
    assert_eq!(reply.code, 451, "{reply:?}");
    assert_eq!(reply.enhanced(), "4.7.1");
    assert!(
        reply.text().contains("mailwit test: try later"),
        "{reply:?}"
    );
    client.cmd("QUIT");

    // A forged spam header from the sender does not survive.
    let mut client = Client::connect(mx);
    client.expect("EHLO client.example.test", 250);
    let forged = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: forged\r\n\
                  X-Spam-Action: no action\r\nX-Spam: No\r\nMessage-ID: <forged@example.test>\r\n\r\nHi\r\n";
    let reply = client.send_mail(ALICE, &["bob@example.test"], forged);
    assert_eq!(reply.code, 250, "{reply:?}");
    let head = header_section(&stored(&server, 4));
    assert_eq!(head.matches("X-Spam-Action:").count(), 1, "{head}");
    assert!(!head.contains("X-Spam: No"), "{head}");
    client.cmd("QUIT");

    // Rspamd stopped: tempfail on mx, accepted unscanned on submissions.
    rspamd.stop();
    let mut client = Client::connect(mx);
    client.expect("EHLO client.example.test", 250);
    let reply = client.send_mail(
        ALICE,
        &["bob@example.test"],
        &message("while down", "Hello."),
    );
    assert_eq!(reply.code, 451, "{reply:?}\n{}", server.log());
    assert_eq!(reply.enhanced(), "4.7.1");
    client.cmd("QUIT");

    let mut client = Client::connect_tls(server.addr("submissions"));
    client.expect("EHLO client.example.test", 250);
    client.login_alice();
    let reply = client.send_mail(
        ALICE,
        &["bob@example.test"],
        &message("unscanned", "Hello."),
    );
    assert_eq!(reply.code, 250, "{reply:?}\n{}", server.log());
    let head = header_section(&stored(&server, 5));
    assert!(head.contains("Subject: unscanned"), "{head}");
    assert!(!head.contains("X-Spam-Action"), "{head}");
    assert!(
        server.log().contains("rspamd: scan failed"),
        "{}",
        server.log()
    );
}
