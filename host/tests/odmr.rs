//! ODMR (RFC 2645) against the real binary: mail for a held domain waits in the queue until its
//! customer collects it on the odmr listener with AUTH CRAM-MD5 + ATRN. The customer is Debian's
//! fetchmail (`protocol odmr`, relaying to smtp-sink), and a scripted customer in this file for
//! what fetchmail cannot show (refusals inside the turned session, the DSN, one session per
//! domain). CRAM-MD5 is answered by the users file and by an auth plugin (auth-static's
//! `{CRAM-MD5}` secrets through the `auth-challenge` hook), with Python's smtplib and fetchmail
//! as the clients. A domain can also be held by a route plugin (the router's `"hold"` route,
//! through the `route-hold` hook) with no `[routes]` hold at all.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::sink::Sink;
use crate::support::{ALICE, ALICE_PASSWORD, Client, TestServer};
use base64::Engine as _;
use mailwit::auth::CramSecret;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The test configuration plus an odmr listener, two held domains and who may collect them.
/// Retries are quick so held mail goes through a few "still held" deferrals meanwhile.
fn odmr_server() -> TestServer {
    TestServer::with_config(&odmr_config(""))
}

/// [`odmr_server`]'s configuration with `extra` appended. carol@customer.test may collect
/// odmr.test too; she is not in the users file (a plugin may know her).
fn odmr_config(extra: &str) -> String {
    crate::support::config(
        "",
        &(r#"
[[listeners]]
name = "odmr"
address = "127.0.0.1:0"
role = "odmr"

[routes.domains."odmr.test"]
odmr = true
[routes.domains."other.test"]
odmr = true

[odmr]
users = { "alice@example.test" = ["odmr.test"], "bob@example.test" = ["other.test"], "carol@customer.test" = ["odmr.test"] }

[queue]
retry_first = "1s"
retry_max = "2s"
client_timeout = "30s"
"#
        .to_string()
            + extra),
    )
}

