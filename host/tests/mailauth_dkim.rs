//! DKIM in the real binary, against dkimpy (an implementation nobody here wrote):
//! `mailwit dkim generate` / `mailwit dkim`, submission mail signed with every selector of its
//! From domain (RSA-SHA256 and Ed25519-SHA256) verifying in dkimpy, dkimpy-signed mail
//! verifying in mailwit's mx listener (also after relaxed-canonicalisation whitespace changes),
//! and tampered bodies failing in both. Needs python3 with dkimpy and PyNaCl (.ci/run installs
//! them); DNS for mailwit comes from a responder on loopback.

use crate::mailauth_dns;
use crate::support;

use mailauth_dns::{DnsServer, Zone};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::{Client, TestServer};

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/dkimpy_tool.py");

fn mailwit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .args(args)
        .output()
        .expect("run mailwit")
}

pub(crate) fn python(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg(TOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (a test dependency)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("ModuleNotFoundError"),
        "dkimpy and PyNaCl are test dependencies (.ci/run installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value of a printed `name. IN TXT "a" "b"` record: the strings joined.
pub(crate) fn record_value(line: &str) -> (String, String) {
    let (name, rest) = line.split_once(" IN TXT ").expect("a TXT record line");
    let value: String = rest
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    (name.trim_end_matches('.').to_string(), value)
}

/// `mailwit dkim generate`: the key file and the published (name, value).
pub(crate) fn generate(
    dir: &Path,
    algorithm: &str,
    domain: &str,
    selector: &str,
) -> (PathBuf, String, String) {
    let out_path = dir.join(format!("{selector}.pem"));
    let out = mailwit(&[
        "dkim",
        "generate",
        "--algorithm",
        algorithm,
        "--domain",
        domain,
        "--selector",
        selector,
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (name, value) = record_value(stdout.trim());
    (out_path, name, value)
}

/// Our Authentication-Results field, unfolded.
fn auth_results(text: &str) -> String {
    let unfolded = text.replace("\r\n\t", " ");
    unfolded
        .lines()
        .find(|l| l.starts_with("Authentication-Results: mail.example.test;"))
        .unwrap_or_else(|| panic!("no Authentication-Results of ours:\n{text}"))
        .to_string()
}

fn body_of(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn generate_writes_an_owner_only_key_and_prints_its_record() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, k) in [("rsa", "k=rsa"), ("ed25519", "k=ed25519")] {
        let (path, name, value) = generate(dir.path(), algorithm, "example.test", algorithm);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        assert_eq!(name, format!("{algorithm}._domainkey.example.test"));
        assert!(value.starts_with(&format!("v=DKIM1; {k}; p=")), "{value}");
    }
    // An existing key is never overwritten.
    let again = mailwit(&[
        "dkim",
        "generate",
        "--domain",
        "example.test",
        "--selector",
        "rsa",
        "--out",
        dir.path().join("rsa.pem").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
}

#[test]
fn quickstart_key_is_generated_once_into_the_state_dir() {
    let state = tempfile::tempdir().unwrap();
    let show = || {
        let out = mailwit(&["dkim", "--state-dir", state.path().to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let first = show();
    assert!(
        first.contains("# domain example.test selector s1 key "),
        "{first}"
    );
    assert!(
        first.contains("s1._domainkey.example.test. IN TXT \"v=DKIM1; k=rsa; p="),
        "{first}"
    );
    let key = state.path().join("dkim/example.test.s1.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(show(), first, "the second run uses the same key");
}

/// A server that signs example.test mail with an RSA key file (selector "rsa") and an Ed25519
/// key it generates on start (selector "ed"), and verifies inbound mail against `dns`.
fn signing_server(dir: &Path, dns: &DnsServer) -> (TestServer, Vec<(String, String)>) {
    let (rsa_key, rsa_name, rsa_value) = generate(dir, "rsa", "example.test", "rsa");
    let extra = format!(
        "{dns}\n[[dkim.sign]]\ndomain = \"example.test\"\nselector = \"rsa\"\nkey = \"{}\"\n\n\
         [[dkim.sign]]\ndomain = \"example.test\"\nselector = \"ed\"\nalgorithm = \"ed25519\"\n",
        rsa_key.display(),
        dns = dns.config_toml(),
    );
    let server = TestServer::with_config(&support::config("", &extra));
    // The generated Ed25519 key's record, as `mailwit dkim` prints it for this configuration.
    let out = mailwit(&[
        "dkim",
        "--config",
        server.config_path.to_str().unwrap(),
        "--state-dir",
        server.state_dir().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ed_line = stdout
        .lines()
        .find(|l| l.starts_with("ed._domainkey."))
        .expect("the ed selector's record");
    let (ed_name, ed_value) = record_value(ed_line);
    assert!(ed_value.contains("k=ed25519"), "{ed_value}");
    (server, vec![(rsa_name, rsa_value), (ed_name, ed_value)])
}

#[test]
fn submitted_mail_is_signed_by_every_selector_and_verifies_in_dkimpy() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(Zone::new());
    let (server, records) = signing_server(dir.path(), &dns);
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let message = support::message("signed", "Hello bob,\r\n\r\nsigned twice.\r\n");
    let reply = c.send_mail(support::ALICE, &["bob@example.test"], &message);
    assert_eq!(reply.code, 250, "{reply:?}");
    let files = server.wait_maildir("bob@example.test", 1);
    let delivered = std::fs::read_to_string(&files[0]).unwrap();
    let signatures: Vec<&str> = delivered
        .lines()
        .filter(|l| l.starts_with("DKIM-Signature:"))
        .collect();
    assert_eq!(signatures.len(), 2, "{delivered}");
    // The signatures are on top, above our Received (signed after it was added).
    // (The Maildir copy starts with the Return-Path and Delivered-To of delivery.)
    assert!(
        delivered.find("DKIM-Signature:") < delivered.find("Received:"),
        "{delivered}"
    );
    let unfolded = delivered.replace("\r\n\t", " ").replace("\r\n ", " ");
    for (selector, algorithm) in [("rsa", "rsa-sha256"), ("ed", "ed25519-sha256")] {
        let field = unfolded
            .lines()
            .find(|l| l.starts_with("DKIM-Signature:") && l.contains(&format!("s={selector};")))
            .unwrap_or_else(|| panic!("no signature with s={selector}: {delivered}"));
        assert!(field.contains(&format!("a={algorithm};")), "{field}");
        assert!(field.contains("c=relaxed/relaxed;"), "{field}");
        assert!(field.contains("d=example.test;"), "{field}");
        // Over-signed: From is listed once more than it occurs.
        let h = field.split("h=").nth(1).unwrap().split(';').next().unwrap();
        let froms = h
            .split(':')
            .filter(|n| n.trim().eq_ignore_ascii_case("from"))
            .count();
        assert_eq!(froms, 2, "{h}");
    }
    let record_args: Vec<String> = records.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let record_args: Vec<&str> = record_args.iter().map(String::as_str).collect();
    // dkimpy verifies the first signature (the Ed25519 one is on top); drop it to check RSA too.
    let first = python(
        &[&["verify"], record_args.as_slice()].concat(),
        delivered.as_bytes(),
    );
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        "pass",
        "{first:?}"
    );
    let without_first = {
        // The first DKIM-Signature field, continuation lines included, taken out.
        let mut out = String::new();
        let mut skipping = false;
        let mut done = false;
        for line in delivered.split_inclusive("\r\n") {
            if !done && line.starts_with("DKIM-Signature:") {
                skipping = true;
                done = true;
                continue;
            }
            if skipping && line.starts_with([' ', '\t']) {
                continue;
            }
            skipping = false;
            out.push_str(line);
        }
        out
    };
    let second = python(
        &[&["verify"], record_args.as_slice()].concat(),
        without_first.as_bytes(),
    );
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "pass",
        "{second:?}"
    );
    for copy in [&delivered, &without_first] {
        let tampered = copy.replace("signed twice.", "signed twice!");
        let out = python(
            &[&["verify"], record_args.as_slice()].concat(),
            tampered.as_bytes(),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "fail",
            "{out:?}"
        );
    }
    // Inbound mail (mx, no AUTH) is not signed.
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    let reply = c.send_mail(
        "someone@example.net",
        &["bob@example.test"],
        &support::message("inbound", "not ours to sign\r\n"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    let files = server.wait_maildir("bob@example.test", 2);
    let inbound = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .find(|t| t.contains("Subject: inbound"))
        .unwrap();
    assert!(!inbound.contains("DKIM-Signature:"), "{inbound}");
}

#[test]
fn dkimpy_signed_mail_verifies_in_mailwit_and_tampering_fails() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    for (ktype, name) in [("rsa", "py-rsa"), ("ed25519", "py-ed")] {
        let out = python(&["keygen", ktype, &prefix(name)], b"");
        assert!(out.status.success(), "{out:?}");
    }
    let mut zone = Zone::new();
    for name in ["py-rsa", "py-ed"] {
        let record = std::fs::read_to_string(dir.path().join(format!("{name}.dns"))).unwrap();
        zone.txt(&format!("{name}._domainkey.example.org"), record.trim());
    }
    let dns = DnsServer::start(zone);
    let server = TestServer::with_config(&support::config("", &dns.config_toml()));

    let original = "From: carol@example.org\r\nTo: bob@example.test\r\nSubject: from dkimpy\r\n\
                    Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <py@example.org>\r\n\r\n\
                    Hello bob,\r\nsigned by dkimpy.\r\n";
    // Signed with RSA, then the result with Ed25519: two signatures.
    let once = python(
        &[
            "sign",
            &format!("{}.key", prefix("py-rsa")),
            "example.org",
            "py-rsa",
        ],
        original.as_bytes(),
    );
    assert!(once.status.success(), "{once:?}");
    let twice = python(
        &[
            "sign",
            &format!("{}.key", prefix("py-ed")),
            "example.org",
            "py-ed",
        ],
        &once.stdout,
    );
    assert!(twice.status.success(), "{twice:?}");
    let signed = String::from_utf8(twice.stdout).unwrap();
    // What relaxed canonicalisation forgives: whitespace runs inside header values and at line
    // ends, and empty lines at the end of the body.
    let reformatted = signed
        .replace("Subject: from dkimpy", "Subject:   from    dkimpy  ")
        .replace("Hello bob,\r\n", "Hello   bob, \t\r\n")
        + "\r\n\r\n";
    let tampered = signed.replace("signed by dkimpy.", "signed by someone else.");
    let forged = format!("Authentication-Results: mail.example.test; dkim=pass\r\n{signed}");

    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.example.org", 250);
    for text in [&signed, &reformatted, &tampered, &forged] {
        let reply = c.send_mail("carol@example.org", &["bob@example.test"], text);
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    let files = server.wait_maildir("bob@example.test", 4);
    let delivered: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for text in &delivered {
        let ours = text
            .matches("Authentication-Results: mail.example.test")
            .count();
        assert_eq!(ours, 1, "exactly one header with our authserv-id:\n{text}");
        let r = auth_results(text);
        if text.contains("someone else") {
            assert_eq!(r.matches("dkim=fail").count(), 2, "{r}");
        } else {
            assert_eq!(r.matches("dkim=pass").count(), 2, "{r}");
            assert!(
                r.contains("header.d=example.org header.s=py-rsa header.a=rsa-sha256"),
                "{r}"
            );
            assert!(r.contains("header.s=py-ed header.a=ed25519-sha256"), "{r}");
        }
        // The data the dkimpy signature covers is intact: dkimpy agrees with us.
        let records = [
            format!(
                "py-rsa._domainkey.example.org={}",
                std::fs::read_to_string(dir.path().join("py-rsa.dns"))
                    .unwrap()
                    .trim()
            ),
            format!(
                "py-ed._domainkey.example.org={}",
                std::fs::read_to_string(dir.path().join("py-ed.dns"))
                    .unwrap()
                    .trim()
            ),
        ];
        let out = python(&["verify", &records[0], &records[1]], text.as_bytes());
        let expected = if text.contains("someone else") {
            "fail"
        } else {
            "pass"
        };
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "{out:?}"
        );
        assert!(!body_of(text).is_empty());
    }
}

/// Submits `subject` as alice (implicit TLS + AUTH) to `to`.
fn submit_as_alice(server: &TestServer, to: &str, subject: &str, body: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(support::ALICE, &[to], &support::message(subject, body));
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

/// dkimpy's verdict ("pass" or "fail") on the first DKIM-Signature of `text`.
fn dkimpy_verify(records: &[(&str, &str)], text: &str) -> String {
    let args: Vec<String> = records.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(&[&["verify"], args.as_slice()].concat(), text.as_bytes());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn bounces_are_signed_with_the_mailer_daemon_domain_key_and_verify_in_dkimpy() {
    let dir = tempfile::tempdir().unwrap();
    let (key, name, value) = generate(dir.path(), "rsa", "example.test", "b1");
    // A smarthost that refuses every recipient: alice's mail bounces back to her at once.
    let sink = crate::support::sink::Sink::start(&["-f", "RCPT"]);
    let extra = format!(
        "[routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {}, tls = \"opportunistic\" }}\n\
         [queue]\nretry_first = \"1s\"\nretry_max = \"2s\"\nclient_timeout = \"30s\"\n\n\
         [[dkim.sign]]\ndomain = \"example.test\"\nselector = \"b1\"\nkey = \"{}\"\n",
        sink.port(),
        key.display()
    );
    let server = TestServer::with_config(&support::config("", &extra));
    submit_as_alice(&server, "bob@remote.test", "will bounce", "Hi bob.\r\n");
    let files = server.wait_maildir(support::ALICE, 1);
    let bounce = std::fs::read_to_string(&files[0]).unwrap();
    assert!(bounce.contains("report-type=delivery-status"), "{bounce}");
    assert!(
        bounce.contains("From: MAILER-DAEMON@mail.example.test"),
        "{bounce}"
    );
    // The bounce's own signature (on top; alice's original, signed too, is inside the report).
    let unfolded = bounce.replace("\r\n\t", " ").replace("\r\n ", " ");
    let field = unfolded
        .lines()
        .find(|l| l.starts_with("DKIM-Signature:"))
        .unwrap_or_else(|| panic!("the bounce is not signed: {bounce}"));
    assert!(field.contains("d=example.test;"), "{field}");
    assert!(field.contains("s=b1;"), "{field}");
    assert!(
        bounce.find("DKIM-Signature:") < bounce.find("From: MAILER-DAEMON"),
        "{bounce}"
    );
    assert_eq!(dkimpy_verify(&[(&name, &value)], &bounce), "pass");
    let tampered = bounce.replace("Hi bob.", "Hi bob!");
    assert_ne!(tampered, bounce);
    assert_eq!(dkimpy_verify(&[(&name, &value)], &tampered), "fail");
}

#[test]
fn a_rotated_key_file_is_picked_up_by_reload() {
    let dir = tempfile::tempdir().unwrap();
    let later = tempfile::tempdir().unwrap();
    let (first_key, name, first) = generate(dir.path(), "rsa", "example.test", "s1");
    let (second_key, _, second) = generate(later.path(), "ed25519", "example.test", "s1");
    let live = dir.path().join("live.pem");
    std::fs::copy(&first_key, &live).unwrap();
    let extra = format!(
        "[[dkim.sign]]\ndomain = \"example.test\"\nselector = \"s1\"\nkey = \"{}\"\n",
        live.display()
    );
    let server = TestServer::with_config(&support::config("", &extra));
    let reload = || {
        let out = mailwit(&[
            "reload",
            "--state-dir",
            server.state_dir().to_str().unwrap(),
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let nth = |n: usize, subject: &str| -> String {
        server
            .wait_maildir("bob@example.test", n)
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .find(|t| t.contains(&format!("Subject: {subject}\r\n")))
            .unwrap_or_else(|| panic!("no message {subject}"))
    };

    submit_as_alice(&server, "bob@example.test", "before", "first key\r\n");
    let before = nth(1, "before");
    assert_eq!(dkimpy_verify(&[(&name, &first)], &before), "pass");

    // Rotation in place: the same file now holds a new (Ed25519) key; reload reads it.
    std::fs::copy(&second_key, &live).unwrap();
    let (ok, text) = reload();
    assert!(ok, "{text}");
    assert!(
        text.contains("dkim: signing keys now example.test/s1"),
        "{text}"
    );
    submit_as_alice(&server, "bob@example.test", "after", "second key\r\n");
    let after = nth(2, "after");
    assert!(after.contains("a=ed25519-sha256;"), "{after}");
    assert_eq!(dkimpy_verify(&[(&name, &second)], &after), "pass");
    assert_eq!(dkimpy_verify(&[(&name, &first)], &after), "fail");

    // A key file that cannot be read refuses the whole reload; the running key stays.
    std::fs::write(&live, "not a key\n").unwrap();
    let (ok, text) = reload();
    assert!(!ok, "{text}");
    assert!(text.contains("not applied"), "{text}");
    submit_as_alice(
        &server,
        "bob@example.test",
        "kept",
        "still the second key\r\n",
    );
    let kept = nth(3, "kept");
    assert_eq!(dkimpy_verify(&[(&name, &second)], &kept), "pass");
}