/// Sends a message to `to` through the mx listener, unauthenticated (we are the held domain's
/// MX), from alice so a bounce lands in her Maildir.
fn send_to_held_domain(server: &TestServer, to: &[&str], subject: &str) {
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO sender.test", 250);
    let reply = c.send_mail(
        ALICE,
        to,
        &crate::support::message(subject, &format!("Held for {}.", to[0])),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

/// `mailwit queue summary` of the running server.
fn queue_summary(server: &TestServer) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .arg("queue")
        .arg("--state-dir")
        .arg(server.state_dir())
        .arg("summary")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The spooled message's bytes from its Received header on (what goes out).
fn spooled_message(server: &TestServer) -> Vec<u8> {
    let spooled = server.spooled();
    assert_eq!(spooled.len(), 1, "one message in the spool");
    let bytes = spooled[0].clone();
    let from = bytes
        .windows(10)
        .position(|w| w == b"Received: ")
        .expect("a Received header");
    bytes[from..].to_vec()
}

/// Runs fetchmail once in ODMR mode against the odmr listener; returns (exit code, output).
fn fetchmail(
    server: &TestServer,
    user: &str,
    password: &str,
    domains: &str,
    smtphost: SocketAddr,
) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let odmr = server.addr("odmr");
    let rc = home.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\n\
             poll {ip} with proto ODMR service {port} timeout 30:\n\
             \tuser \"{user}\" password \"{password}\"\n\
             \tfetchdomains {domains}\n\
             \tsmtphost \"{sip}/{sport}\"\n",
            ip = odmr.ip(),
            port = odmr.port(),
            sip = smtphost.ip(),
            sport = smtphost.port(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new("fetchmail")
        .arg("--fetchmailrc")
        .arg(&rc)
        .args(["--nosyslog", "--verbose"])
        // Its pid and id files go here, not to /root or /var/run (tests run in parallel; as
        // root it locks /var/run/fetchmail.pid whatever FETCHMAILHOME says, hence --pidfile).
        .arg("--pidfile")
        .arg(home.path().join("fetchmail.pid"))
        .env("FETCHMAILHOME", home.path())
        .env("HOME", home.path())
        .output()
        .expect("fetchmail (Debian package fetchmail) is installed");
    (
        out.status.code().unwrap_or(-1),
        crate::support::printed(&out),
    )
}

fn log_has(server: &TestServer, needle: &str) -> bool {
    server.log().contains(needle)
}

// ---------------------------------------------------------------- fetchmail

/// fetchmail, as alice, collects `domain` into `sink`: exactly one message arrives, for `rcpt`,
/// and it is `spooled` byte for byte; then the queue is empty.
fn collect_as_alice(server: &TestServer, domain: &str, sink: &Sink, rcpt: &str, spooled: Vec<u8>) {
    let (code, out) = fetchmail(server, ALICE, ALICE_PASSWORD, domain, sink.addr);
    assert_eq!(code, 0, "fetchmail failed:\n{out}\n{}", server.log());
    let dumps = sink.wait_messages(1);
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let dump = &dumps[0];
    assert!(dump.contains(&format!("X-Mail-Args: <{ALICE}>")), "{dump}");
    assert!(dump.contains(&format!("X-Rcpt-Args: <{rcpt}>")), "{dump}");
    // smtp-sink stores lines with LF, after its own Received header and before one final empty
    // line; between them is everything we spooled, byte for byte.
    let sent = String::from_utf8(spooled).unwrap().replace("\r\n", "\n");
    let ours = dump
        .find("Received: from sender.test")
        .expect("our Received header");
    assert_eq!(&dump[ours..], format!("{sent}\n"), "dump:\n{dump}");
    crate::support::until_blocking(
        "the queue is empty",
        || server.log(),
        || server.spooled().is_empty(),
    );
}

#[test]
fn fetchmail_collects_held_mail_byte_for_byte() {
    let sink = Sink::start(&[]);
    let server = odmr_server();
    send_to_held_domain(&server, &["carol@odmr.test"], "collect me");

    // Held, not delivered: deferred as "held for ATRN" and shown so by `queue summary`.
    crate::support::until_blocking(
        "a held deferral",
        || server.log(),
        || log_has(&server, "until collected with ATRN"),
    );
    let summary = queue_summary(&server);
    assert!(summary.contains("odmr.test"), "{summary}");
    assert!(summary.contains("held for ATRN"), "{summary}");
    let spooled = spooled_message(&server);
    assert!(sink.messages().is_empty());

    collect_as_alice(&server, "odmr.test", &sink, "carol@odmr.test", spooled);
    let summary = queue_summary(&server);
    assert!(!summary.contains("odmr.test"), "{summary}");

    // Nothing left: 453, and fetchmail counts that as success.
    let (code, out) = fetchmail(&server, ALICE, ALICE_PASSWORD, "odmr.test", sink.addr);
    assert_eq!(code, 0, "{out}");
    assert!(log_has(&server, "ATRN: no mail"), "{}", server.log());
}

#[test]
fn fetchmail_with_a_wrong_password_or_a_foreign_domain_is_refused() {
    let sink = Sink::start(&[]);
    let server = odmr_server();
    send_to_held_domain(&server, &["carol@odmr.test"], "not for strangers");
    send_to_held_domain(&server, &["dave@other.test"], "bob's mail");

    let (code, out) = fetchmail(&server, ALICE, "wrong-secret", "odmr.test", sink.addr);
    assert_ne!(code, 0, "{out}");
    crate::support::until_blocking(
        "the refused AUTH in the log",
        || server.log(),
        || log_has(&server, "authentication failed"),
    );

    // alice may not collect bob's domain: 450.
    let (code, out) = fetchmail(&server, ALICE, ALICE_PASSWORD, "other.test", sink.addr);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("ATRN request refused"), "{out}");
    assert!(
        log_has(&server, "ATRN refused: domain not allowed"),
        "{}",
        server.log()
    );

    // Nothing left the queue.
    std::thread::sleep(Duration::from_millis(300));
    assert!(sink.messages().is_empty());
    assert_eq!(server.spooled().len(), 2);
}

// ---------------------------------------------------------------- a scripted customer

/// The customer's end of an ODMR session, on a plain socket.
struct Customer {
    reader: BufReader<TcpStream>,
}

impl Customer {
    fn connect(addr: SocketAddr) -> Customer {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(crate::support::PATIENCE))
            .unwrap();
        let mut c = Customer {
            reader: BufReader::new(stream),
        };
        assert!(c.reply().starts_with("220 "));
        c
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "{line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// A whole reply, its lines joined with "\n".
    fn reply(&mut self) -> String {
        let mut lines = vec![self.line()];
        while lines.last().unwrap().as_bytes().get(3) == Some(&b'-') {
            lines.push(self.line());
        }
        lines.join("\n")
    }

    fn send(&mut self, text: &str) {
        self.reader.get_mut().write_all(text.as_bytes()).unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// EHLO and AUTH CRAM-MD5 with `password`; returns the AUTH reply.
    fn login(&mut self, user: &str, password: &str) -> String {
        let ehlo = self.cmd("EHLO customer.test");
        assert!(ehlo.contains("250-AUTH CRAM-MD5"), "{ehlo}");
        assert!(ehlo.contains("ATRN"), "{ehlo}");
        let challenge = self.cmd("AUTH CRAM-MD5");
        let challenge = challenge.strip_prefix("334 ").expect("a challenge");
        let challenge = base64::engine::general_purpose::STANDARD
            .decode(challenge)
            .unwrap();
        let digest = CramSecret::from_password(password).response(&challenge);
        self.cmd(&b64(format!("{user} {digest}").as_bytes()))
    }

    /// After the turn: we are the SMTP server. Answers EHLO (no PIPELINING, so one command at
    /// a time), then each transaction: `rcpt_reply` decides per recipient. Returns the
    /// messages received (envelope lines and data) until QUIT.
    fn serve(&mut self, rcpt_reply: impl Fn(&str) -> &'static str) -> Vec<(Vec<String>, String)> {
        self.send("220 customer.test ESMTP ready\r\n");
        let ehlo = self.line();
        assert!(ehlo.starts_with("EHLO "), "{ehlo}");
        self.send("250-customer.test\r\n250-8BITMIME\r\n250 DSN\r\n");
        let mut messages = Vec::new();
        let mut envelope = Vec::new();
        loop {
            let command = self.line();
            let verb = command.split(' ').next().unwrap().to_ascii_uppercase();
            match verb.as_str() {
                "MAIL" => {
                    envelope = vec![command.clone()];
                    self.send("250 2.1.0 ok\r\n");
                }
                "RCPT" => {
                    envelope.push(command.clone());
                    let reply = rcpt_reply(&command);
                    self.send(&format!("{reply}\r\n"));
                }
                "DATA" => {
                    self.send("354 go ahead\r\n");
                    let mut data = String::new();
                    loop {
                        let line = self.line();
                        if line == "." {
                            break;
                        }
                        data.push_str(&line);
                        data.push_str("\r\n");
                    }
                    messages.push((std::mem::take(&mut envelope), data));
                    self.send("250 2.0.0 queued here\r\n");
                }
                "RSET" => self.send("250 2.0.0 ok\r\n"),
                "QUIT" => {
                    self.send("221 2.0.0 bye\r\n");
                    return messages;
                }
                other => panic!("unexpected {other}: {command}"),
            }
        }
    }
}

#[test]
fn customer_side_refusals_are_recorded_like_any_delivery() {
    let server = odmr_server();
    // One message with three held recipients: the customer takes one, refuses one for good
    // and one for now.
    send_to_held_domain(
        &server,
        &["ok@odmr.test", "gone@odmr.test", "later@odmr.test"],
        "three recipients",
    );
    crate::support::until_blocking(
        "a held deferral",
        || server.log(),
        || log_has(&server, "until collected with ATRN"),
    );

    let mut c = Customer::connect(server.addr("odmr"));
    // Before AUTH: 530.
    let ehlo = c.cmd("EHLO customer.test");
    assert!(ehlo.contains("ATRN"), "{ehlo}");
    assert!(c.cmd("ATRN odmr.test").starts_with("530 5.7.0"));
    let auth = c.login(ALICE, ALICE_PASSWORD);
    assert!(auth.starts_with("235 2.7.0"), "{auth}");
    // Mail is not taken on this port.
    assert!(
        c.cmd("MAIL FROM:<x@customer.test>")
            .starts_with("502 5.5.1")
    );
    // Not alice's domain: 450; a domain nobody has mail for is refused the same way.
    assert!(c.cmd("ATRN other.test").starts_with("450 4.7.1"));
    assert!(c.cmd("ATRN odmr.test,other.test").starts_with("450 4.7.1"));

    // One ATRN session per domain: a second customer asking meanwhile gets 451.
    let atrn = c.cmd("ATRN odmr.test");
    assert!(atrn.starts_with("250 "), "{atrn}");
    let mut second = Customer::connect(server.addr("odmr"));
    second.login(ALICE, ALICE_PASSWORD);
    let busy = second.cmd("ATRN");
    assert!(busy.starts_with("451 4.4.5"), "{busy}");

    let messages = c.serve(|rcpt| {
        if rcpt.contains("gone@") {
            "550 5.1.1 no such user here"
        } else if rcpt.contains("later@") {
            "450 4.2.0 mailbox busy"
        } else {
            "250 2.1.5 ok"
        }
    });
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (envelope, data) = &messages[0];
    assert!(
        envelope[0].starts_with(&format!("MAIL FROM:<{ALICE}>")),
        "{envelope:?}"
    );
    assert_eq!(envelope.len(), 4, "{envelope:?}");
    assert!(data.contains("Subject: three recipients"), "{data}");

    // The refused recipient bounces to alice (DSN); the deferred one stays held.
    let dsn = first_dsn(&server);
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("gone@odmr.test"), "{dsn}");
    assert!(dsn.contains("5.1.1"), "{dsn}");
    assert!(
        !dsn.contains("Final-Recipient: rfc822; ok@odmr.test"),
        "{dsn}"
    );
    // later@ is still queued (the DSN leaves the spool once in alice's Maildir).
    crate::support::until_blocking(
        "only the held message in the spool",
        || server.log(),
        || server.spooled().len() == 1,
    );
    let summary = queue_summary(&server);
    assert!(summary.contains("odmr.test"), "{summary}");

    // The second session can collect it now that the first one is over: later@ only.
    crate::support::until_blocking(
        "the first session's end",
        || server.log(),
        || log_has(&server, "ATRN session done"),
    );
    let atrn = second.cmd("ATRN odmr.test");
    assert!(atrn.starts_with("250 "), "{atrn}");
    let messages = second.serve(|_| "250 2.1.5 ok");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.len(), 2, "{:?}", messages[0].0);
    assert!(messages[0].0[1].contains("later@odmr.test"));
    crate::support::until_blocking(
        "the queue is empty",
        || server.log(),
        || server.spooled().is_empty(),
    );
}

#[test]
fn cram_md5_users_file_line_and_hash_password_agree() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .args(["hash-password", "--cram-md5"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{ALICE_PASSWORD}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let users =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/users"))
            .unwrap();
    assert!(
        users.contains(&format!("{ALICE}:{}", line.trim())),
        "examples/users lacks alice's CRAM-MD5 line {line}"
    );
}

/// A server holding odmr.test for ATRN, retrying fast, with `queue` added to its `[queue]`.
fn held_domain_server(queue: &str) -> TestServer {
    TestServer::with_config(&crate::support::config(
        "",
        &format!(
            r#"
[routes.domains."odmr.test"]
odmr = true

[queue]
retry_first = "500ms"
retry_max = "1s"
{queue}
"#
        ),
    ))
}

/// The first delivery report in alice's Maildir (she sends the mail these tests hold).
fn first_dsn(server: &TestServer) -> String {
    let files = server.wait_maildir(ALICE, 1);
    std::fs::read_to_string(&files[0]).unwrap()
}

#[test]
fn held_mail_expires_with_a_bounce() {
    let server = held_domain_server(r#"lifetime = "2s""#);
    send_to_held_domain(&server, &["nobody-came@odmr.test"], "never collected");
    let dsn = first_dsn(&server);
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("nobody-came@odmr.test"), "{dsn}");
    assert!(dsn.contains("gave up: message too old"), "{dsn}");
    crate::support::until_blocking(
        "the queue is empty",
        || server.log(),
        || server.spooled().is_empty(),
    );
}

#[test]
fn held_mail_gets_a_delay_warning_and_stays_held() {
    let server = held_domain_server(r#"delay_warning = "1s""#);
    send_to_held_domain(&server, &["patient@odmr.test"], "still waiting");
    let dsn = first_dsn(&server);
    assert!(dsn.contains("Action: delayed"), "{dsn}");
    assert!(dsn.contains("patient@odmr.test"), "{dsn}");
    assert!(dsn.contains("until collected with ATRN"), "{dsn}");
    // Still held: the warning is not a bounce.
    crate::support::until_blocking(
        "only the held message in the spool",
        || server.log(),
        || server.spooled().len() == 1,
    );
    assert!(queue_summary(&server).contains("held for ATRN"));
}

#[test]
fn cram_md5_is_off_elsewhere_unless_the_listener_enables_it() {
    let server = TestServer::with_config(&crate::support::config(
        "",
        r#"
[[listeners]]
name = "cram"
address = "127.0.0.1:0"
role = "submission"
cram_md5 = true
"#,
    ));
    // A submission listener without the setting: no CRAM-MD5, before or after STARTTLS.
    let mut c = Client::connect(server.addr("submission"));
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.text().contains("CRAM-MD5"), "{ehlo:?}");
    c.expect("STARTTLS", 220);
    c.upgrade();
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.text().contains("AUTH"), "{ehlo:?}");
    assert!(!ehlo.text().contains("CRAM-MD5"), "{ehlo:?}");
    // `cram_md5 = true`: offered in plain text, answered by the users file; ATRN stays odmr's.
    let text = smtplib_cram(&server, "cram", ALICE, ALICE_PASSWORD, "odmr.test");
    assert!(text.contains("AUTH 235 2.7.0"), "{text}");
    assert!(text.contains("ATRN 502"), "{text}");
}

// ---------------------------------------------------------------- CRAM-MD5 through a plugin

const CAROL: &str = "carol@customer.test";
const CAROL_PASSWORD: &str = "carol-long-random-secret";

/// The odmr server with auth-static answering for carol (CRAM-MD5 secret only); users it does
/// not list are left to the users file.
fn odmr_server_with_auth_static() -> TestServer {
    let secret = CramSecret::from_password(CAROL_PASSWORD).encode();
    TestServer::with_config(&odmr_config(&format!(
        r#"
[plugins.accounts]
builtin = "auth-static"
grants = ["config", "log"]
config = {{ users = {{ "{CAROL}" = "{secret}" }}, on_unknown_user = "unknown" }}

[pipelines.odmr]
auth = ["accounts"]
"#
    )))
}

/// Python's smtplib on `listener`: AUTH CRAM-MD5 as `user`, then `ATRN domain`; the reply lines
/// it printed.
fn smtplib_cram(
    server: &TestServer,
    listener: &str,
    user: &str,
    password: &str,
    domain: &str,
) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/smtplib_cram.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(server.addr(listener).port().to_string())
        .args([user, password, domain])
        .output()
        .expect("python3 is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "smtplib failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn cram_md5_is_answered_by_an_auth_plugin() {
    let server = odmr_server_with_auth_static();
    // carol is known only to the plugin: right digest 235, then ATRN with nothing held 453.
    let out = smtplib_cram(&server, "odmr", CAROL, CAROL_PASSWORD, "odmr.test");
    assert!(out.contains("AUTH 235 2.7.0"), "{out}\n{}", server.log());
    assert!(out.contains("ATRN 453 4.3.0"), "{out}");
    // A wrong password gives a wrong digest: 535 5.7.8.
    let out = smtplib_cram(&server, "odmr", CAROL, "not-her-password", "odmr.test");
    assert!(out.contains("AUTH 535 5.7.8"), "{out}");
    // alice is not in the plugin's table: it answers unknown, the users file authenticates her.
    let out = smtplib_cram(&server, "odmr", ALICE, ALICE_PASSWORD, "odmr.test");
    assert!(out.contains("AUTH 235 2.7.0"), "{out}\n{}", server.log());
    // The plugin was asked (its hook ran) for carol; the log names who authenticated.
    assert!(
        log_has(&server, "mechanism=CRAM-MD5 identity=carol@customer.test"),
        "{}",
        server.log()
    );

    // fetchmail collects carol's held mail with the plugin's secret.
    let sink = Sink::start(&[]);
    send_to_held_domain(&server, &["erin@odmr.test"], "for carol");
    crate::support::until_blocking(
        "a held deferral",
        || server.log(),
        || log_has(&server, "until collected with ATRN"),
    );
    let (code, out) = fetchmail(&server, CAROL, CAROL_PASSWORD, "odmr.test", sink.addr);
    assert_eq!(code, 0, "fetchmail failed:\n{out}\n{}", server.log());
    let dumps = sink.wait_messages(1);
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert!(
        dumps[0].contains("X-Rcpt-Args: <erin@odmr.test>"),
        "{}",
        dumps[0]
    );
    let (code, out) = fetchmail(&server, CAROL, "not-her-password", "odmr.test", sink.addr);
    assert_ne!(code, 0, "{out}");
}

// ---------------------------------------------------------------- held by a route plugin

/// No `[routes]` hold at all: the router plugin holds hookheld.test (its `"hold"` route, asked
/// through `route-hold`), alice may collect it. Everything else goes to the smarthost at
/// `smarthost`, so mail that was not held would reach it.
fn hook_held_config(smarthost: SocketAddr) -> String {
    crate::support::config(
        "",
        &format!(
            r#"
[[listeners]]
name = "odmr"
address = "127.0.0.1:0"
role = "odmr"

[routes]
smarthost = {{ host = "{ip}", port = {port} }}

[odmr]
users = {{ "alice@example.test" = ["hookheld.test"] }}

[plugins.router]
builtin = "router"
grants = ["config", "log"]
config = {{ routes = {{ "hookheld.test" = "hold" }} }}

[pipelines.queue]
route = ["router"]

[queue]
retry_first = "1s"
retry_max = "2s"
client_timeout = "30s"
"#,
            ip = smarthost.ip(),
            port = smarthost.port(),
        ),
    )
}

#[test]
fn a_route_plugin_holds_mail_for_atrn_collection_like_a_routes_hold() {
    let smarthost = Sink::start(&[]);
    let customer = Sink::start(&[]);
    let server = TestServer::with_config(&hook_held_config(smarthost.addr));
    // Accepted unauthenticated on the mx listener: [odmr] users makes us the domain's MX.
    send_to_held_domain(&server, &["dave@hookheld.test"], "held by the router");

    // Held, not delivered: the same deferral as a [routes] hold, and `queue summary` says so.
    crate::support::until_blocking(
        "a held deferral",
        || server.log(),
        || log_has(&server, "held for hookheld.test until collected with ATRN"),
    );
    let summary = queue_summary(&server);
    let line = summary
        .lines()
        .find(|l| l.contains("hookheld.test"))
        .unwrap_or_else(|| panic!("hookheld.test in the summary:\n{summary}"));
    assert!(line.contains("held for ATRN"), "{summary}");
    let spooled = spooled_message(&server);
    assert!(
        smarthost.messages().is_empty(),
        "{:?}",
        smarthost.messages()
    );
    assert!(customer.messages().is_empty());

    // fetchmail, as alice, collects it byte for byte.
    collect_as_alice(
        &server,
        "hookheld.test",
        &customer,
        "dave@hookheld.test",
        spooled,
    );
    assert!(!queue_summary(&server).contains("hookheld.test"));
    assert!(
        smarthost.messages().is_empty(),
        "{:?}",
        smarthost.messages()
    );
}

#[test]
fn an_odmr_user_domain_needs_a_routes_hold_or_a_route_plugin() {
    // Without [pipelines.queue] route plugins nothing could hold hookheld.test: refused.
    let config = hook_held_config("127.0.0.1:1".parse().unwrap())
        .replace("[pipelines.queue]\nroute = [\"router\"]\n", "");
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .args(["check-config", "--config"])
        .arg(path.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("odmr.users"), "{text}");
    assert!(text.contains("hookheld.test"), "{text}");
}

// ---------------------------------------------------------------- the quickstart

/// The quickstart as shipped, every listener on a free port (never its 2366), its users file
/// found from the test's directory, and `[dns]` pointed at an empty in-test zone (the quickstart's
/// DMARC plugin and checks then find no records at once).
fn quickstart(dns: &crate::mailauth_dns::DnsServer) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.toml");
    let mut text = std::fs::read_to_string(path).unwrap();
    for port in ["2525", "2587", "2465", "2366", "2580"] {
        text = text.replace(&format!("\"127.0.0.1:{port}\""), "\"127.0.0.1:0\"");
    }
    let users = crate::support::users_file();
    text = text.replace(
        "users_file = \"users\"",
        &format!("users_file = \"{}\"", users.display()),
    );
    format!("{text}\n{}", dns.config_toml())
}

#[test]
fn fetchmail_collects_the_quickstarts_held_mail() {
    let dns = crate::mailauth_dns::DnsServer::start(crate::mailauth_dns::Zone::new());
    let server = TestServer::with_config(&quickstart(&dns));
    let sink = Sink::start(&[]);
    send_to_held_domain(&server, &["someone@odmr.test"], "quickstart hold");
    crate::support::until_blocking(
        "a held deferral",
        || server.log(),
        || log_has(&server, "until collected with ATRN"),
    );
    assert!(queue_summary(&server).contains("held for ATRN"));
    let (code, out) = fetchmail(&server, ALICE, ALICE_PASSWORD, "odmr.test", sink.addr);
    assert_eq!(code, 0, "fetchmail failed:\n{out}\n{}", server.log());
    let dumps = sink.wait_messages(1);
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert!(
        dumps[0].contains("X-Rcpt-Args: <someone@odmr.test>"),
        "{}",
        dumps[0]
    );
    assert!(
        dumps[0].contains("Subject: quickstart hold"),
        "{}",
        dumps[0]
    );
    crate::support::until_blocking(
        "the queue is empty",
        || server.log(),
        || server.spooled().is_empty(),
    );
}
